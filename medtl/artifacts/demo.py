"""The demo's ``summary.json`` (``MEDTL_HOME/demo/<size>/summary.json``): one row per
experiment, written by :func:`medtl.demo.summary.build_summary`.

Rows written before seeds were summarised have no ``arms``, CIs or calibration details; those
fields are optional in a file, the others every row carries.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from medtl.artifacts.base import Artifact, DocumentModel
from medtl.artifacts.curves import Verdict
from medtl.artifacts.evaluation import CalibrationMethod
from medtl.artifacts.stats import ConfidenceInterval
from medtl.artifacts.types import Count, OptionalProbability, OptionalSpread

__all__ = ["DemoArm", "DemoFewestLabels", "DemoRow", "DemoSummary"]

_Seconds = Annotated[float, Field(ge=0.0)]


class DemoArm(DocumentModel):
    """One arm's test AUROC over its training seeds (mean, SD, min-max)."""

    n_seeds: int = Field(ge=1)
    mean: OptionalProbability
    sd: OptionalSpread
    min: OptionalProbability
    max: OptionalProbability


class DemoFewestLabels(DocumentModel):
    """Both arms at the smallest label fraction."""

    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = ("transfer_auroc", "scratch_auroc")

    fraction: float = Field(gt=0.0, le=1.0)
    n_train: Count | None
    transfer_auroc: OptionalProbability = None
    scratch_auroc: OptionalProbability = None
    transfer: DemoArm | None = None
    scratch: DemoArm | None = None


class DemoArms(DocumentModel):
    """Transfer and scratch at the largest label fraction."""

    transfer: DemoArm | None
    scratch: DemoArm | None


class DemoCalibrationSplit(DocumentModel):
    """Size of the calibration split."""

    patients: Count
    images: Count


class DemoRow(DocumentModel):
    """One experiment of the demo (see :func:`medtl.demo.summary.summary_cells`)."""

    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = (
        "fewest_labels",
        "verdict",
        "ece_before",
        "ece_after",
        "seconds",
    )

    experiment: str = Field(min_length=1)
    strategy: str | None = None
    transfer_auroc: ConfidenceInterval
    scratch_auroc: ConfidenceInterval
    arms: DemoArms | None = None
    fewest_labels: DemoFewestLabels | None = None
    verdict: Verdict | None = None
    verdict_sentence: str | None = None
    verdict_ci: Annotated[list[float | None], Field(min_length=2, max_length=2)] | None = None
    verdict_delta: float | None = None
    verdict_decided_by: str | None = None
    ece_before: OptionalProbability = None
    ece_after: OptionalProbability = None
    ece_before_ci: ConfidenceInterval | None = None
    ece_after_ci: ConfidenceInterval | None = None
    ece_change_ci: ConfidenceInterval | None = None
    ece_finding: str | None = None
    calibration_method: CalibrationMethod | None = None
    calibration_warning: str | None = None
    calibration_split: DemoCalibrationSplit | None = None
    seconds: _Seconds | None = None


class DemoSummary(Artifact):
    """``summary.json`` of a finished demo.

    Attributes:
        size: the demo plan (``tiny``, ``demo`` or ``full``).
        rows: one row per experiment (and per ``ct_foundation`` arm).
        stage_seconds: stage -> its time (``None``: not recorded).
        total_seconds: the stages' times summed.
    """

    SCHEMA_VERSION: ClassVar[int] = 1
    FILE: ClassVar[str] = "summary.json"

    schema_version: int = 1
    size: Literal["tiny", "demo", "full"]
    rows: list[DemoRow] = Field(min_length=1)
    stage_seconds: dict[str, _Seconds | None]
    total_seconds: _Seconds
