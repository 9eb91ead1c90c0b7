"""Learning-curve outputs: ``learning_curves.json`` (one point per run),
``sample_efficiency.json`` (the summary table) and ``verdict.json`` (transfer vs scratch)."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import Field

from medtl.artifacts.base import Artifact, DocumentModel
from medtl.artifacts.types import Count, OptionalProbability, OptionalSpread

__all__ = [
    "Comparison",
    "CurveBand",
    "CurvePoint",
    "CurveSummary",
    "LearningCurves",
    "SampleEfficiencyFile",
    "SampleEfficiencyRow",
    "summarise_points",
]

_Fraction = Annotated[float, Field(gt=0.0, le=1.0, description="Fraction of training labels.")]
#: what a transfer comparison concluded (:mod:`medtl.evaluation.transfer_analysis`).
Verdict = Literal[
    "positive transfer", "no significant difference", "negative transfer", "not assessable"
]


class CurvePoint(DocumentModel):
    """One learning-curve run (the fields of
    :class:`medtl.evaluation.transfer_analysis.LearningCurvePoint`); AUROC and AUPRC in
    [0, 1] (``None``: undefined)."""

    strategy: str = Field(min_length=1)
    fraction: _Fraction
    seed: int = Field(0, ge=0)
    auroc: OptionalProbability
    auprc: OptionalProbability = None
    n_train: Count | None = None
    extra: dict[str, float | None] = Field(default_factory=dict)


class CurveSummary(DocumentModel):
    """One (strategy, fraction) cell over its training seeds: mean and spread of the test
    metric (``sd`` is the sample standard deviation, ``None`` with one seed)."""

    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = (
        "metric",
        "seeds",
        "mean",
        "sd",
        "min",
        "max",
    )

    strategy: str = Field(min_length=1)
    fraction: _Fraction
    metric: str = Field("auroc", min_length=1)
    n_seeds: int = Field(ge=1)
    seeds: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list)
    mean: float | None = None
    sd: OptionalSpread = None
    min: float | None = None
    max: float | None = None


def _finite(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def summarise_points(points: Iterable[CurvePoint], metric: str = "auroc") -> list[CurveSummary]:
    """Mean, SD and min-max over seeds per (strategy, fraction), sorted by both.

    Args:
        points: learning-curve points (one per run).
        metric: ``auroc``, ``auprc`` or a key of ``extra``.

    Returns:
        One :class:`CurveSummary` per (strategy, fraction); undefined values are skipped.
    """
    cells: dict[tuple[str, float], list[CurvePoint]] = defaultdict(list)
    for p in points:
        cells[(p.strategy, float(p.fraction))].append(p)
    out = []
    for (strategy, fraction), members in sorted(cells.items()):
        raw = [
            getattr(p, metric) if metric in ("auroc", "auprc") else p.extra.get(metric)
            for p in members
        ]
        vals = _finite(raw)
        out.append(
            CurveSummary(
                strategy=strategy,
                fraction=fraction,
                metric=metric,
                n_seeds=len(members),
                seeds=sorted(p.seed for p in members),
                mean=statistics.fmean(vals) if vals else None,
                sd=statistics.stdev(vals) if len(vals) > 1 else None,
                min=min(vals) if vals else None,
                max=max(vals) if vals else None,
            )
        )
    return out


class LearningCurves(Artifact):
    """``learning_curves.json`` (written by :func:`medtl.transfer.run_learning_curves`).

    ``points`` holds one entry per run (strategy, fraction, training seed); ``summary`` the
    mean and spread over seeds per (strategy, fraction), for tables and the demo summary.

    ``config_hash``, ``data_hash`` and ``weights_sha256`` identify what the curves were
    computed from (the base experiment config, its manifest and the transfer arm's starting
    weights); files written before they were recorded lack them (``None``).

    Version 0 (earlier releases) was a bare JSON list of points; it is read as ``points``.
    Version 1 had no ``summary``: it is computed from the points on reading.
    """

    SCHEMA_VERSION: ClassVar[int] = 2
    FILE: ClassVar[str] = "learning_curves.json"
    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = ("summary",)

    schema_version: int = 2
    points: list[CurvePoint] = Field(min_length=1)
    summary: list[CurveSummary] = Field(default_factory=list)
    config_hash: str | None = None
    data_hash: str | None = None
    weights_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")

    @classmethod
    def upgrade(cls, data: Any, version: int) -> dict[str, Any]:
        if isinstance(data, list):
            data = {"points": data}
        if isinstance(data, dict) and "summary" not in data:
            try:
                points = [CurvePoint.model_validate(p) for p in data.get("points") or []]
            except ValueError:
                return {**data, "summary": []}  # validation below names the bad point
            data = {**data, "summary": [s.model_dump() for s in summarise_points(points)]}
        return data

    @classmethod
    def from_points(cls, points: Iterable[CurvePoint], **identity: str | None) -> Self:
        """The artifact of these points, with their per-cell summary.

        Args:
            points: the points.
            **identity: ``config_hash``, ``data_hash``, ``weights_sha256`` (optional).
        """
        pts = list(points)
        return cls(points=pts, summary=summarise_points(pts), **identity)

    def cell(self, strategy: str, fraction: float) -> CurveSummary | None:
        """The summary of one (strategy, fraction) cell (``None`` when absent)."""
        return next(
            (
                s
                for s in self.summary
                if s.strategy == strategy and math.isclose(s.fraction, fraction)
            ),
            None,
        )


class SampleEfficiencyRow(DocumentModel):
    """Per (strategy, fraction): mean, t-interval and spread (SD, min-max) over seeds,
    against scratch (the spread came in version 2 and may be absent)."""

    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = (
        "transfer_mean",
        "transfer_ci_low",
        "transfer_ci_high",
        "scratch_mean",
        "scratch_ci_low",
        "scratch_ci_high",
        "delta",
        "relative_to_full_scratch",
    )

    strategy: str = Field(min_length=1)
    fraction: _Fraction
    n_seeds: int = Field(ge=1)
    transfer_mean: float | None = None
    transfer_ci_low: float | None = None
    transfer_ci_high: float | None = None
    scratch_n_seeds: Count | None = None
    scratch_mean: float | None = None
    scratch_ci_low: float | None = None
    scratch_ci_high: float | None = None
    delta: float | None = None
    relative_to_full_scratch: float | None = None
    transfer_sd: OptionalSpread = None
    transfer_min: float | None = None
    transfer_max: float | None = None
    scratch_sd: OptionalSpread = None
    scratch_min: float | None = None
    scratch_max: float | None = None


class CurveBand(DocumentModel):
    """One point of a summarised curve."""

    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = ("mean", "lower", "upper")

    fraction: _Fraction
    mean: float | None = None
    lower: float | None = None
    upper: float | None = None


class SampleEfficiencyFile(Artifact):
    """``sample_efficiency.json``: :meth:`SampleEfficiency.to_dict` of the learning curves.

    Version 2 added the spread over seeds to the rows (absent, hence ``None``, in version 1).
    """

    SCHEMA_VERSION: ClassVar[int] = 2
    FILE: ClassVar[str] = "sample_efficiency.json"
    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = ("rows", "curves", "sentences")

    schema_version: int = 2
    metric: str = Field(min_length=1)
    rows: list[SampleEfficiencyRow] = Field(default_factory=list)
    curves: dict[str, list[CurveBand]] = Field(default_factory=dict)
    sentences: list[str] = Field(default_factory=list)


class Comparison(Artifact):
    """``verdict.json``: transfer against scratch on the same test images
    (:func:`medtl.evaluation.compare.compare_runs`).

    ``delong_p_value`` is ``None`` for multi-class runs and for several training seeds per
    arm (decided by the bootstrap alone). With several seeds per arm, ``auroc_transfer`` and
    ``auroc_scratch`` are means over the seeds, ``per_seed_*`` the seeds' own values,
    ``sd_*`` their sample standard deviations, and ``method`` says how the verdict was
    decided (the report's methods text).

    Version 1 (one training seed per arm) is read with ``n_seeds_* = 1``.
    """

    SCHEMA_VERSION: ClassVar[int] = 2
    FILE: ClassVar[str] = "verdict.json"
    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = (
        "delong_p_value",
        "ci_low",
        "ci_high",
        "confidence",
        "alpha",
        "sentence",
    )

    schema_version: int = 2
    auroc_transfer: OptionalProbability
    auroc_scratch: OptionalProbability
    delta_auroc: float | None
    delong_p_value: OptionalProbability = None
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    verdict: Verdict
    decided_by: str = Field(min_length=1)
    n_images: Count
    n_patients: Count
    sentence: str = ""
    n_seeds_transfer: int = Field(1, ge=1)
    n_seeds_scratch: int = Field(1, ge=1)
    seeds_transfer: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list)
    seeds_scratch: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list)
    per_seed_transfer: list[OptionalProbability] = Field(default_factory=list)
    per_seed_scratch: list[OptionalProbability] = Field(default_factory=list)
    sd_transfer: OptionalSpread = None
    sd_scratch: OptionalSpread = None
    method: str = ""

    @property
    def is_negative(self) -> bool:
        """Transfer significantly worse than scratch."""
        return self.verdict == "negative transfer"
