"""``summary.json``: what a fine-tuning run hands to evaluation, reports and packages."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from medtl.artifacts.backbone import BackboneConfig, empty_as_none
from medtl.artifacts.base import Artifact, DocumentModel
from medtl.artifacts.types import Count, Flag

__all__ = ["PhaseSummary", "RunSummary"]


class PhaseSummary(DocumentModel):
    """One training phase of a strategy (e.g. head, then fine-tune)."""

    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = (
        "best_epoch",
        "best_metric",
        "monitor",
        "stopped_early",
    )

    run_dir: str | None = None
    epochs: Count
    best_epoch: Count | None = None
    best_metric: float | None = None
    monitor: str | None = None
    stopped_early: Flag = False


class RunSummary(Artifact):
    """``summary.json`` of a run folder (written by :func:`medtl.transfer.run_experiment`).

    Attributes:
        name: experiment name.
        strategy: transfer strategy run.
        num_outputs: logits of the head (1 = binary).
        label_names: class names.
        label_fraction: fraction of training patients kept.
        train_images: training images used.
        train_patients: training patients used.
        data_seconds: time spent building datasets.
        train_seconds: training time.
        total_seconds: wall time of the run.
        best_val_metric: best monitored validation metric (``None`` when never finite).
        phases: the strategy's phases.
        trainable_parameters: parameters trained in the last phase.
        total_parameters: all parameters.
        model_config: the backbone config (what rebuilds the network).
        weights_load_report: how the starting weights were imported (empty for scratch).
        config_hash: short hash of the resolved experiment config.
        data_hash: short hash of the dataset manifest.
    """

    SCHEMA_VERSION: ClassVar[int] = 1
    FILE: ClassVar[str] = "summary.json"
    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = (
        "label_names",
        "label_fraction",
        "best_val_metric",
        "phases",
        "trainable_parameters",
        "total_parameters",
        "model_config_",
        "weights_load_report",
        "config_hash",
        "data_hash",
    )

    schema_version: int = 1
    name: str = Field(min_length=1)
    strategy: str = Field(min_length=1)
    num_outputs: int = Field(gt=0)
    label_names: list[str] = Field(default_factory=list)
    label_fraction: float = Field(1.0, gt=0.0, le=1.0)
    train_images: Count
    train_patients: Count
    data_seconds: float = Field(ge=0.0)
    train_seconds: float = Field(ge=0.0)
    total_seconds: float = Field(ge=0.0)
    best_val_metric: float | None = None
    phases: list[PhaseSummary] = Field(default_factory=list)
    trainable_parameters: Count | None = None
    total_parameters: Count | None = None
    model_config_: BackboneConfig | None = Field(None, alias="model_config")
    weights_load_report: dict[str, Any] = Field(default_factory=dict)
    config_hash: str | None = None
    data_hash: str | None = None

    model_config = Artifact.model_config | {"populate_by_name": True, "serialize_by_alias": True}

    @classmethod
    def upgrade(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        # Version 0 could write an unknown backbone preprocessing as {}; it is None now.
        backbone = data.get("model_config")
        if isinstance(backbone, dict) and "preprocessing" in backbone:
            data["model_config"] = {
                **backbone,
                "preprocessing": empty_as_none(backbone["preprocessing"]),
            }
        return data

    @property
    def backbone(self) -> BackboneConfig | None:
        """The backbone config (``model_config`` in the file)."""
        return self.model_config_
