"""The JSON-ready result of one prediction (:class:`PredictionResult`) and its parts.

Pure pydantic: importing this module loads neither torch nor MONAI. Arrays (the heat map and
the coarse region map of volumes) are carried on the object for display but excluded from
JSON; their shapes and peaks are summarised in JSON fields.

No PHI: :class:`ScanInfo` copies a whitelist of header fields (modality, body part, view,
laterality, geometry); pseudonyms and UIDs stay out of results.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

RESULT_SCHEMA_VERSION = 1

DomainStatus = Literal["ok", "warn", "refuse"]
_STATUS_ORDER = {"ok": 0, "warn": 1, "refuse": 2}


class DomainCheck(BaseModel):
    """The domain guard's verdict on one scan.

    Attributes:
        status: ``"ok"``, ``"warn"`` (result shown with a caution) or ``"refuse"`` (no
            result: the model was not made for this kind of image).
        reasons: one sentence per problem, in words a clinician understands.
        feature_distance: Mahalanobis distance of the scan's pooled features to the
            training features (``None`` when not computed).
        distance_threshold: the distance above which the guard warns.
        checks: per-check outcome (``modality``, ``body_part``, ``dimensionality``,
            ``geometry``, ``features``) -> ``"ok"``, ``"warn"``, ``"refuse"`` or
            ``"not checked"``.
    """

    model_config = ConfigDict(extra="forbid")

    status: DomainStatus = "ok"
    reasons: list[str] = Field(default_factory=list)
    feature_distance: float | None = None
    distance_threshold: float | None = None
    checks: dict[str, str] = Field(default_factory=dict)

    def add(self, check: str, status: str, reason: str | None = None) -> None:
        """Record one check's outcome; the overall status is the worst seen.

        Args:
            check: the check's name.
            status: ``"ok"``, ``"warn"``, ``"refuse"`` or ``"not checked"``.
            reason: the sentence shown to the clinician (warn/refuse).
        """
        self.checks[check] = status
        if reason:
            self.reasons.append(reason)
        if _STATUS_ORDER.get(status, 0) > _STATUS_ORDER[self.status]:
            self.status = status

    def merge(self, other: DomainCheck) -> DomainCheck:
        """Return a check holding both checks' outcomes (worst status wins)."""
        out = self.model_copy(deep=True)
        for name, status in other.checks.items():
            out.checks[name] = status
        out.reasons.extend(r for r in other.reasons if r not in out.reasons)
        if _STATUS_ORDER[other.status] > _STATUS_ORDER[out.status]:
            out.status = other.status
        if other.feature_distance is not None:
            out.feature_distance = other.feature_distance
            out.distance_threshold = other.distance_threshold
        return out


class Decision(BaseModel):
    """The binary decision at an operating point.

    Attributes:
        operating_point: the point's name (e.g. ``"youden"``).
        threshold: calibrated-probability threshold; positive when ``probability >=``.
        positive: the decision.
        label: the class name decided.
        expected_sensitivity: sensitivity at the threshold on the data it was chosen on.
        expected_specificity: specificity at the threshold.
        goal: what the point was chosen for, in words.
    """

    model_config = ConfigDict(extra="forbid")

    operating_point: str
    threshold: float
    positive: bool
    label: str
    expected_sensitivity: float | None = None
    expected_specificity: float | None = None
    goal: str | None = None


class Timings(BaseModel):
    """Wall-clock milliseconds of each step (``decode`` is 0 when a Scan was passed)."""

    model_config = ConfigDict(extra="forbid")

    decode: float = 0.0
    preprocess: float = 0.0
    forward: float = 0.0
    calibration: float = 0.0
    saliency: float = 0.0
    domain: float = 0.0
    total: float = 0.0


