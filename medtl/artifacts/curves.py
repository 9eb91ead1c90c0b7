"""``learning_curves.json``: test metrics of each (strategy, label fraction, seed) run."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from medtl.artifacts.base import Artifact

__all__ = ["CurvePoint", "LearningCurves"]


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
