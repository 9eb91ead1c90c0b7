"""Patient-level, stratified bootstrap confidence intervals.

When a patient contributes several images, the images are not independent; resampling
images would give intervals that are too narrow. Here the unit of resampling is the
patient: each bootstrap replicate draws patients with replacement and keeps all of their
images. Stratification draws positive and negative patients separately (a patient is
positive when any of their images is), so every replicate keeps the original case mix and
AUROC is always defined. Without ``patient_ids`` every image is its own patient.

A replicate is represented by integer weights (how many times each image was drawn); a
weighted statistic equals the statistic on the duplicated sample, which lets AUROC and the
threshold metrics run vectorised over many replicates at once. Other metrics run on index
arrays. For a given ``seed`` the replicates are the same whatever the metric, so intervals
for different metrics (and for the two arms of :func:`bootstrap_difference`) are computed on
the same resamples.

Intervals are percentile intervals of ``n_resamples`` replicates (1000 by default).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medtl.evaluation.metrics import auprc, auroc_fast, check_binary, threshold_metrics
from medtl.evaluation.operating_points import (
    OperatingPoint,
    apply_operating_points,
    operating_points,
)
from medtl.evaluation.resampling import resample_indices, resample_weights
from medtl.evaluation.undefined import display_name as _display
from medtl.evaluation.undefined import log_undefined

__all__ = [
    "BootstrapCI",
    "bootstrap_ci",
    "bootstrap_difference",
    "bootstrap_threshold_metrics",
    "log_undefined",
    "macro_auroc_replicates",
    "metrics_with_ci",
    "resample_indices",
    "resample_weights",
    "summarise_replicates",
]

logger = logging.getLogger(__name__)

Metric = str | Callable[[NDArray, NDArray], float]


@dataclass(frozen=True)
class BootstrapCI:
    """A point estimate with its percentile bootstrap interval.

    Attributes:
        estimate: the statistic on the full data.
        lower: lower percentile bound.
        upper: upper percentile bound.
        confidence: e.g. 0.95.
        n_resamples: replicates drawn.
        n_valid: replicates on which the statistic was defined (others are skipped).
        std_error: standard deviation of the valid replicates.
        replicates: the valid replicate values (not shown in ``repr``).
    """

    estimate: float
    lower: float
    upper: float
    confidence: float
    n_resamples: int
    n_valid: int
    std_error: float
    replicates: NDArray[np.float64] = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict without the replicates."""
        return {
            "estimate": self.estimate,
            "lower": self.lower,
            "upper": self.upper,
            "confidence": self.confidence,
            "n_resamples": self.n_resamples,
            "n_valid": self.n_valid,
            "std_error": self.std_error,
        }

    def __str__(self) -> str:
        pct = round(100 * self.confidence)
        return f"{self.estimate:.3f} ({pct}% CI {self.lower:.3f}-{self.upper:.3f})"


def summarise_replicates(
    estimate: float,
    replicates: ArrayLike,
    *,
    confidence: float = 0.95,
    n_resamples: int,
    name: str = "statistic",
) -> BootstrapCI:
    """A :class:`BootstrapCI` from replicate values (NaN replicates count as undefined).

    Undefined replicates are logged once, as a warning naming ``name``.

    Args:
        estimate: the statistic on the full data.
        replicates: one value per replicate.
        confidence: two-sided level.
        n_resamples: replicates drawn.
        name: what the statistic is, for the warning (e.g. ``"macro AUROC"``).

    Returns:
        The interval.
    """
    _check_conf(confidence, n_resamples)
    ci = _summarise(estimate, np.asarray(replicates, dtype=np.float64), confidence, n_resamples)
    log_undefined({name: [ci]})
    return ci