class ScanInfo(BaseModel):
    """Whitelisted, non-identifying facts about the scan predicted on."""

    model_config = ConfigDict(extra="forbid")

    modality: str
    source_format: str
    shape: list[int]
    spacing_mm: list[float]
    body_part: str | None = None
    view_position: str | None = None
    laterality: str | None = None

    @classmethod
    def from_scan(cls, scan: Any) -> ScanInfo:
        """Build from a :class:`medtl.io.Scan` (reads only whitelisted ``meta`` keys)."""
        meta = scan.meta or {}

        def text(key: str) -> str | None:
            value = meta.get(key)
            return str(value) if value not in (None, "") else None

        return cls(
            modality=str(scan.modality),
            source_format=str(scan.source_format),
            shape=[int(s) for s in scan.shape],
            spacing_mm=[round(float(s), 6) for s in scan.spacing],
            body_part=text("body_part"),
            view_position=text("view_position"),
            laterality=text("laterality"),
        )


class Region(BaseModel):
    """One sliding window of a volume.

    Attributes:
        start: first voxel index per axis (scan grid, array axis order).
        stop: end index per axis (exclusive).
        probabilities: calibrated class probabilities of the window.
        probability: positive-class (binary) or top-class probability of the window.
        top_class: the window's top class name.
    """

    model_config = ConfigDict(extra="forbid")

    start: list[int]
    stop: list[int]
    probabilities: dict[str, float]
    probability: float
    top_class: str


class HeatmapInfo(BaseModel):
    """What the heat map shows (the array itself is not in JSON)."""

    model_config = ConfigDict(extra="forbid")

    method: str = "gradcam"
    target_class: str | None = None
    shape: list[int] = Field(default_factory=list)
    peak_index: list[int] | None = None


