"""Operating points: thresholds chosen for a stated clinical goal.

Four standard points are computed by :func:`operating_points`:

- ``youden``: maximises sensitivity + specificity - 1 (Youden's J);
- ``sensitivity_0.90``: the highest threshold whose sensitivity is >= 0.90 (so the best
  specificity among thresholds that miss at most 10% of positives);
- ``specificity_0.90``: the lowest threshold whose specificity is >= 0.90 (best sensitivity
  among thresholds with at most 10% false alarms);
- ``ppv_0.80``: the lowest threshold whose PPV is >= 0.80 (best sensitivity with at least 80% of
  positive calls correct). PPV is not monotone in the threshold and may never reach the target;
  the point is then reported as not reachable (``reachable=False``, ``threshold=None``).

Thresholds are candidate scores from scikit-learn's ``roc_curve`` (every distinct score),
and a case is positive when ``score >= threshold``. Choose thresholds on a validation or
calibration split and report them on the test split; these functions take arrays and do not
know which split they see.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import roc_curve

from medtl.evaluation.metrics import ThresholdMetrics, check_binary, threshold_metrics

__all__ = [
    "OperatingPoint",
    "apply_operating_points",
    "describe",
    "operating_points",
    "threshold_for_ppv",
    "threshold_for_sensitivity",
    "threshold_for_specificity",
    "youden_threshold",
]

NOT_REACHABLE = "not reachable"


@dataclass(frozen=True)
class OperatingPoint:
    """A named threshold and the metrics it gives on the data it was chosen on.

    Attributes:
        name: e.g. ``"youden"`` or ``"sensitivity_0.90"``.
        goal: human-readable goal, e.g. ``"sensitivity >= 0.90"``.
        threshold: score threshold, or ``None`` when the goal is not reachable.
        metrics: confusion matrix and rates at ``threshold`` (``None`` when not reachable).
    """

    name: str
    goal: str
    threshold: float | None
    metrics: ThresholdMetrics | None

    @property
    def reachable(self) -> bool:
        """Whether some threshold meets the goal."""
        return self.threshold is not None

    @property
    def status(self) -> str:
        """``"reached"`` or ``"not reachable"`` (the wording reports use)."""
        return "reached" if self.reachable else NOT_REACHABLE

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (for the model card and reports)."""
        return {
            "name": self.name,
            "goal": self.goal,
            "status": self.status,
            "threshold": self.threshold,
            "metrics": None if self.metrics is None else self.metrics.to_dict(),
        }