def _weighted_auroc(y: NDArray, s: NDArray, w: NDArray) -> NDArray[np.float64]:
    """AUROC of each weighted replicate (rows of ``w``); NaN where a class is missing."""
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(s_sorted)) + 1))
    pos = y[order].astype(bool)
    ws = w[:, order].astype(np.float64)
    gp = np.add.reduceat(np.where(pos, ws, 0.0), starts, axis=1)
    gn = np.add.reduceat(np.where(pos, 0.0, ws), starts, axis=1)
    neg_below = np.cumsum(gn, axis=1) - gn
    num = (gp * (neg_below + 0.5 * gn)).sum(axis=1)
    den = gp.sum(axis=1) * gn.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _weighted_auprc(y: NDArray, s: NDArray, w: NDArray) -> NDArray[np.float64]:
    """Average precision of each weighted replicate, as scikit-learn computes it.

    AP = sum over distinct thresholds (descending) of recall increment x precision; tied
    scores form one threshold. NaN where a replicate has no positive.
    """
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(s_sorted)) + 1))
    pos = y[order].astype(bool)
    ws = w[:, order].astype(np.float64)
    tp = np.cumsum(np.add.reduceat(np.where(pos, ws, 0.0), starts, axis=1), axis=1)
    fp = np.cumsum(np.add.reduceat(np.where(pos, 0.0, ws), starts, axis=1), axis=1)
    n_pos = tp[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / np.where(tp + fp > 0, tp + fp, 1.0), 0.0)
        d_recall = np.diff(tp, axis=1, prepend=0.0) / n_pos
        ap = np.sum(d_recall * precision, axis=1)
    return np.where(n_pos[:, 0] > 0, ap, np.nan)


def macro_auroc_replicates(
    labels: ArrayLike,
    probs: ArrayLike,
    patient_ids: ArrayLike | None,
    n_resamples: int,
    seed: int,
) -> NDArray[np.float64]:
    """Macro one-vs-rest AUROC on each stratified patient-level replicate (multi-class).

    The replicates of :func:`resample_indices` (same data, same seed), evaluated as weights:
    per replicate, the mean over the classes present of each class's weighted AUROC, which
    equals :func:`medtl.evaluation.metrics.macro_auroc` on the resampled images but runs
    vectorised (hundreds of times faster than one scikit-learn call per replicate).

    Returns:
        ``(n_resamples,)`` values; NaN where a replicate has fewer than two classes.
    """
    from medtl.evaluation.resampling import _draw, _patients

    y = np.asarray(labels).astype(np.int64).reshape(-1)
    p = np.asarray(probs, dtype=np.float64)
    classes = np.unique(y)
    onehot = [(y == c).astype(np.int64) for c in classes]
    blocks = []
    for w in _draw(y, _patients(y, patient_ids), n_resamples, True, seed, None):
        per_class = np.stack(
            [_weighted_auroc(onehot[k], p[:, int(c)], w) for k, c in enumerate(classes)]
        )
        defined = np.isfinite(per_class)
        total = np.where(defined, per_class, 0.0).sum(axis=0)
        count = defined.sum(axis=0)
        blocks.append(np.where(count >= 2, total / np.maximum(count, 1), np.nan))
    return np.concatenate(blocks) if blocks else np.empty(0)


def _metric_fn(metric: Metric) -> Callable[[NDArray, NDArray], float]:
    if callable(metric):
        return metric
    table: dict[str, Callable[[NDArray, NDArray], float]] = {"auroc": auroc_fast, "auprc": auprc}
    if metric not in table:
        raise ValueError(f"unknown metric {metric!r}; use one of {sorted(table)} or a callable")
    return table[metric]


def _replicates(y: NDArray, s: NDArray, metric: Metric, weights: NDArray) -> NDArray[np.float64]:
    if metric == "auroc":
        return _weighted_auroc(y, s, weights)
    if metric == "auprc":
        return _weighted_auprc(y, s, weights)
    fn = _metric_fn(metric)
    out = np.empty(weights.shape[0])
    base = np.arange(y.size)
    for b, w in enumerate(weights):
        idx = np.repeat(base, w)
        try:
            out[b] = fn(y[idx], s[idx])
        except ValueError:  # statistic undefined on this replicate (e.g. one class only)
            out[b] = np.nan
    return out


def _summarise(estimate: float, reps: NDArray, confidence: float, n_resamples: int) -> BootstrapCI:
    valid = reps[np.isfinite(reps)]
    if valid.size == 0:
        lo = hi = se = math.nan
    else:
        a = (1.0 - confidence) / 2.0
        lo, hi = (float(v) for v in np.quantile(valid, [a, 1.0 - a]))
        se = float(valid.std(ddof=1)) if valid.size > 1 else math.nan
    return BootstrapCI(float(estimate), lo, hi, confidence, n_resamples, int(valid.size), se, valid)


