"""Patient-level bootstrap and DeLong's test."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score

from medtl.evaluation.bootstrap import (
    bootstrap_ci,
    bootstrap_difference,
    bootstrap_threshold_metrics,
    metrics_with_ci,
    resample_weights,
)
from medtl.evaluation.delong import delong_ci, delong_covariance, delong_test
from medtl.evaluation.metrics import auprc


def binormal(rng, n_pos, n_neg, d):
    y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    s = np.r_[rng.normal(d, 1, n_pos), rng.normal(0, 1, n_neg)]
    return y, s


def test_weighted_auroc_matches_sklearn_on_duplicated_sample():
    rng = np.random.default_rng(0)
    y, s = binormal(rng, 20, 30, 1.0)
    s = np.round(s, 1)  # ties
    ci = bootstrap_ci(y, s, n_resamples=5, seed=3)
    weights = next(resample_weights(y, n_resamples=5, seed=3))
    for w, rep in zip(weights, ci.replicates, strict=True):
        idx = np.repeat(np.arange(y.size), w)
        assert rep == pytest.approx(roc_auc_score(y[idx], s[idx]), abs=1e-12)
    ap = bootstrap_ci(y, s, metric="auprc", n_resamples=5, seed=3)
    for w, rep in zip(weights, ap.replicates, strict=True):
        idx = np.repeat(np.arange(y.size), w)
        assert rep == pytest.approx(average_precision_score(y[idx], s[idx]), abs=1e-12)
    # the generic (callable) path sees the same replicates
    ci2 = bootstrap_ci(y, s, metric=lambda a, b: roc_auc_score(a, b), n_resamples=5, seed=3)
    np.testing.assert_allclose(ci2.replicates, ci.replicates, atol=1e-12)


def test_bootstrap_covers_true_binormal_auroc_at_nominal_rate():
    d = 1.0
    true_auc = norm.cdf(d / math.sqrt(2))
    rng = np.random.default_rng(2024)
    hits = 0
    reps = 200
    for r in range(reps):
        y, s = binormal(rng, 60, 60, d)
        ci = bootstrap_ci(y, s, n_resamples=200, seed=r)
        hits += ci.lower <= true_auc <= ci.upper
    coverage = hits / reps
    assert 0.88 <= coverage <= 0.99, coverage


def test_patient_level_resampling_keeps_patients_whole_and_strata_fixed():
    rng = np.random.default_rng(1)
    n_patients = 40
    images = rng.integers(1, 5, n_patients)
    pid = np.repeat(np.array([f"P{i:03d}" for i in range(n_patients)]), images)
    patient_pos = rng.random(n_patients) < 0.3
    y = np.repeat(patient_pos.astype(int), images)
    n_pos_patients = int(patient_pos.sum())
    for w in resample_weights(y, patient_ids=pid, n_resamples=50, seed=0, chunk=16):
        for b in range(w.shape[0]):
            for p in np.unique(pid):
                assert len(set(w[b, pid == p])) == 1  # every image of a patient drawn together
            first = np.r_[True, pid[1:] != pid[:-1]]  # one image per patient
            assert int(w[b, first & (y == 1)].sum()) == n_pos_patients


def test_patient_level_ci_wider_than_image_level_for_clustered_images():
    rng = np.random.default_rng(5)
    n_patients = 60
    pos = np.arange(n_patients) < 30
    effect = rng.normal(0, 1.5, n_patients)  # shared by all images of a patient
    pid = np.repeat(np.arange(n_patients), 8)
    y = np.repeat(pos.astype(int), 8)
    s = np.repeat(effect + 1.0 * pos, 8) + rng.normal(0, 0.3, pid.size)
    img = bootstrap_ci(y, s, n_resamples=400, seed=0)
    pat = bootstrap_ci(y, s, patient_ids=pid, n_resamples=400, seed=0)
    assert img.estimate == pat.estimate
    assert (pat.upper - pat.lower) > 1.8 * (img.upper - img.lower)


def test_bootstrap_other_metrics_and_threshold_metrics():
    rng = np.random.default_rng(9)
    y, s = binormal(rng, 40, 60, 1.2)
    ci = bootstrap_ci(y, s, metric="auprc", n_resamples=100, seed=0)
    assert ci.estimate == pytest.approx(auprc(y, s))
    assert ci.lower < ci.estimate < ci.upper and ci.n_valid == 100
    tm = bootstrap_threshold_metrics(y, s, 0.6, n_resamples=300, seed=0)
    assert set(tm) == {"sensitivity", "specificity", "ppv", "npv", "accuracy"}
    for v in tm.values():
        assert v.lower <= v.estimate <= v.upper
    # stratified: the number of positives is fixed, so sensitivity replicates are k/40
    assert np.allclose(
        tm["sensitivity"].replicates * 40, np.round(tm["sensitivity"].replicates * 40)
    )
    assert "95% CI" in str(ci) and ci.to_dict()["n_resamples"] == 100
    with pytest.raises(ValueError, match="unknown metric"):
        bootstrap_ci(y, s, metric="f1")


def test_unstratified_bootstrap_skips_single_class_replicates():
    y = np.array([1, 0, 0, 0, 0, 0])
    s = np.array([0.9, 0.1, 0.2, 0.3, 0.4, 0.5])
    ci = bootstrap_ci(y, s, n_resamples=200, stratified=False, seed=0)
    assert 0 < ci.n_valid < 200  # about (5/6)^6 = 33% of replicates have no positive


# ----------------------------------------------------------------------------- DeLong


def slow_delong(y, s1, s2):
    """Direct U-statistic DeLong (1988): O(m n) kernel matrices."""
    pos, neg = y == 1, y == 0
    comps = []
    aucs = []
    for s in (s1, s2):
        x, z = s[pos][:, None], s[neg][None, :]
        psi = (x > z) + 0.5 * (x == z)
        aucs.append(psi.mean())
        comps.append((psi.mean(axis=1), psi.mean(axis=0)))  # V10 (positives), V01 (negatives)
    m, n = int(pos.sum()), int(neg.sum())
    s10 = np.cov(np.vstack([comps[0][0], comps[1][0]]))
    s01 = np.cov(np.vstack([comps[0][1], comps[1][1]]))
    cov = s10 / m + s01 / n
    return np.array(aucs), cov


def test_delong_matches_direct_u_statistic():
    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 120)
    s1 = np.round(rng.normal(size=120) + y, 1)  # ties within and across classes
    s2 = np.round(0.6 * s1 + rng.normal(size=120) + 0.5 * y, 1)
    aucs_ref, cov_ref = slow_delong(y, s1, s2)
    aucs, cov = delong_covariance(y, np.vstack([s1, s2]))
    np.testing.assert_allclose(aucs, aucs_ref, atol=1e-12)
    np.testing.assert_allclose(cov, cov_ref, atol=1e-12)
    res = delong_test(y, s1, s2)
    var = cov_ref[0, 0] + cov_ref[1, 1] - 2 * cov_ref[0, 1]
    z = (aucs_ref[0] - aucs_ref[1]) / math.sqrt(var)
    assert res.p_value == pytest.approx(2 * norm.sf(abs(z)), rel=1e-9)
    assert res.auc_a == pytest.approx(roc_auc_score(y, s1))
    assert 0 < res.p_value < 1


def test_delong_known_hand_example():
    # positives {0.9, 0.7}, negatives {0.8, 0.1}: AUROC 0.75; V10 = (1, 0.5), V01 = (0.5, 1)
    y = np.array([1, 1, 0, 0])
    s = np.array([0.9, 0.7, 0.8, 0.1])
    auc, lo, hi = delong_ci(y, s)
    assert auc == 0.75
    var = np.var([1, 0.5], ddof=1) / 2 + np.var([0.5, 1], ddof=1) / 2  # = 0.125
    assert hi - auc == pytest.approx(min(1 - auc, 1.959964 * math.sqrt(var)), abs=1e-5)
    assert lo == pytest.approx(auc - 1.959964 * math.sqrt(var), abs=1e-5)


def test_delong_variance_close_to_bootstrap_variance():
    rng = np.random.default_rng(3)
    y, s1 = binormal(rng, 150, 150, 1.0)
    s2 = 0.7 * s1 + rng.normal(0, 0.8, y.size)
    res = delong_test(y, s1, s2)
    boot = bootstrap_difference(y, s1, s2, n_resamples=2000, seed=0)
    assert boot.estimate == pytest.approx(res.delta, abs=1e-12)
    assert boot.std_error**2 == pytest.approx(res.std_error**2, rel=0.2)
    single = bootstrap_ci(y, s1, n_resamples=2000, seed=1)
    assert single.std_error**2 == pytest.approx(res.var_a, rel=0.2)


def test_delong_identical_models_p_is_one_and_small_input_rejected():
    y = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    assert delong_test(y, s, 2 * s).p_value == 1.0
    with pytest.raises(ValueError, match="two positive"):
        delong_test([0, 1, 0], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])


def test_metrics_with_ci_summary():
    import json

    from medtl.evaluation.operating_points import operating_points

    rng = np.random.default_rng(4)
    y, s = binormal(rng, 80, 120, 1.5)
    pid = np.arange(y.size) // 2  # two images per patient
    pid = np.where(y == 1, pid, pid + 1000)  # keep each patient's images in one class
    val = operating_points(*binormal(rng, 80, 120, 1.5))
    out = metrics_with_ci(y, s, patient_ids=pid, points=val, n_resamples=200, seed=1)
    json.dumps(out)  # JSON-ready (NaN allowed by json)
    assert out["n_images"] == 200 and out["n_patients"] == 100 and out["n_positive"] == 80
    assert out["thresholds_chosen_on"] == "other data"
    assert out["auroc"] == bootstrap_ci(y, s, patient_ids=pid, n_resamples=200, seed=1).to_dict()
    sens = out["operating_points"]["sensitivity_0.90"]
    assert sens["threshold"] == val["sensitivity_0.90"].threshold
    ci = sens["ci"]["sensitivity"]
    assert ci["lower"] <= sens["metrics"]["sensitivity"] <= ci["upper"]
    same = metrics_with_ci(y, s, n_resamples=50)
    assert same["thresholds_chosen_on"] == "this data" and same["n_patients"] == 200
