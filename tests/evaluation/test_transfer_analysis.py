"""Learning curves, sample efficiency and the transfer verdict."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import t as student_t

from medtl.evaluation.transfer_analysis import (
    NEGATIVE_TRANSFER,
    NO_DIFFERENCE,
    POSITIVE_TRANSFER,
    LearningCurvePoint,
    mean_ci,
    sample_efficiency_table,
    transfer_verdict,
)


def curve_points() -> list[LearningCurvePoint]:
    pts = []
    transfer = {0.1: [0.84, 0.86, 0.85], 0.5: [0.89, 0.91, 0.90], 1.0: [0.92, 0.93, 0.94]}
    scratch = {0.1: [0.65, 0.70, 0.75], 0.5: [0.80, 0.82, 0.84], 1.0: [0.89, 0.90, 0.91]}
    for strategy, table in (("full", transfer), ("scratch", scratch)):
        for f, vals in table.items():
            for seed, v in enumerate(vals):
                pts.append(LearningCurvePoint(strategy, f, seed, auroc=v, n_train=int(1000 * f)))
    return pts


def test_mean_ci_is_student_t_interval():
    m, lo, hi = mean_ci([0.84, 0.86, 0.85])
    half = student_t.ppf(0.975, 2) * 0.01 / math.sqrt(3)
    assert m == pytest.approx(0.85) and (lo, hi) == pytest.approx((0.85 - half, 0.85 + half))
    m, lo, hi = mean_ci([0.9])
    assert m == 0.9 and math.isnan(lo) and math.isnan(hi)


def test_sample_efficiency_table_rows_and_sentences():
    se = sample_efficiency_table(curve_points())
    assert [(r["strategy"], r["fraction"]) for r in se.rows] == [
        ("full", 0.1),
        ("full", 0.5),
        ("full", 1.0),
    ]
    r10 = se.rows[0]
    assert r10["n_seeds"] == 3 and r10["scratch_n_seeds"] == 3
    assert r10["transfer_mean"] == pytest.approx(0.85)
    assert r10["scratch_mean"] == pytest.approx(0.70)
    assert r10["delta"] == pytest.approx(0.15)
    assert r10["relative_to_full_scratch"] == pytest.approx(0.85 / 0.90)
    assert r10["scratch_ci_low"] < 0.70 < r10["scratch_ci_high"]
    assert se.sentences[0] == (
        "Transfer (full) with 10% of labels reaches 94.4% of the AUROC of scratch with 100% "
        "of labels (0.850 vs 0.900)."
    )
    assert "matches or exceeds scratch with 100% of labels from 50% of labels" in se.sentences[-1]
    assert set(se.curves) == {"full", "scratch"}
    assert [c[0] for c in se.curves["scratch"]] == [0.1, 0.5, 1.0]
    d = se.to_dict()
    assert d["curves"]["full"][0]["mean"] == pytest.approx(0.85)
    assert d["rows"] == se.rows and d["sentences"] == se.sentences


def test_sample_efficiency_when_transfer_never_catches_up():
    pts = [
        LearningCurvePoint("frozen_base", 0.5, 0, 0.70),
        LearningCurvePoint("frozen_base", 1.0, 0, 0.75),
        LearningCurvePoint("scratch", 1.0, 0, 0.80),
    ]
    se = sample_efficiency_table(pts)
    assert "does not reach the AUROC of scratch" in se.sentences[-1]
    assert math.isnan(se.rows[0]["scratch_mean"])  # no scratch run at 50%
    with pytest.raises(ValueError):
        LearningCurvePoint("full", 0.0, 0, 0.5)


def simulated_test_set(rng, n, d_transfer, d_scratch, images_per_patient=1):
    n_pat = n // images_per_patient
    y_pat = (np.arange(n_pat) % 2).astype(int)
    pid = np.repeat(np.arange(n_pat), images_per_patient)
    y = y_pat[pid]
    shared = rng.normal(0, 1, n_pat)[pid]  # difficulty shared by both models
    st = d_transfer * y + shared + rng.normal(0, 0.7, n)
    ss = d_scratch * y + shared + rng.normal(0, 0.7, n)
    return y, st, ss, pid


def test_verdict_positive_negative_and_no_difference():
    rng = np.random.default_rng(0)
    y, st, ss, _ = simulated_test_set(rng, 600, 2.0, 0.8)
    v = transfer_verdict(y, st, ss, n_resamples=300)
    assert v.verdict == POSITIVE_TRANSFER and v.delta_auroc > 0 and v.delong_p_value < 0.05
    assert v.ci_low > 0 and v.decided_by == "delong" and not v.is_negative
    v = transfer_verdict(y, ss, st, n_resamples=300)
    assert v.verdict == NEGATIVE_TRANSFER and v.is_negative and v.ci_high < 0
    assert "Negative transfer" in v.sentence()
    y, st, ss, _ = simulated_test_set(rng, 200, 1.0, 1.0)
    v = transfer_verdict(y, st, ss, n_resamples=300)
    assert v.verdict == NO_DIFFERENCE and v.delong_p_value >= 0.05
    assert v.to_dict()["n_patients"] == 200


def test_clustered_images_are_decided_by_patient_bootstrap():
    # 60 patients x 8 near-identical images: DeLong treats 480 images as independent and is
    # overconfident; the patient-level bootstrap sees 60 patients and is not.
    rng = np.random.default_rng(3)
    n_pat, k = 60, 8
    y_pat = np.arange(n_pat) % 2
    pid = np.repeat(np.arange(n_pat), k)
    shared = rng.normal(0, 1, n_pat)
    st = (1.3 * y_pat + shared + rng.normal(0, 0.7, n_pat))[pid] + rng.normal(0, 0.05, pid.size)
    ss = (1.0 * y_pat + shared + rng.normal(0, 0.7, n_pat))[pid] + rng.normal(0, 0.05, pid.size)
    y = y_pat[pid]
    v = transfer_verdict(y, st, ss, patient_ids=pid, n_resamples=400)
    assert v.decided_by == "patient bootstrap" and v.n_patients == 60 and v.n_images == 480
    assert v.delong_p_value < 0.01  # image-level test would call it significant
    assert v.ci_low < 0 < v.ci_high
    assert v.verdict == NO_DIFFERENCE
    # without patient ids the same data is decided by DeLong: positive transfer
    assert transfer_verdict(y, st, ss, n_resamples=200).verdict == POSITIVE_TRANSFER
