"""``model.json``: the model card of a model package."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from medtl.artifacts.backbone import BackboneConfig, empty_as_none, empty_as_none_in_code
from medtl.artifacts.base import Artifact, DocumentModel
from medtl.artifacts.calibration import CalibrationParams
from medtl.artifacts.preprocessing import PreprocessingSpec
from medtl.artifacts.run import (
    BuiltFrom,
    RunEnvironment,
    SourceOrigin,
    StartingWeights,
)

__all__ = ["CARD_SCHEMA_VERSION", "CardOperatingPoint", "ModelCard", "software_versions"]

#: Version 1: ``preprocessing`` was a free dict (``{}`` when unknown); 2: a PreprocessingSpec
#: or ``null``.
CARD_SCHEMA_VERSION = 2
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
_SHA256 = r"^[0-9a-f]{64}$"


def software_versions() -> dict[str, str]:
    """Return the medtl, torch and monai versions in use."""
    import monai
    import torch

    try:
        medtl_version = importlib_metadata.version("medtl")
    except importlib_metadata.PackageNotFoundError:
        from medtl import __version__ as medtl_version
    return {"medtl": medtl_version, "torch": torch.__version__, "monai": monai.__version__}


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


class CardOperatingPoint(DocumentModel):
    """An operating point stored in the card.

    Accepts :meth:`medtl.evaluation.OperatingPoint.to_dict` output directly
    (sensitivity and specificity are then taken from its ``metrics``).

    Attributes:
        name: e.g. ``"youden"`` or ``"sensitivity_0.90"``.
        threshold: probability threshold in [0, 1] (``None`` when the goal was not
            reachable).
        sensitivity: sensitivity at the threshold on the data it was chosen on.
        specificity: specificity at the threshold.
        goal: human-readable goal.
        status: ``"reached"`` or ``"not reachable"``.
        metrics: further counts and rates at the threshold.
    """

    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = (
        "sensitivity",
        "specificity",
        "goal",
        "status",
        "metrics",
    )

    name: str = Field(min_length=1)
    threshold: float | None = Field(ge=0.0, le=1.0)
    sensitivity: float | None = Field(None, ge=0.0, le=1.0)
    specificity: float | None = Field(None, ge=0.0, le=1.0)
    goal: str | None = None
    status: Literal["reached", "not reachable"] | None = None
    metrics: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_evaluation(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("metrics"), dict):
            data = dict(data)
            for key in ("sensitivity", "specificity"):
                if data.get(key) is None:
                    data[key] = data["metrics"].get(key)
        if isinstance(data, dict):
            data = dict(data)
            for key in ("threshold", "sensitivity", "specificity"):
                if key in data:
                    data[key] = _finite_or_none(data[key])
        return data


class ModelCard(Artifact):
    """The model card stored as ``model.json`` in a package.

    Attributes:
        schema_version: card format version.
        name: package name (letters, digits, ``.``, ``_``, ``-``).
        version: package version (same characters, e.g. ``1.0.0``).
        created: creation time (UTC).
        architecture: the backbone config; :func:`save_package` fills it from the model.
        preprocessing: the preprocessing used in training (``None``: not recorded).
        labels: class names.
        calibration: a calibrator's ``to_dict()`` (``None``: uncalibrated), checked by
            :data:`~medtl.artifacts.calibration.CalibrationParams`.
        operating_points: named thresholds with sensitivity and specificity.
        source_domain: domain of the pretrained weights (e.g. ``"MRI brain"``).
        source_task: task of the pretrained weights.
        target_domain: domain fine-tuned on (e.g. ``"CT chest"``).
        target_task: task fine-tuned on (e.g. ``"nodule yes/no"``).
        strategy: transfer strategy (``feature_extraction``, ``frozen``, ``staged``,
            ``full``, ``scratch``).
        data_hash: hash of the training manifest.
        config_hash: hash of the resolved training config.
        metrics: evaluation metrics.
        intended_use: what the model is for, and for whom.
        limitations: known limitations.
        training: training details (epochs, optimiser, seed, hardware, ...).
        versions: medtl/torch/monai versions that produced the package.
        weights_sha256: SHA-256 of ``weights.safetensors`` (set by :func:`save_package`).
        source_stated_by: who stated ``source_domain`` / ``source_task``: ``weights card``
            (the starting weights' own card), ``experiment config`` (the config's free text:
            the weights carry no card that states it), ``not stated`` or ``no starting
            weights`` (trained from scratch).
        starting_weights: the weights training started from (file, package, SHA-256,
            detected layout, load report).
        environment: versions, git commit, device, precision, threads and CPU capability of
            the training run.
        config_warnings: settings of the training config that could not apply, and why.
        built_from: the run's hashes the package was built from (config, data, starting and
            trained weights, predictions).

    Every card medtl wrote holds every field up to ``weights_sha256`` (the card has had them
    since its first release): a file must state each one; code building a card may leave the
    defaults. The provenance fields after it came later and are optional in a file.
    """

    SCHEMA_VERSION: ClassVar[int] = CARD_SCHEMA_VERSION
    FILE: ClassVar[str] = "model.json"
    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = (
        "version",
        "created",
        "architecture",
        "preprocessing",
        "labels",
        "calibration",
        "operating_points",
        "source_domain",
        "source_task",
        "target_domain",
        "target_task",
        "strategy",
        "data_hash",
        "config_hash",
        "metrics",
        "intended_use",
        "limitations",
        "training",
        "versions",
        "weights_sha256",
    )

    schema_version: int = CARD_SCHEMA_VERSION
    name: str = Field(pattern=_NAME)
    version: str = Field("0.1.0", pattern=_NAME)
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    architecture: BackboneConfig | None = None
    preprocessing: PreprocessingSpec | None = None
    labels: list[str] = Field(default_factory=list)
    calibration: CalibrationParams | None = None
    operating_points: list[CardOperatingPoint] = Field(default_factory=list)
    source_domain: str | None = None
    source_task: str | None = None
    target_domain: str | None = None
    target_task: str | None = None
    strategy: str | None = None
    data_hash: str | None = None
    config_hash: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    intended_use: str = ""
    limitations: list[str] = Field(default_factory=list)
    training: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=software_versions)
    weights_sha256: str | None = Field(None, pattern=_SHA256)
    source_stated_by: SourceOrigin | None = None
    starting_weights: StartingWeights | None = None
    environment: RunEnvironment | None = None
    config_warnings: list[str] = Field(default_factory=list)
    built_from: BuiltFrom | None = None

    @classmethod
    def upgrade(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        # Versions 0-1 wrote an unknown preprocessing as {}; it is None now.
        data["preprocessing"] = empty_as_none(data.get("preprocessing"))
        arch = data.get("architecture")
        if isinstance(arch, dict):
            data["architecture"] = {
                **arch,
                "preprocessing": empty_as_none(arch.get("preprocessing")),
            }
        return data

    @field_validator("preprocessing", mode="before")
    @classmethod
    def _empty_preprocessing(cls, value: Any, info: ValidationInfo) -> Any:
        return empty_as_none_in_code(value, info)

    @field_validator("schema_version")
    @classmethod
    def _known_schema(cls, value: int) -> int:
        if value > CARD_SCHEMA_VERSION:
            raise ValueError(
                f"model card schema {value} is newer than this medtl ({CARD_SCHEMA_VERSION}); "
                "upgrade medtl"
            )
        return value

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"
