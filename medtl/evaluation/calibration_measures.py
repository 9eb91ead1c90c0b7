"""Calibration measures: ECE (equal-width or equal-mass bins), MCE, Brier, NLL, reliability.

Part of :mod:`medtl.evaluation.calibration` (which re-exports every public name): see its
docstring for the binning conventions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medtl.evaluation.calibrators import _EPS, _labels

__all__ = [
    "ReliabilityCurve",
    "brier_score",
    "calibration_table",
    "expected_calibration_error",
    "maximum_calibration_error",
    "negative_log_likelihood",
    "reliability_curve",
]

Strategy = Literal["uniform", "quantile"]


def _conf_target(probs: ArrayLike, labels: ArrayLike) -> tuple[NDArray, NDArray]:
    """(confidence, target) pairs: binary p vs y; multi-class top-label p vs correctness."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim not in (1, 2) or p.shape[0] == 0:
        raise ValueError(f"probs must be (n,) or (n, k), got shape {p.shape}")
    if not np.isfinite(p).all() or p.min() < 0 or p.max() > 1:
        raise ValueError("probs must be finite and lie in [0, 1]")
    y = _labels(labels, p.shape[0])
    if p.ndim == 1:
        if y.size and y.max() > 1:
            raise ValueError("binary probs need 0/1 labels")
        return p, y.astype(np.float64)
    return p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)


def _edges(conf: NDArray, n_bins: int, strategy: Strategy) -> NDArray[np.float64]:
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, n_bins + 1)
    if strategy == "quantile":
        return np.percentile(conf, np.linspace(0.0, 100.0, n_bins + 1))
    raise ValueError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")


@dataclass(frozen=True)
class ReliabilityCurve:
    """Per-bin calibration statistics (NaN means for empty bins).

    Attributes:
        mean_predicted: mean probability (binary) or confidence (multi-class) per bin.
        fraction_positive: fraction of positives (binary) or accuracy (multi-class) per bin.
        counts: cases per bin.
        edges: ``n_bins + 1`` bin edges.
    """

    mean_predicted: NDArray[np.float64]
    fraction_positive: NDArray[np.float64]
    counts: NDArray[np.int64]
    edges: NDArray[np.float64]

    @property
    def gaps(self) -> NDArray[np.float64]:
        """``|mean_predicted - fraction_positive|`` per bin (NaN for empty bins)."""
        return np.abs(self.mean_predicted - self.fraction_positive)


