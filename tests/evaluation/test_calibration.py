"""Calibration estimators and measures."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit, softmax
from sklearn.calibration import calibration_curve
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import brier_score_loss, log_loss

from medtl.evaluation.calibration import (
    IsotonicCalibrator,
    PlattScaler,
    TemperatureScaler,
    brier_score,
    calibration_table,
    calibrator_from_dict,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
    reliability_curve,
)

TINY_P = np.array([0.1, 0.2, 0.35, 0.6, 0.7, 0.95])
TINY_Y = np.array([0, 0, 1, 0, 1, 1])


def tempered_binary(rng, n, t_true):
    z = rng.normal(0, 2, n)
    y = (rng.random(n) < expit(z)).astype(int)
    return z * t_true, y  # overconfident logits: true logit times T


def test_temperature_recovers_known_binary_temperature_and_lowers_ece():
    rng = np.random.default_rng(0)
    z_cal, y_cal = tempered_binary(rng, 20000, 2.5)
    ts = TemperatureScaler().fit(z_cal, y_cal)
    assert ts.temperature_ == pytest.approx(2.5, rel=0.05)
    z_test, y_test = tempered_binary(rng, 20000, 2.5)  # held-out
    before = expected_calibration_error(expit(z_test), y_test)
    after = expected_calibration_error(ts.transform(z_test), y_test)
    assert after < 0.5 * before and after < 0.02


def test_temperature_recovers_known_multiclass_temperature():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, (20000, 4))
    p = softmax(z, axis=1)
    y = (rng.random((20000, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    ts = TemperatureScaler().fit(z * 0.5, y)  # underconfident logits, T = 0.5
    assert ts.temperature_ == pytest.approx(0.5, rel=0.05)
    probs = ts.transform(z[:10] * 0.5)
    assert probs.shape == (10, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_allclose(probs, p[:10], atol=0.03)


def test_calibrators_serialise_round_trip_through_json():
    rng = np.random.default_rng(2)
    z, y = tempered_binary(rng, 2000, 2.0)
    for cal in (TemperatureScaler(), PlattScaler(), IsotonicCalibrator()):
        cal.fit(z, y)
        d = json.loads(json.dumps(cal.to_dict()))
        back = calibrator_from_dict(d)
        assert type(back) is type(cal)
        np.testing.assert_allclose(back.transform(z[:50]), cal.transform(z[:50]), atol=1e-12)
    with pytest.raises(ValueError, match="unknown calibration method"):
        calibrator_from_dict({"method": "beta"})
    with pytest.raises(ValueError, match="expected a 'platt'"):
        PlattScaler.from_dict({"method": "temperature", "temperature": 2.0})


def test_platt_recovers_logistic_parameters():
    rng = np.random.default_rng(3)
    z = rng.normal(0, 2, 30000)
    y = (rng.random(z.size) < expit(0.5 * z - 1.0)).astype(int)
    ps = PlattScaler().fit(z, y)
    assert ps.a_ == pytest.approx(0.5, abs=0.03)
    assert ps.b_ == pytest.approx(-1.0, abs=0.05)
    with pytest.raises(ValueError, match="binary"):
        ps.fit(np.zeros((4, 3)), [0, 1, 2, 1])


def test_isotonic_matches_sklearn_and_is_monotone():
    rng = np.random.default_rng(4)
    z, y = tempered_binary(rng, 500, 3.0)
    iso = IsotonicCalibrator().fit(z, y)
    ref = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(z, y)
    grid = np.linspace(-20, 20, 401)
    np.testing.assert_allclose(iso.transform(grid), ref.predict(grid), atol=1e-12)
    assert np.all(np.diff(iso.transform(grid)) >= 0)


def test_unfitted_calibrator_raises():
    with pytest.raises(RuntimeError, match="not fitted"):
        TemperatureScaler().transform([0.1, 0.2])


def test_ece_near_zero_for_perfectly_calibrated_sampler():
    rng = np.random.default_rng(5)
    p = rng.random(200000)
    y = (rng.random(p.size) < p).astype(int)
    assert expected_calibration_error(p, y) < 0.005
    assert expected_calibration_error(p, y, strategy="quantile") < 0.005
    # and clearly non-zero for a miscalibrated one
    assert expected_calibration_error(p**2, y) > 0.1


def test_ece_uniform_and_quantile_match_hand_computation():
    # uniform, 2 bins: (0, .5] -> {.1, .2, .35}: mean .21667, frac 1/3, gap .11667
    #                  (.5, 1] -> {.6, .7, .95}: mean .75, frac 2/3, gap .08333 -> ECE .1
    assert expected_calibration_error(TINY_P, TINY_Y, n_bins=2) == pytest.approx(0.1)
    assert maximum_calibration_error(TINY_P, TINY_Y, n_bins=2) == pytest.approx(0.35 / 3)
    # quantile, 3 bins: edges .1, .3, .63333, .95 -> {.1,.2} gap .15, {.35,.6} gap .025,
    # {.7,.95} gap .175 -> ECE (.15 + .025 + .175) / 3
    assert expected_calibration_error(TINY_P, TINY_Y, n_bins=3, strategy="quantile") == (
        pytest.approx(0.35 / 3)
    )
    rc = reliability_curve(TINY_P, TINY_Y, n_bins=3, strategy="quantile")
    np.testing.assert_allclose(rc.edges, [0.1, 0.3, 0.6 + 0.1 / 3, 0.95])
    assert rc.counts.tolist() == [2, 2, 2]


def test_reliability_curve_matches_sklearn_calibration_curve():
    rng = np.random.default_rng(6)
    p = rng.beta(2, 5, 3000)
    y = (rng.random(p.size) < p**0.8).astype(int)
    for strategy in ("uniform", "quantile"):
        rc = reliability_curve(p, y, n_bins=10, strategy=strategy)
        frac, mean = calibration_curve(y, p, n_bins=10, strategy=strategy)
        ok = rc.counts > 0
        np.testing.assert_allclose(rc.fraction_positive[ok], frac)
        np.testing.assert_allclose(rc.mean_predicted[ok], mean)
        assert rc.counts.sum() == p.size and rc.edges.size == 11
    rc = reliability_curve(p, y, n_bins=10)
    assert np.isnan(rc.mean_predicted[rc.counts == 0]).all()


def test_multiclass_ece_uses_top_label():
    probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.25, 0.5, 0.25]])
    y = np.array([0, 1, 2, 2])
    # confidences .7 .6 .8 .5; correct 1 0 1 0; one bin: |0.65 - 0.5| = 0.15
    assert expected_calibration_error(probs, y, n_bins=1) == pytest.approx(0.15)
    # 2 bins: (0, .5] -> {.5} wrong: gap .5; (.5, 1] -> {.7,.6,.8}: mean .7, acc 2/3
    assert expected_calibration_error(probs, y, n_bins=2) == pytest.approx(
        0.25 * 0.5 + 0.75 * (0.7 - 2 / 3)
    )


def test_brier_and_nll_match_sklearn():
    rng = np.random.default_rng(7)
    p = rng.random(500)
    y = (rng.random(500) < p).astype(int)
    assert brier_score(p, y) == pytest.approx(brier_score_loss(y, p))
    assert negative_log_likelihood(p, y) == pytest.approx(log_loss(y, p))
    pm = softmax(rng.normal(size=(500, 3)), axis=1)
    ym = rng.integers(0, 3, 500)
    assert negative_log_likelihood(pm, ym) == pytest.approx(log_loss(ym, pm))
    assert brier_score(pm, ym) == pytest.approx(np.mean(np.sum((pm - np.eye(3)[ym]) ** 2, axis=1)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        brier_score([1.2, 0.1], [1, 0])


def test_calibration_table_rows():
    rng = np.random.default_rng(8)
    z, y = tempered_binary(rng, 4000, 3.0)
    after = TemperatureScaler().fit(z[:2000], y[:2000]).transform(z[2000:])
    rows = calibration_table(expit(z[2000:]), after, y[2000:])
    assert [r["measure"].split(" (")[0] for r in rows] == [
        "ECE",
        "Adaptive ECE",
        "MCE",
        "Brier score",
        "NLL",
    ]
    for r in rows:
        assert r["change"] == pytest.approx(r["after"] - r["before"])
        assert r["after"] < r["before"]


def test_temperature_at_bound_is_logged(caplog):
    z = np.array([-3.0, -2.0, 2.0, 3.0])  # perfectly separated: NLL falls as T -> 0
    with caplog.at_level("WARNING", logger="medtl.evaluation.calibration"):
        ts = TemperatureScaler().fit(z, [0, 0, 1, 1])
    assert ts.temperature_ == pytest.approx(0.01, rel=0.01)
    assert "search bound" in caplog.text