class PredictionResult(BaseModel):
    """A prediction: calibrated probabilities, decision, saliency, domain check, timings.

    Attributes:
        schema_version: result format version.
        package: ``name@version`` of the model package.
        task: the package's target task.
        labels: class names, in output order.
        kind: ``"binary"`` (one logit) or ``"multiclass"``.
        probability: calibrated positive-class probability (binary) or the top class's
            probability (multi-class); ``None`` when refused.
        probabilities: calibrated probability per class name.
        top_class: name of the most probable class.
        top_class_index: its index.
        decision: binary decision at the chosen operating point (``None`` for multi-class
            packages, packages without operating points, or when refused).
        calibrated: whether the package's calibrator was applied.
        logits: raw logits (whole image, or mean over windows for volumes).
        domain: the domain guard's verdict.
        heatmap_info: what :attr:`heatmap` shows.
        regions: volumes: the top windows, most suspicious first.
        n_windows: volumes: number of sliding windows evaluated.
        scan: whitelisted facts about the scan.
        warnings: loader and predictor warnings.
        timings_ms: per-step wall-clock times.
        heatmap: Grad-CAM in [0, 1] on the scan grid (not serialised).
        region_map: volumes: per-voxel aggregate of window probabilities on a coarse grid
            (not serialised).
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    schema_version: int = RESULT_SCHEMA_VERSION
    package: str
    task: str | None = None
    labels: list[str]
    kind: Literal["binary", "multiclass"]
    probability: float | None = None
    probabilities: dict[str, float] | None = None
    top_class: str | None = None
    top_class_index: int | None = None
    decision: Decision | None = None
    calibrated: bool = False
    logits: list[float] | None = None
    domain: DomainCheck = Field(default_factory=DomainCheck)
    heatmap_info: HeatmapInfo | None = None
    regions: list[Region] | None = None
    n_windows: int | None = None
    scan: ScanInfo
    warnings: list[str] = Field(default_factory=list)
    timings_ms: Timings = Field(default_factory=Timings)
    heatmap: np.ndarray | None = Field(default=None, exclude=True, repr=False)
    region_map: np.ndarray | None = Field(default=None, exclude=True, repr=False)

    @property
    def refused(self) -> bool:
        """True when the domain guard refused the scan (no probability is given)."""
        return self.domain.status == "refuse"

    def to_json(self, indent: int | None = 2) -> str:
        """JSON text of the result (arrays excluded)."""
        return self.model_dump_json(indent=indent)

    def summary_line(self) -> str:
        """One human-readable line (what ``medtl predict`` prints without ``--json``)."""
        if self.refused:
            return f"REFUSED: {' '.join(self.domain.reasons)}"
        parts = []
        if self.kind == "binary" and self.probability is not None:
            parts.append(f"probability {self.probability:.3f}")
        elif self.top_class is not None and self.probability is not None:
            parts.append(f"{self.top_class} ({self.probability:.3f})")
        if self.decision is not None:
            parts.append(
                f"{self.decision.label} at '{self.decision.operating_point}' "
                f"(threshold {self.decision.threshold:.3f})"
            )
        if self.domain.status == "warn":
            parts.append("CAUTION: " + " ".join(self.domain.reasons))
        return "; ".join(parts)


# ---------------------------------------------------------------- volumes: window summaries


def _window_scores(probs: np.ndarray, binary: bool) -> np.ndarray:
    """Positive-class (binary) or top-class (multi-class) probability of each window."""
    return probs[:, 1] if binary else probs.max(axis=1)


def top_regions(
    windows: list[dict[str, Any]],
    probs: np.ndarray,
    labels: list[str],
    grid: Sequence[int],
    scan_shape: Sequence[int],
    binary: bool,
    k: int = 5,
) -> list[Region]:
    """The ``k`` most suspicious windows, as :class:`Region` on the scan grid.

    Args:
        windows: dicts with ``start`` / ``stop`` (voxel indices on ``grid``).
        probs: ``(n_windows, n_classes)`` calibrated probabilities.
        labels: class names.
        grid: shape of the grid the windows ran on (the scan's, or a resampled one).
        scan_shape: the scan's shape.
        binary: one-logit package (score: positive class; else the top class).
        k: how many regions.

    Returns:
        Regions, highest score first.
    """
    score = _window_scores(probs, binary)
    order = np.argsort(-score, kind="stable")[:k]
    scale = [s / g for s, g in zip(scan_shape, grid, strict=True)]
    regions = []
    for i in order:
        w = windows[int(i)]
        regions.append(
            Region(
                start=[int(np.floor(a * f)) for a, f in zip(w["start"], scale, strict=True)],
                stop=[int(np.ceil(b * f)) for b, f in zip(w["stop"], scale, strict=True)],
                probabilities={n: float(p) for n, p in zip(labels, probs[i], strict=True)},
                probability=float(score[i]),
                top_class=labels[int(np.argmax(probs[i]))],
            )
        )
    return regions


def region_map(
    windows: list[dict[str, Any]],
    probs: np.ndarray,
    grid: Sequence[int],
    roi: Sequence[int],
    binary: bool,
) -> np.ndarray:
    """Coarse map (cells of a quarter window) of the mean score of the windows covering it.

    Args:
        windows: dicts with ``start`` / ``stop`` on ``grid``.
        probs: ``(n_windows, n_classes)`` calibrated probabilities.
        grid: shape of the grid the windows ran on.
        roi: window size.
        binary: one-logit package (score: positive class; else the top class).

    Returns:
        float32 map; 0 where no window reached.
    """
    score = _window_scores(probs, binary)
    cell = [max(1, r // 4) for r in roi]
    shape = [max(1, -(-g // c)) for g, c in zip(grid, cell, strict=True)]
    total = np.zeros(shape, dtype=np.float64)
    count = np.zeros(shape, dtype=np.float64)
    for w, s in zip(windows, score, strict=True):
        idx = tuple(
            slice(a // c, max(a // c + 1, -(-b // c)))
            for a, b, c in zip(w["start"], w["stop"], cell, strict=True)
        )
        total[idx] += s
        count[idx] += 1
    return np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)