def reliability_curve(
    probs: ArrayLike, labels: ArrayLike, n_bins: int = 15, strategy: Strategy = "uniform"
) -> ReliabilityCurve:
    """Reliability curve with bin counts.

    Args:
        probs: ``(n,)`` positive-class probabilities or ``(n, k)`` class probabilities.
        labels: ``(n,)`` integer labels.
        n_bins: number of bins.
        strategy: ``"uniform"`` (equal width) or ``"quantile"`` (equal mass).

    Returns:
        A :class:`ReliabilityCurve` with ``n_bins`` entries (empty bins kept, count 0).
    """
    conf, target = _conf_target(probs, labels)
    edges = _edges(conf, n_bins, strategy)
    ids = np.searchsorted(edges[1:-1], conf, side="left")
    counts = np.bincount(ids, minlength=n_bins)
    sum_p = np.bincount(ids, weights=conf, minlength=n_bins)
    sum_y = np.bincount(ids, weights=target, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(counts > 0, sum_p / np.maximum(counts, 1), np.nan)
        frac = np.where(counts > 0, sum_y / np.maximum(counts, 1), np.nan)
    return ReliabilityCurve(mean_p, frac, counts.astype(np.int64), edges)


def expected_calibration_error(
    probs: ArrayLike, labels: ArrayLike, n_bins: int = 15, strategy: Strategy = "uniform"
) -> float:
    """ECE: count-weighted mean of ``|mean probability - fraction positive|`` over bins.

    ``strategy="quantile"`` gives the adaptive ECE (equal-mass bins, Nixon et al. 2019).

    Args:
        probs: ``(n,)`` positive-class probabilities or ``(n, k)`` (top-label ECE).
        labels: ``(n,)`` integer labels.
        n_bins: number of bins.
        strategy: ``"uniform"`` or ``"quantile"``.

    Returns:
        ECE in [0, 1].
    """
    rc = reliability_curve(probs, labels, n_bins, strategy)
    ok = rc.counts > 0
    return float(np.sum(rc.counts[ok] * rc.gaps[ok]) / rc.counts.sum())


def maximum_calibration_error(
    probs: ArrayLike, labels: ArrayLike, n_bins: int = 15, strategy: Strategy = "uniform"
) -> float:
    """MCE: the largest ``|mean probability - fraction positive|`` over non-empty bins.

    Args:
        probs: ``(n,)`` positive-class probabilities or ``(n, k)``.
        labels: ``(n,)`` integer labels.
        n_bins: number of bins.
        strategy: ``"uniform"`` or ``"quantile"``.

    Returns:
        MCE in [0, 1].
    """
    rc = reliability_curve(probs, labels, n_bins, strategy)
    return float(np.max(rc.gaps[rc.counts > 0]))


def brier_score(probs: ArrayLike, labels: ArrayLike) -> float:
    """Brier score: mean squared error of the probabilities.

    Binary: ``mean((p - y)^2)`` (scikit-learn's ``brier_score_loss``). Multi-class: Brier's
    original ``mean(sum_k (p_k - onehot_k)^2)``, which is twice the binary value for k = 2.

    Args:
        probs: ``(n,)`` positive-class probabilities or ``(n, k)``.
        labels: ``(n,)`` integer labels.

    Returns:
        The score (lower is better).
    """
    p = np.asarray(probs, dtype=np.float64)
    _conf_target(p, labels)
    y = np.asarray(labels).astype(np.int64)
    if p.ndim == 1:
        return float(np.mean((p - y) ** 2))
    onehot = np.eye(p.shape[1])[y]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def negative_log_likelihood(probs: ArrayLike, labels: ArrayLike, eps: float = _EPS) -> float:
    """Mean negative log-likelihood (log loss), probabilities clipped to ``[eps, 1 - eps]``.

    Args:
        probs: ``(n,)`` positive-class probabilities or ``(n, k)``.
        labels: ``(n,)`` integer labels.
        eps: clipping constant that keeps the loss finite.

    Returns:
        NLL in nats (lower is better).
    """
    p = np.asarray(probs, dtype=np.float64)
    _conf_target(p, labels)
    y = np.asarray(labels).astype(np.int64)
    py = np.where(y == 1, p, 1.0 - p) if p.ndim == 1 else p[np.arange(y.size), y]
    return float(-np.mean(np.log(np.clip(py, eps, 1.0 - eps))))


def calibration_table(
    before_probs: ArrayLike, after_probs: ArrayLike, labels: ArrayLike, n_bins: int = 15
) -> list[dict[str, Any]]:
    """Before/after calibration measures as rows for a report table.

    Args:
        before_probs: probabilities before calibration (e.g. ``sigmoid(logits)``).
        after_probs: calibrated probabilities on the same cases.
        labels: integer labels.
        n_bins: bins for ECE, adaptive ECE and MCE.

    Returns:
        Rows ``{"measure", "before", "after", "change"}`` for ECE, adaptive ECE, MCE, Brier
        and NLL (``change = after - before``; negative is an improvement for all five).
    """
    measures = [
        (
            f"ECE ({n_bins} equal-width bins)",
            lambda p: expected_calibration_error(p, labels, n_bins),
        ),
        (
            f"Adaptive ECE ({n_bins} equal-mass bins)",
            lambda p: expected_calibration_error(p, labels, n_bins, "quantile"),
        ),
        (
            f"MCE ({n_bins} equal-width bins)",
            lambda p: maximum_calibration_error(p, labels, n_bins),
        ),
        ("Brier score", lambda p: brier_score(p, labels)),
        ("NLL", lambda p: negative_log_likelihood(p, labels)),
    ]
    rows = []
    for name, fn in measures:
        b, a = fn(before_probs), fn(after_probs)
        rows.append({"measure": name, "before": b, "after": a, "change": a - b})
    return rows