def _check_conf(confidence: float, n_resamples: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must lie in (0, 1)")
    if n_resamples < 1:
        raise ValueError("n_resamples must be >= 1")


def bootstrap_ci(
    y_true: ArrayLike,
    y_score: ArrayLike,
    metric: Metric = "auroc",
    *,
    patient_ids: ArrayLike | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    stratified: bool = True,
    seed: int = 0,
) -> BootstrapCI:
    """Percentile bootstrap CI of a metric, resampling patients.

    Args:
        y_true: 0/1 labels per image.
        y_score: scores per image.
        metric: ``"auroc"`` or ``"auprc"`` (both vectorised), or a callable ``f(y, s) -> float``
            that raises ``ValueError`` (or returns NaN) when undefined on a replicate.
        patient_ids: patient per image; ``None`` = one image per patient.
        n_resamples: number of replicates.
        confidence: two-sided level.
        stratified: keep the numbers of positive and negative patients fixed.
        seed: random seed (same seed = same replicates for every metric).

    Returns:
        A :class:`BootstrapCI`.

    Example:
        >>> ci = bootstrap_ci(y, p, patient_ids=pid, seed=1)  # doctest: +SKIP
        >>> str(ci)  # doctest: +SKIP
        '0.871 (95% CI 0.826-0.912)'
    """
    _check_conf(confidence, n_resamples)
    y, s = check_binary(y_true, y_score)
    estimate = _metric_fn(metric)(y, s)
    reps = np.concatenate(
        [
            _replicates(y, s, metric, w)
            for w in resample_weights(
                y,
                patient_ids=patient_ids,
                n_resamples=n_resamples,
                stratified=stratified,
                seed=seed,
            )
        ]
    )
    ci = _summarise(estimate, reps, confidence, n_resamples)
    log_undefined({_display(metric): [ci]})
    return ci


def bootstrap_difference(
    y_true: ArrayLike,
    score_a: ArrayLike,
    score_b: ArrayLike,
    metric: Metric = "auroc",
    *,
    patient_ids: ArrayLike | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    stratified: bool = True,
    seed: int = 0,
) -> BootstrapCI:
    """Paired bootstrap CI of ``metric(a) - metric(b)`` on the same cases.

    Both models are scored on each replicate, so the correlation between them (same
    patients, same images) is kept, as in DeLong's test.

    Args:
        y_true: 0/1 labels per image.
        score_a: scores of model A (e.g. transfer).
        score_b: scores of model B (e.g. scratch).
        metric: as in :func:`bootstrap_ci`.
        patient_ids: patient per image.
        n_resamples: number of replicates.
        confidence: two-sided level.
        stratified: stratify patients by label.
        seed: random seed.

    Returns:
        A :class:`BootstrapCI` of the difference A - B.
    """
    _check_conf(confidence, n_resamples)
    y, sa = check_binary(y_true, score_a)
    _, sb = check_binary(y_true, score_b)
    fn = _metric_fn(metric)
    estimate = fn(y, sa) - fn(y, sb)
    parts = []
    for w in resample_weights(
        y, patient_ids=patient_ids, n_resamples=n_resamples, stratified=stratified, seed=seed
    ):
        parts.append(_replicates(y, sa, metric, w) - _replicates(y, sb, metric, w))
    ci = _summarise(estimate, np.concatenate(parts), confidence, n_resamples)
    log_undefined({f"difference in {_display(metric)}": [ci]})
    return ci


_RATES = {
    "sensitivity": ("tp", "fn"),
    "specificity": ("tn", "fp"),
    "ppv": ("tp", "fp"),
    "npv": ("tn", "fn"),
}


def bootstrap_threshold_metrics(
    y_true: ArrayLike,
    y_score: ArrayLike,
    threshold: float,
    *,
    patient_ids: ArrayLike | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    stratified: bool = True,
    seed: int = 0,
) -> dict[str, BootstrapCI]:
    """Bootstrap CIs of sensitivity, specificity, PPV, NPV and accuracy at a fixed threshold.

    The threshold is held fixed (chosen beforehand, e.g. on the validation split).
    For a single image per patient, :func:`medtl.evaluation.metrics.wilson_interval` is the
    closed-form alternative for the same proportions.

    Args:
        y_true: 0/1 labels per image.
        y_score: scores per image.
        threshold: cases with ``score >= threshold`` are positive.
        patient_ids: patient per image.
        n_resamples: number of replicates.
        confidence: two-sided level.
        stratified: stratify patients by label.
        seed: random seed.

    Returns:
        Dict with keys ``sensitivity``, ``specificity``, ``ppv``, ``npv``, ``accuracy``.
    """
    cis = _threshold_cis(
        y_true,
        y_score,
        threshold,
        patient_ids=patient_ids,
        n_resamples=n_resamples,
        confidence=confidence,
        stratified=stratified,
        seed=seed,
    )
    log_undefined({name: [ci] for name, ci in cis.items()})
    return cis


def _threshold_cis(
    y_true: ArrayLike,
    y_score: ArrayLike,
    threshold: float,
    *,
    patient_ids: ArrayLike | None,
    n_resamples: int,
    confidence: float,
    stratified: bool,
    seed: int,
) -> dict[str, BootstrapCI]:
    """:func:`bootstrap_threshold_metrics` without the warning (callers gather them)."""
    _check_conf(confidence, n_resamples)
    y, s = check_binary(y_true, y_score)
    full = threshold_metrics(y, s, threshold)
    pred = s >= threshold
    cells = {
        "tp": (y == 1) & pred,
        "fp": (y == 0) & pred,
        "tn": (y == 0) & ~pred,
        "fn": (y == 1) & ~pred,
    }
    reps: dict[str, list[NDArray]] = {k: [] for k in (*_RATES, "accuracy")}
    for w in resample_weights(
        y, patient_ids=patient_ids, n_resamples=n_resamples, stratified=stratified, seed=seed
    ):
        counts = {k: w @ v.astype(np.int64) for k, v in cells.items()}
        with np.errstate(invalid="ignore", divide="ignore"):
            for name, (num, other) in _RATES.items():
                reps[name].append(counts[num] / (counts[num] + counts[other]))
            reps["accuracy"].append((counts["tp"] + counts["tn"]) / w.sum(axis=1))
    return {
        name: _summarise(getattr(full, name), np.concatenate(vals), confidence, n_resamples)
        for name, vals in reps.items()
    }


def metrics_with_ci(
    y_true: ArrayLike,
    y_score: ArrayLike,
    *,
    patient_ids: ArrayLike | None = None,
    points: Mapping[str, OperatingPoint] | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """AUROC and AUPRC with CIs, and the operating points with CIs of their rates.

    All intervals come from the same stratified patient-level replicates (same ``seed``).

    Args:
        y_true: 0/1 labels per image (e.g. the test split).
        y_score: scores per image.
        patient_ids: patient per image, or ``None``.
        points: operating points chosen on another split (recommended: validation); when
            ``None`` they are chosen on this data, which flatters them (noted in the result).
        n_resamples: bootstrap replicates.
        confidence: two-sided level.
        seed: random seed.

    Returns:
        JSON-ready dict with ``n_images``, ``n_patients``, ``n_positive``, ``auroc`` and
        ``auprc`` (each a :meth:`BootstrapCI.to_dict`), ``thresholds_chosen_on``
        (``"this data"`` or ``"other data"``) and ``operating_points``: name -> the
        :meth:`OperatingPoint.to_dict` fields plus ``ci`` (rate -> CI dict; empty when the
        point is not reachable).
    """
    y, s = check_binary(y_true, y_score)
    kw: dict[str, Any] = {
        "patient_ids": patient_ids,
        "n_resamples": n_resamples,
        "confidence": confidence,
        "seed": seed,
    }
    chosen_here = points is None
    pts = operating_points(y, s) if points is None else apply_operating_points(y, s, points)
    ops: dict[str, Any] = {}
    gathered: dict[str, list[BootstrapCI]] = {}
    for name, p in pts.items():
        entry = p.to_dict()
        cis = {}
        if p.threshold is not None:
            cis = _threshold_cis(y, s, p.threshold, stratified=True, **kw)
        for metric, ci in cis.items():
            gathered.setdefault(metric, []).append(ci)
        entry["ci"] = {k: v.to_dict() for k, v in cis.items()}
        ops[name] = entry
    log_undefined(gathered)
    n_patients = y.size if patient_ids is None else int(np.unique(np.asarray(patient_ids)).size)
    return {
        "n_images": int(y.size),
        "n_patients": n_patients,
        "n_positive": int(y.sum()),
        "auroc": bootstrap_ci(y, s, "auroc", **kw).to_dict(),
        "auprc": bootstrap_ci(y, s, "auprc", **kw).to_dict(),
        "thresholds_chosen_on": "this data" if chosen_here else "other data",
        "operating_points": ops,
    }
