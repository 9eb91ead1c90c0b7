"""DeLong's test for two correlated AUROCs, by the fast algorithm of Sun & Xu (2014).

DeLong, DeLong & Clarke-Pearson (1988) estimate the covariance of correlated AUROCs (two
models scored on the same cases) from structural components (placement values).
Sun & Xu (IEEE Signal Processing Letters 21(11), 2014) compute those components with
midranks in O(n log n) instead of the O(m n) pairwise comparisons.

scikit-learn and scipy have no DeLong test, hence this module. The variance assumes
independent cases: when patients contribute several images, prefer the patient-level
bootstrap (:func:`medtl.evaluation.bootstrap.bootstrap_difference`) for the interval.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import norm, rankdata

from medtl.evaluation.metrics import check_binary

__all__ = ["DeLongResult", "delong_ci", "delong_covariance", "delong_test"]


def delong_covariance(
    y_true: ArrayLike, scores: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """AUROCs of several models on the same cases and their DeLong covariance matrix.

    Args:
        y_true: 0/1 labels, length n.
        scores: shape ``(k, n)`` (or ``(n,)`` for one model), one row per model.

    Returns:
        ``(aucs, cov)``: shape ``(k,)`` and ``(k, k)``.
    """
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    y, _ = check_binary(y_true, s[0])
    if s.shape[1] != y.size:
        raise ValueError(f"scores have {s.shape[1]} columns, labels have {y.size}")
    pos = y == 1
    m = int(pos.sum())
    n = y.size - m
    if m < 2 or n < 2:
        raise ValueError("DeLong needs at least two positive and two negative cases")
    x = s[:, pos]  # positives
    z = s[:, ~pos]  # negatives
    tx = rankdata(x, axis=1)  # midranks within positives
    tz = rankdata(z, axis=1)  # midranks within negatives
    t = rankdata(np.concatenate([x, z], axis=1), axis=1)  # midranks overall
    aucs = (t[:, :m].sum(axis=1) / m - (m + 1) / 2.0) / n
    v01 = (t[:, :m] - tx) / n  # placement of each positive among negatives
    v10 = 1.0 - (t[:, m:] - tz) / m  # placement of each negative among positives
    sx = np.atleast_2d(np.cov(v01))
    sz = np.atleast_2d(np.cov(v10))
    return aucs, sx / m + sz / n


@dataclass(frozen=True)
class DeLongResult:
    """Outcome of DeLong's test of AUROC(A) = AUROC(B).

    Attributes:
        auc_a: AUROC of model A.
        auc_b: AUROC of model B.
        delta: ``auc_a - auc_b``.
        std_error: standard error of the difference.
        z: ``delta / std_error``.
        p_value: two-sided p-value.
        var_a: DeLong variance of ``auc_a``.
        var_b: DeLong variance of ``auc_b``.
        covariance: DeLong covariance of ``auc_a`` and ``auc_b``.
    """

    auc_a: float
    auc_b: float
    delta: float
    std_error: float
    z: float
    p_value: float
    var_a: float
    var_b: float
    covariance: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def delong_test(y_true: ArrayLike, score_a: ArrayLike, score_b: ArrayLike) -> DeLongResult:
    """Two-sided DeLong test for two correlated AUROCs on the same cases.

    Args:
        y_true: 0/1 labels.
        score_a: scores of model A (e.g. transfer).
        score_b: scores of model B (e.g. scratch).

    Returns:
        A :class:`DeLongResult`. When both models rank the cases identically the variance
        of the difference is 0; the p-value is then 1 (no evidence of a difference).
    """
    _, sa = check_binary(y_true, score_a)
    _, sb = check_binary(y_true, score_b)
    aucs, cov = delong_covariance(y_true, np.vstack([sa, sb]))
    delta = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    if var <= 1e-15:
        se, z, p = 0.0, 0.0, 1.0
    else:
        se = math.sqrt(var)
        z = delta / se
        p = float(2.0 * norm.sf(abs(z)))
    return DeLongResult(
        auc_a=float(aucs[0]),
        auc_b=float(aucs[1]),
        delta=delta,
        std_error=se,
        z=z,
        p_value=p,
        var_a=float(cov[0, 0]),
        var_b=float(cov[1, 1]),
        covariance=float(cov[0, 1]),
    )


def delong_ci(
    y_true: ArrayLike, y_score: ArrayLike, confidence: float = 0.95
) -> tuple[float, float, float]:
    """AUROC with a normal-approximation CI from the DeLong variance (clipped to [0, 1]).

    Args:
        y_true: 0/1 labels.
        y_score: scores.
        confidence: two-sided level.

    Returns:
        ``(auc, lower, upper)``.
    """
    aucs, cov = delong_covariance(y_true, y_score)
    z = float(norm.ppf(0.5 + confidence / 2.0))
    half = z * math.sqrt(max(float(cov[0, 0]), 0.0))
    auc = float(aucs[0])
    return auc, max(0.0, auc - half), min(1.0, auc + half)
