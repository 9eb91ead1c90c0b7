"""Calibration that can be judged: enough data to fit a calibrator, and CIs of its effect.

Two questions a validator asks about post-hoc calibration:

1. **Was there enough calibration data to fit it?** :data:`CALIBRATION_MINIMUMS` sets, per
   method, the fewest images, patients and images per class on the calibration split below
   which the fit would follow noise; :func:`calibration_split_problem` says why a split is
   too small (``None`` when it is large enough). :func:`medtl.evaluation.run.evaluate_run`
   then falls back to no calibration and records the warning.
2. **Did it measurably change anything?** :func:`calibration_table_ci` measures ECE,
   adaptive ECE, MCE, Brier and NLL before and after calibration on the test split, each
   with a patient-level stratified bootstrap CI, and the CI of the change ``after - before``
   computed on the **same** patient resamples (paired), with a sentence per measure:
   "Calibration did not measurably change ECE ..." when that CI covers 0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medtl.evaluation.bootstrap import resample_indices, summarise_replicates
from medtl.evaluation.calibration_measures import (
    brier_score,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
)

__all__ = [
    "CALIBRATION_MINIMUMS",
    "CalibrationMinimum",
    "calibration_split_problem",
    "calibration_table_ci",
    "change_finding",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrationMinimum:
    """The smallest calibration split a method is fitted on.

    Attributes:
        images: images in the split.
        patients: distinct patients in the split (images of a patient are correlated, so
            many images of few patients are little evidence).
        per_class: images of every class (binary: both classes; multi-class: every class).
    """

    images: int
    patients: int
    per_class: int


#: Minimums per method. Temperature scaling fits one parameter; Platt scaling two; isotonic
#: regression a monotone step function with up to one step per distinct score, which needs
#: far more data to avoid fitting the noise (Niculescu-Mizil & Caruana 2005 found isotonic
#: worse than Platt below roughly a thousand calibration cases; 200 is a floor, not a goal).
CALIBRATION_MINIMUMS: dict[str, CalibrationMinimum] = {
    "temperature": CalibrationMinimum(images=30, patients=5, per_class=1),
    "platt": CalibrationMinimum(images=50, patients=5, per_class=5),
    "isotonic": CalibrationMinimum(images=200, patients=10, per_class=20),
}


def calibration_split_problem(
    method: str,
    labels: ArrayLike,
    patient_ids: ArrayLike,
    n_classes: int = 2,
) -> str | None:
    """Why the calibration split is too small to fit ``method`` (``None`` when it is not).

    Args:
        method: ``temperature``, ``platt``, ``isotonic`` (``none`` is never too small).
        labels: class per calibration image.
        patient_ids: patient per calibration image.
        n_classes: number of classes of the task (2 for binary).

    Returns:
        A sentence naming the shortfall and the minimum, or ``None``.

    Example:
        >>> calibration_split_problem("temperature", [0, 1] * 5, list("aabbccddee"))
        'the calibration split has 10 images (temperature scaling needs at least 30)'
    """
    minimum = CALIBRATION_MINIMUMS.get(method)
    if minimum is None:
        return None
    y = np.asarray(labels).astype(np.int64).reshape(-1)
    n_patients = int(np.unique(np.asarray(patient_ids)).size)
    counts = np.bincount(y, minlength=max(n_classes, int(y.max(initial=0)) + 1))
    name = f"{method} scaling" if method != "isotonic" else "isotonic regression"
    if y.size < minimum.images:
        return f"the calibration split has {y.size} images ({name} needs at least {minimum.images})"
    if n_patients < minimum.patients:
        return (
            f"the calibration split has {n_patients} patients ({name} needs at least "
            f"{minimum.patients})"
        )
    if counts.min() < minimum.per_class:
        short = [int(c) for c in np.flatnonzero(counts < minimum.per_class)]
        return (
            f"the calibration split has fewer than {minimum.per_class} image(s) of class(es) "
            f"{short} ({name} needs at least {minimum.per_class} of every class)"
        )
    return None


#: (short name for sentences, table label, function(probs, labels) -> value)
def _measures(n_bins: int) -> list[tuple[str, str, Callable[[NDArray, NDArray], float]]]:
    return [
        (
            "ECE",
            f"ECE ({n_bins} equal-width bins)",
            lambda p, y: expected_calibration_error(p, y, n_bins),
        ),
        (
            "adaptive ECE",
            f"Adaptive ECE ({n_bins} equal-mass bins)",
            lambda p, y: expected_calibration_error(p, y, n_bins, "quantile"),
        ),
        (
            "MCE",
            f"MCE ({n_bins} equal-width bins)",
            lambda p, y: maximum_calibration_error(p, y, n_bins),
        ),
        ("Brier score", "Brier score", brier_score),
        ("NLL", "NLL", negative_log_likelihood),
    ]


def change_finding(short: str, before: float, after: float, change_ci: Any) -> str:
    """The sentence a report shows for one measure (lower is better for all five).

    Args:
        short: the measure's name in a sentence (``ECE``, ``Brier score`` ...).
        before: value before calibration.
        after: value after calibration.
        change_ci: :class:`~medtl.evaluation.bootstrap.BootstrapCI` of ``after - before``.
    """
    pct = round(100 * change_ci.confidence)
    lo, hi = change_ci.lower, change_ci.upper
    detail = f"change {after - before:+.4f}, {pct}% CI {lo:+.4f} to {hi:+.4f}"
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= 0.0 <= hi:
        return (
            f"Calibration did not measurably change {short} "
            f"({before:.4f} before, {after:.4f} after; {detail})."
        )
    verb = "reduced" if hi < 0 else "increased"
    return f"Calibration {verb} {short} from {before:.4f} to {after:.4f} ({detail})."


def calibration_table_ci(
    before_probs: ArrayLike,
    after_probs: ArrayLike,
    labels: ArrayLike,
    patient_ids: ArrayLike | None = None,
    *,
    n_bins: int = 15,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    calibrated: bool = True,
) -> list[dict[str, Any]]:
    """Before/after calibration measures with patient-level bootstrap CIs.

    Every replicate draws patients with replacement within label strata (all of a drawn
    patient's images kept) and evaluates each measure on the before and after probabilities
    of the **same** images, so the change's interval reflects the pairing.

    Args:
        before_probs: ``(n,)`` or ``(n, k)`` probabilities before calibration.
        after_probs: calibrated probabilities of the same images.
        labels: class per image.
        patient_ids: patient per image (``None``: one image per patient).
        n_bins: bins of ECE, adaptive ECE and MCE.
        n_resamples: bootstrap replicates.
        confidence: two-sided level.
        seed: bootstrap seed.
        calibrated: ``False`` when no calibrator was applied (then the finding says so and
            the change, identically 0, has no interval).

    Returns:
        Rows ``{measure, before, after, change, before_ci, after_ci, change_ci, finding}``
        (CIs as :meth:`BootstrapCI.to_dict`), JSON-ready.
    """
    pb = np.asarray(before_probs, dtype=np.float64)
    pa = np.asarray(after_probs, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    measures = _measures(n_bins)
    reps = np.full((len(measures), 2, n_resamples), np.nan)
    for b, idx in enumerate(
        resample_indices(y, patient_ids=patient_ids, n_resamples=n_resamples, seed=seed)
    ):
        for m, (_short, _label, fn) in enumerate(measures):
            reps[m, 0, b] = fn(pb[idx], y[idx])
            reps[m, 1, b] = fn(pa[idx], y[idx]) if calibrated else reps[m, 0, b]
    kw = {"confidence": confidence, "n_resamples": n_resamples}
    rows = []
    for m, (short, label, fn) in enumerate(measures):
        before, after = fn(pb, y), fn(pa, y)
        before_ci = summarise_replicates(before, reps[m, 0], name=f"{short} before", **kw)
        after_ci = summarise_replicates(after, reps[m, 1], name=f"{short} after", **kw)
        change_ci = summarise_replicates(
            after - before, reps[m, 1] - reps[m, 0], name=f"change in {short}", **kw
        )
        row: dict[str, Any] = {
            "measure": label,
            "before": before,
            "after": after,
            "change": after - before,
            "before_ci": before_ci.to_dict(),
            "after_ci": after_ci.to_dict(),
            "change_ci": change_ci.to_dict() if calibrated else None,
            "finding": (
                change_finding(short, before, after, change_ci)
                if calibrated
                else f"No calibration was applied: {short} {before:.4f} "
                f"({round(100 * confidence)}% CI {before_ci.lower:.4f} to {before_ci.upper:.4f})."
            ),
        }
        rows.append(row)
    return rows
