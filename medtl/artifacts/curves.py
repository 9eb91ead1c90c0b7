"""Learning-curve outputs: ``learning_curves.json`` (one point per run),
``sample_efficiency.json`` (the summary table) and ``verdict.json`` (transfer vs scratch)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from medtl.artifacts.base import Artifact

__all__ = [
    "Comparison",
    "CurveBand",
    "CurvePoint",
    "LearningCurves",
    "SampleEfficiencyFile",
    "SampleEfficiencyRow",
]


class CurvePoint(BaseModel):
    """One learning-curve run (the fields of
    :class:`medtl.evaluation.transfer_analysis.LearningCurvePoint`)."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="null")

    strategy: str
    fraction: float = Field(gt=0.0, le=1.0)
    seed: int = 0
    auroc: float | None
    auprc: float | None = None
    n_train: int | None = None
    extra: dict[str, float | None] = Field(default_factory=dict)


class LearningCurves(Artifact):
    """``learning_curves.json`` (written by :func:`medtl.transfer.run_learning_curves`).

    Version 0 (earlier releases) was a bare JSON list of points; it is read as ``points``.
    """

    SCHEMA_VERSION: ClassVar[int] = 1
    FILE: ClassVar[str] = "learning_curves.json"

    schema_version: int = 1
    points: list[CurvePoint] = Field(default_factory=list)

    @classmethod
    def upgrade(cls, data: Any, version: int) -> dict[str, Any]:
        if isinstance(data, list):
            return {"points": data}
        return data


class SampleEfficiencyRow(BaseModel):
    """Per (strategy, fraction): mean and t-interval over seeds, against scratch."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="null")

    strategy: str
    fraction: float
    n_seeds: int
    transfer_mean: float | None = None
    transfer_ci_low: float | None = None
    transfer_ci_high: float | None = None
    scratch_n_seeds: int | None = None
    scratch_mean: float | None = None
    scratch_ci_low: float | None = None
    scratch_ci_high: float | None = None
    delta: float | None = None
    relative_to_full_scratch: float | None = None


class CurveBand(BaseModel):
    """One point of a summarised curve."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="null")

    fraction: float
    mean: float | None = None
    lower: float | None = None
    upper: float | None = None


class SampleEfficiencyFile(Artifact):
    """``sample_efficiency.json``: :meth:`SampleEfficiency.to_dict` of the learning curves."""

    SCHEMA_VERSION: ClassVar[int] = 1
    FILE: ClassVar[str] = "sample_efficiency.json"

    schema_version: int = 1
    metric: str
    rows: list[SampleEfficiencyRow] = Field(default_factory=list)
    curves: dict[str, list[CurveBand]] = Field(default_factory=dict)
    sentences: list[str] = Field(default_factory=list)


class Comparison(Artifact):
    """``verdict.json``: transfer against scratch on the same test images
    (:func:`medtl.evaluation.compare.compare_runs`).

    ``delong_p_value`` is ``None`` for multi-class runs (decided by the bootstrap alone).
    """

    SCHEMA_VERSION: ClassVar[int] = 1
    FILE: ClassVar[str] = "verdict.json"

    schema_version: int = 1
    auroc_transfer: float | None
    auroc_scratch: float | None
    delta_auroc: float | None
    delong_p_value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float = 0.95
    alpha: float = 0.05
    verdict: str
    decided_by: str
    n_images: int
    n_patients: int
    sentence: str = ""

    @property
    def is_negative(self) -> bool:
        """Transfer significantly worse than scratch."""
        return self.verdict == "negative transfer"
