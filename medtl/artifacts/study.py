"""``arms.json``: the summary of a multi-arm study (:func:`medtl.transfer.arms.run_study`).

Every arm's learning-curve points, the sample-efficiency table against the baseline arm,
and one seed-and-patient verdict per arm (each verdict is also its own ``verdict.json``).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from medtl.artifacts.base import Artifact
from medtl.artifacts.curves import Comparison, CurvePoint, SampleEfficiencyFile

__all__ = ["StudyArms"]


class StudyArms(Artifact):
    """``arms.json`` of a study folder.

    Attributes:
        points: one learning-curve point per (arm, fraction, seed), arm names as strategies.
        sample_efficiency: every arm against the baseline arm.
        verdicts: arm -> its verdict against the baseline (the baseline has none).
        config_hash: short hash of the study config (``None`` in files written before it
            was recorded).
        data_hash: short hash of the dataset manifest (likewise).
    """

    SCHEMA_VERSION: ClassVar[int] = 1
    FILE: ClassVar[str] = "arms.json"

    schema_version: int = 1
    points: list[CurvePoint] = Field(min_length=1)
    sample_efficiency: SampleEfficiencyFile
    verdicts: dict[str, Comparison]
    config_hash: str | None = None
    data_hash: str | None = None
