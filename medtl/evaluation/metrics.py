"""Binary classification metrics: AUROC, AUPRC and the threshold metrics of a confusion matrix.

Convention used throughout ``medtl.evaluation``: ``y_true`` holds 0/1 labels (1 = positive,
e.g. "nodule") and ``y_score`` any score that grows with the positive class (a probability or a
logit). A case is called positive at threshold ``t`` when ``y_score >= t`` (the scikit-learn
``roc_curve`` convention).

Example:
    >>> m = threshold_metrics([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], threshold=0.5)
    >>> m.sensitivity, m.specificity
    (0.5, 0.5)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import norm, rankdata
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

__all__ = [
    "ThresholdMetrics",
    "auprc",
    "auroc",
    "auroc_fast",
    "check_binary",
    "macro_auroc",
    "threshold_metrics",
    "wilson_interval",
]


def check_binary(y_true: ArrayLike, y_score: ArrayLike) -> tuple[NDArray[np.int64], NDArray]:
    """Validate and convert a binary label vector and a matching score vector.

    Args:
        y_true: labels, 0/1 (booleans accepted).
        y_score: scores of the same length; must be finite.

    Returns:
        ``(y, s)`` as 1D ``int64`` and ``float64`` arrays.

    Raises:
        ValueError: on shape mismatch, labels other than 0/1, or non-finite scores.
    """
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(f"expected 1D labels and scores, got shapes {y.shape} and {s.shape}")
    if y.shape[0] != s.shape[0]:
        raise ValueError(f"labels ({y.shape[0]}) and scores ({s.shape[0]}) differ in length")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0/1 (binary task)")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite (no NaN or inf)")
    return y.astype(np.int64), s


def _require_both_classes(y: NDArray[np.int64]) -> None:
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise ValueError("AUROC/AUPRC need at least one positive and one negative case")


def auroc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the ROC curve (scikit-learn ``roc_auc_score``).

    Args:
        y_true: 0/1 labels.
        y_score: scores, larger = more likely positive.

    Returns:
        AUROC in [0, 1].
    """
    y, s = check_binary(y_true, y_score)
    _require_both_classes(y)
    return float(roc_auc_score(y, s))


def macro_auroc(labels: ArrayLike, probs: ArrayLike) -> float:
    """Macro one-vs-rest AUROC over the classes present in ``labels`` (multi-class).

    The one definition used by validation during training and by evaluation.

    Args:
        labels: integer class per image.
        probs: ``(n, K)`` class probabilities (or scores).

    Returns:
        The mean of the per-class AUROCs; NaN when fewer than two classes are present.
    """
    y = np.asarray(labels).reshape(-1)
    p = np.asarray(probs, dtype=np.float64)
    present = np.unique(y)
    if present.size < 2:
        return float("nan")
    return float(np.mean([roc_auc_score(y == k, p[:, int(k)]) for k in present]))


def auroc_fast(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """AUROC by the Mann-Whitney rank statistic, without scikit-learn's input checks.

    Identical to :func:`auroc` (ties count one half); used in inner loops (bootstrap,
    simulations) where ``roc_auc_score``'s per-call validation dominates the run time.

    Args:
        y_true: 0/1 labels.
        y_score: scores.

    Returns:
        AUROC in [0, 1].
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(y_score, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs at least one positive and one negative case")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auprc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the precision-recall curve as average precision (scikit-learn).

    Average precision is the step-wise area (no interpolation), the estimator scikit-learn
    recommends over the trapezoidal rule, which is optimistic for PR curves.

    Args:
        y_true: 0/1 labels.
        y_score: scores.

    Returns:
        Average precision in [0, 1].
    """
    y, s = check_binary(y_true, y_score)
    _require_both_classes(y)
    return float(average_precision_score(y, s))


def _safe_div(a: int, b: int) -> float:
    return a / b if b else math.nan


@dataclass(frozen=True)
class ThresholdMetrics:
    """Confusion matrix and derived rates at one threshold.

    Rates with an empty denominator (e.g. PPV when nothing is called positive) are NaN.
    """

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        """Number of cases."""
        return self.tp + self.fp + self.tn + self.fn

    @property
    def sensitivity(self) -> float:
        """TP / (TP + FN), also recall or true-positive rate."""
        return _safe_div(self.tp, self.tp + self.fn)

    @property
    def specificity(self) -> float:
        """TN / (TN + FP)."""
        return _safe_div(self.tn, self.tn + self.fp)

    @property
    def ppv(self) -> float:
        """TP / (TP + FP), positive predictive value (precision)."""
        return _safe_div(self.tp, self.tp + self.fp)

    @property
    def npv(self) -> float:
        """TN / (TN + FN), negative predictive value."""
        return _safe_div(self.tn, self.tn + self.fn)

    @property
    def accuracy(self) -> float:
        """(TP + TN) / N."""
        return _safe_div(self.tp + self.tn, self.n)

    @property
    def confusion_matrix(self) -> list[list[int]]:
        """``[[TN, FP], [FN, TP]]`` (scikit-learn layout: rows = truth, columns = prediction)."""
        return [[self.tn, self.fp], [self.fn, self.tp]]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with counts, rates and the confusion matrix (JSON-ready; NaN stays NaN)."""
        d: dict[str, Any] = asdict(self)
        for name in ("sensitivity", "specificity", "ppv", "npv", "accuracy"):
            d[name] = getattr(self, name)
        d["confusion_matrix"] = self.confusion_matrix
        return d


def threshold_metrics(y_true: ArrayLike, y_score: ArrayLike, threshold: float) -> ThresholdMetrics:
    """Confusion matrix and rates when cases with ``y_score >= threshold`` are called positive.

    Args:
        y_true: 0/1 labels.
        y_score: scores.
        threshold: decision threshold on the score scale.

    Returns:
        A :class:`ThresholdMetrics`.
    """
    y, s = check_binary(y_true, y_score)
    pred = (s >= threshold).astype(np.int64)
    (tn, fp), (fn, tp) = confusion_matrix(y, pred, labels=[0, 1])
    return ThresholdMetrics(float(threshold), int(tp), int(fp), int(tn), int(fn))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927; Newcombe 1998, method 3).

    Preferred over the normal (Wald) interval because it stays inside [0, 1] and keeps near
    nominal coverage for small ``n`` and proportions near 0 or 1 (e.g. sensitivity 1.0).

    Args:
        successes: number of successes ``k`` (e.g. true positives).
        n: number of trials (e.g. positives); 0 gives ``(nan, nan)``.
        confidence: two-sided confidence level.

    Returns:
        ``(lower, upper)``.
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} and {n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must lie in (0, 1)")
    if n == 0:
        return (math.nan, math.nan)
    z = float(norm.ppf(0.5 + confidence / 2.0))
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # exact ends for k = 0 and k = n (the formula gives them only up to rounding)
    lower = 0.0 if successes == 0 else max(0.0, centre - half)
    upper = 1.0 if successes == n else min(1.0, centre + half)
    return (lower, upper)
