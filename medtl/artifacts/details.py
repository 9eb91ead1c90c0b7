"""``PredictionDetails``: what the review store keeps with an AI prediction (no PHI)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from medtl.artifacts.base import Artifact
from medtl.artifacts.types import Flag, OptionalProbability

__all__ = ["DomainVerdict", "PredictionDetails"]

#: The domain guard's verdict as stored (``not checked``: no guard ran or nothing recorded).
DomainVerdict = Literal["ok", "warn", "refuse", "not checked"]


class PredictionDetails(Artifact):
    """Details of a stored prediction (the review store's ``details`` JSON column).

    Attributes:
        domain: the domain guard's verdict (``ok``, ``warn``, ``refuse``, ``not checked``).
        domain_reasons: why the guard warned or refused.
        calibrated: whether the probability is calibrated (``None``: not recorded).
        operating_point: name of the operating point the decision used.
        expected_sensitivity: sensitivity of that point on the calibration split, in [0, 1].
        expected_specificity: its specificity, in [0, 1].
        positive: the decision (``None`` without an operating point).
        heat_peak: voxel index of the saliency peak.
        labels: class names of the model.
        source: where the scan came from (``"pacs"``; ``None``: an upload).
        model_ref: the package reference the analysis used (name, name@version or folder),
            to run the same model again (e.g. for the heat map of a PACS push).

    Every stored value carries the fields the upload page stored from the first release
    (domain to labels); ``source`` and ``model_ref`` came later and may be absent.
    ``PredictionDetails()`` (what :meth:`from_stored` gives for ``None``) means nothing was
    recorded.
    """

    SCHEMA_VERSION: ClassVar[int] = 1
    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = (
        "domain",
        "domain_reasons",
        "calibrated",
        "operating_point",
        "expected_sensitivity",
        "expected_specificity",
        "positive",
        "heat_peak",
        "labels",
    )

    schema_version: int = 1
    domain: DomainVerdict = "not checked"
    domain_reasons: list[str] = Field(default_factory=list)
    calibrated: Flag | None = None
    operating_point: str | None = None
    expected_sensitivity: OptionalProbability = None
    expected_specificity: OptionalProbability = None
    positive: Flag | None = None
    heat_peak: list[Annotated[int, Field(ge=0)]] | None = Field(None, min_length=2, max_length=3)
    labels: list[str] = Field(default_factory=list)
    source: Literal["pacs"] | None = None
    model_ref: str | None = None

    @classmethod
    def from_stored(cls, data: dict[str, Any] | None) -> PredictionDetails:
        """Read a stored ``details`` value (``None``: nothing recorded).

        Raises:
            ArtifactError: the stored value is not a complete, valid details document.
        """
        if data is None:
            return cls()
        return cls.parse(data, "stored prediction details")
