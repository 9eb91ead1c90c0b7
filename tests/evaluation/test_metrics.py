"""Metrics, operating points and Wilson intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    precision_score,
    recall_score,
    roc_auc_score,
)

from medtl.evaluation.metrics import (
    auprc,
    auroc,
    auroc_fast,
    threshold_metrics,
    wilson_interval,
)
from medtl.evaluation.operating_points import (
    apply_operating_points,
    describe,
    operating_points,
    threshold_for_ppv,
)


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + 1.2 * y, 1)  # rounded: many ties
    return y, s


def test_auc_metrics_equal_sklearn(data):
    y, s = data
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert auroc_fast(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert auprc(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_threshold_metrics_equal_sklearn(data):
    y, s = data
    m = threshold_metrics(y, s, 0.5)
    pred = (s >= 0.5).astype(int)
    assert m.confusion_matrix == confusion_matrix(y, pred).tolist()
    assert m.accuracy == pytest.approx(accuracy_score(y, pred))
    assert m.sensitivity == pytest.approx(recall_score(y, pred))
    assert m.specificity == pytest.approx(recall_score(1 - y, 1 - pred))
    assert m.ppv == pytest.approx(precision_score(y, pred))
    assert m.npv == pytest.approx(precision_score(1 - y, 1 - pred))
    d = m.to_dict()
    assert d["tp"] + d["fn"] == int(y.sum()) and d["confusion_matrix"] == m.confusion_matrix


def test_threshold_metrics_empty_denominator_is_nan():
    m = threshold_metrics([0, 1, 0], [0.1, 0.2, 0.3], threshold=0.9)
    assert m.tp == 0 and m.fp == 0 and math.isnan(m.ppv) and m.specificity == 1.0


def test_input_validation():
    with pytest.raises(ValueError, match="0/1"):
        auroc([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="length"):
        auroc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="finite"):
        auroc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="positive and one negative"):
        auroc([1, 1], [0.1, 0.2])


def test_wilson_textbook_values():
    # Newcombe (1998) Table I, method 3: 81/263 -> 0.2553 to 0.3662; 15/148 -> 0.0624-0.1605
    lo, hi = wilson_interval(81, 263)
    assert (lo, hi) == pytest.approx((0.2553, 0.3662), abs=5e-5)
    lo, hi = wilson_interval(15, 148)
    assert (lo, hi) == pytest.approx((0.0624, 0.1605), abs=5e-5)
    # 0/10 -> 0 to 0.2775 (Newcombe's example 0/10)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=5e-5)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(5, 3)


def constructed() -> tuple[np.ndarray, np.ndarray]:
    # 10 positives scored 10..19 and 20 negatives scored 0..19 (distinct except overlap)
    y = np.array([1] * 10 + [0] * 20)
    s = np.concatenate([np.arange(10, 20) + 0.5, np.arange(20, dtype=float)])
    return y, s


def test_operating_points_hit_targets():
    y, s = constructed()
    pts = operating_points(y, s)
    assert set(pts) == {"youden", "sensitivity_0.90", "specificity_0.90", "ppv_0.80"}
    sens = pts["sensitivity_0.90"]
    # highest threshold with 9 of 10 positives: 11.5 (positives 11.5..19.5)
    assert sens.threshold == 11.5 and sens.metrics.sensitivity == 0.9
    spec = pts["specificity_0.90"]
    # 18 of 20 negatives must stay below: negatives 18 and 19 may be called positive, so the
    # lowest threshold is the positive scored 17.5 (positives 17.5, 18.5, 19.5 detected)
    assert spec.threshold == 17.5 and spec.metrics.specificity == 0.9
    assert spec.metrics.sensitivity == pytest.approx(0.3)
    ppv = pts["ppv_0.80"]
    assert ppv.reachable and ppv.metrics.ppv >= 0.8
    # any lower threshold drops PPV below 0.80 or is not better: check exhaustively
    for t in np.unique(s):
        m = threshold_metrics(y, s, t)
        if m.ppv >= 0.8:
            assert t >= ppv.threshold
    you = pts["youden"]
    j = you.metrics.sensitivity + you.metrics.specificity - 1
    best = max(
        threshold_metrics(y, s, t).sensitivity + threshold_metrics(y, s, t).specificity - 1
        for t in np.unique(s)
    )
    assert j == pytest.approx(best)
    assert "threshold" in describe(sens)


def test_ppv_not_reachable():
    # prevalence 0.5 and the top score is a negative: PPV never reaches 0.8
    y = np.array([0, 1, 0, 1, 0, 1])
    s = np.array([6, 5, 4, 3, 2, 1], dtype=float)
    assert threshold_for_ppv(y, s, 0.8) is None
    p = operating_points(y, s)["ppv_0.80"]
    assert not p.reachable and p.status == "not reachable" and p.metrics is None
    assert describe(p) == "PPV >= 0.80: not reachable"
    assert p.to_dict()["status"] == "not reachable"


def test_apply_operating_points_keeps_validation_thresholds():
    rng = np.random.default_rng(3)
    y_val = rng.integers(0, 2, 200)
    s_val = rng.normal(size=200) + 1.5 * y_val
    y_test = rng.integers(0, 2, 150)
    s_test = rng.normal(size=150) + 1.5 * y_test
    val = operating_points(y_val, s_val)
    test = apply_operating_points(y_test, s_test, val)
    assert list(test) == list(val)
    for name in val:
        assert test[name].threshold == val[name].threshold
        assert test[name].metrics == threshold_metrics(y_test, s_test, val[name].threshold)