def _roc(y_true: ArrayLike, y_score: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, s = check_binary(y_true, y_score)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise ValueError("operating points need at least one positive and one negative case")
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    # roc_curve's first threshold is +inf (nothing positive); it is never a useful point.
    return fpr[1:], tpr[1:], thr[1:]


def youden_threshold(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Threshold maximising Youden's J = sensitivity + specificity - 1.

    Ties are broken towards the higher threshold (fewer positive calls).

    Args:
        y_true: 0/1 labels.
        y_score: scores.

    Returns:
        The threshold.
    """
    fpr, tpr, thr = _roc(y_true, y_score)
    return float(thr[int(np.argmax(tpr - fpr))])


def threshold_for_sensitivity(
    y_true: ArrayLike, y_score: ArrayLike, target: float = 0.90
) -> float | None:
    """Highest threshold with sensitivity >= ``target`` (best specificity at that sensitivity).

    Args:
        y_true: 0/1 labels.
        y_score: scores.
        target: minimum sensitivity.

    Returns:
        The threshold (always reachable: the lowest score gives sensitivity 1).
    """
    _fpr, tpr, thr = _roc(y_true, y_score)
    ok = np.flatnonzero(tpr >= target - 1e-12)
    return float(thr[ok[0]]) if ok.size else None


def threshold_for_specificity(
    y_true: ArrayLike, y_score: ArrayLike, target: float = 0.90
) -> float | None:
    """Lowest threshold with specificity >= ``target`` (best sensitivity at that specificity).

    Args:
        y_true: 0/1 labels.
        y_score: scores.
        target: minimum specificity.

    Returns:
        The threshold, or ``None`` if even the highest score gives lower specificity (which
        happens only when negatives share the top score).
    """
    fpr, _tpr, thr = _roc(y_true, y_score)
    ok = np.flatnonzero(1.0 - fpr >= target - 1e-12)
    return float(thr[ok[-1]]) if ok.size else None


def threshold_for_ppv(y_true: ArrayLike, y_score: ArrayLike, target: float = 0.80) -> float | None:
    """Lowest threshold with PPV >= ``target`` (best sensitivity at that PPV), if any.

    Args:
        y_true: 0/1 labels.
        y_score: scores.
        target: minimum positive predictive value.

    Returns:
        The threshold, or ``None`` when no threshold reaches the target PPV.
    """
    y, _ = check_binary(y_true, y_score)
    fpr, tpr, thr = _roc(y_true, y_score)
    n_pos = int(y.sum())
    tp = tpr * n_pos
    fp = fpr * (y.size - n_pos)
    with np.errstate(invalid="ignore", divide="ignore"):
        ppv = tp / (tp + fp)
    ok = np.flatnonzero(ppv >= target - 1e-12)
    return float(thr[ok[-1]]) if ok.size else None


def _point(name: str, goal: str, y: Any, s: Any, thr: float | None) -> OperatingPoint:
    metrics = None if thr is None else threshold_metrics(y, s, thr)
    return OperatingPoint(name=name, goal=goal, threshold=thr, metrics=metrics)


def operating_points(
    y_true: ArrayLike,
    y_score: ArrayLike,
    *,
    sensitivity: float = 0.90,
    specificity: float = 0.90,
    ppv: float = 0.80,
) -> dict[str, OperatingPoint]:
    """The four standard operating points (see the module docstring).

    Args:
        y_true: 0/1 labels.
        y_score: scores.
        sensitivity: target of the sensitivity point.
        specificity: target of the specificity point.
        ppv: target of the PPV point.

    Returns:
        Dict ``name -> OperatingPoint`` with keys ``"youden"``, ``"sensitivity_0.90"``,
        ``"specificity_0.90"``, ``"ppv_0.80"`` (numbers follow the targets given).
    """
    y, s = check_binary(y_true, y_score)
    points = [
        _point("youden", "max Youden J (sens + spec - 1)", y, s, youden_threshold(y, s)),
        _point(
            f"sensitivity_{sensitivity:.2f}",
            f"sensitivity >= {sensitivity:.2f}",
            y,
            s,
            threshold_for_sensitivity(y, s, sensitivity),
        ),
        _point(
            f"specificity_{specificity:.2f}",
            f"specificity >= {specificity:.2f}",
            y,
            s,
            threshold_for_specificity(y, s, specificity),
        ),
        _point(f"ppv_{ppv:.2f}", f"PPV >= {ppv:.2f}", y, s, threshold_for_ppv(y, s, ppv)),
    ]
    return {p.name: p for p in points}


def apply_operating_points(
    y_true: ArrayLike, y_score: ArrayLike, points: Mapping[str, OperatingPoint]
) -> dict[str, OperatingPoint]:
    """Evaluate thresholds chosen elsewhere (e.g. on the validation split) on new data.

    The threshold of each point is kept; only its metrics are recomputed, so the test-set
    sensitivity of the ``sensitivity_0.90`` point may fall below 0.90. Points that were not
    reachable stay not reachable.

    Args:
        y_true: 0/1 labels of the evaluation data (e.g. the test split).
        y_score: scores of the evaluation data.
        points: operating points from :func:`operating_points` on the selection data.

    Returns:
        Dict ``name -> OperatingPoint`` with the same names, goals and thresholds.
    """
    y, s = check_binary(y_true, y_score)
    return {name: _point(p.name, p.goal, y, s, p.threshold) for name, p in points.items()}


def describe(point: OperatingPoint) -> str:
    """One line for a report, e.g. ``"PPV >= 0.80: not reachable"``.

    Args:
        point: an operating point.

    Returns:
        A sentence with threshold, sensitivity and specificity, or "not reachable".
    """
    if point.metrics is None or point.threshold is None:
        return f"{point.goal}: {NOT_REACHABLE}"
    m = point.metrics

    def pct(v: float) -> str:
        return "n/a" if math.isnan(v) else f"{100 * v:.1f}%"

    return (
        f"{point.goal}: threshold {point.threshold:.4g}, sensitivity {pct(m.sensitivity)}, "
        f"specificity {pct(m.specificity)}, PPV {pct(m.ppv)}, NPV {pct(m.npv)}"
    )
