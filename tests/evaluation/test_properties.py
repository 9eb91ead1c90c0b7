"""Property tests: vectorised bootstrap statistics equal scikit-learn on the resampled data."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from medtl.evaluation.bootstrap import _weighted_auprc, _weighted_auroc
from medtl.evaluation.delong import delong_covariance
from medtl.evaluation.metrics import wilson_interval


@st.composite
def weighted_case(draw):
    n = draw(st.integers(4, 30))
    y = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    y[0], y[1] = 0, 1  # both classes present
    s = np.array(draw(st.lists(st.integers(0, 5), min_size=n, max_size=n)), dtype=float)  # ties
    w = np.array(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    w[0] = max(w[0], 1)
    w[1] = max(w[1], 1)
    return y, s, w


@settings(max_examples=60, deadline=None)
@given(weighted_case())
def test_weighted_statistics_equal_sklearn_on_duplicated_sample(case):
    y, s, w = case
    idx = np.repeat(np.arange(y.size), w)
    auc = _weighted_auroc(y, s, w[None, :])[0]
    ap = _weighted_auprc(y, s, w[None, :])[0]
    assert abs(auc - roc_auc_score(y[idx], s[idx])) < 1e-12
    assert abs(ap - average_precision_score(y[idx], s[idx])) < 1e-12


@settings(max_examples=60, deadline=None)
@given(weighted_case())
def test_delong_variance_non_negative_and_auc_matches(case):
    y, s, _ = case
    if min(int(y.sum()), int((1 - y).sum())) < 2:
        return
    aucs, cov = delong_covariance(y, s)
    assert abs(aucs[0] - roc_auc_score(y, s)) < 1e-12
    assert cov[0, 0] >= -1e-15


@given(st.integers(0, 500), st.integers(0, 500))
def test_wilson_interval_contains_the_proportion(k, extra):
    n = k + extra
    if n == 0:
        return
    lo, hi = wilson_interval(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
