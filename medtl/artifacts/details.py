"""``PredictionDetails``: what the review store keeps with an AI prediction (no PHI)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from medtl.artifacts.base import Artifact

__all__ = ["PredictionDetails"]


class PredictionDetails(Artifact):
    """Details of a stored prediction (the review store's ``details`` JSON column).

    Attributes:
        domain: the domain guard's verdict (``ok``, ``warn``, ``refuse``, ``not checked``).
        domain_reasons: why the guard warned or refused.
        calibrated: whether the probability is calibrated.
        operating_point: name of the operating point the decision used.
        expected_sensitivity: sensitivity of that point on the calibration split.
        expected_specificity: its specificity.
        positive: the decision (``None`` without an operating point).
        heat_peak: voxel index of the saliency peak.
        labels: class names of the model.
        source: where the scan came from (``"pacs"``; ``None``: an upload).
        model_ref: the package reference the analysis used (name, name@version or folder),
            to run the same model again (e.g. for the heat map of a PACS push).
    """

    SCHEMA_VERSION: ClassVar[int] = 1

    schema_version: int = 1
    domain: str | None = None
    domain_reasons: list[str] = Field(default_factory=list)
    calibrated: bool | None = None
    operating_point: str | None = None
    expected_sensitivity: float | None = None
    expected_specificity: float | None = None
    positive: bool | None = None
    heat_peak: list[int] | None = None
    labels: list[str] = Field(default_factory=list)
    source: str | None = None
    model_ref: str | None = None

    @classmethod
    def from_stored(cls, data: dict[str, Any] | None) -> PredictionDetails:
        """Read a stored ``details`` value (``None``: nothing recorded)."""
        return cls.parse(data or {}, "stored prediction details")
