"""``summary.json``: what a fine-tuning run hands to evaluation, reports and packages."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from medtl.artifacts.backbone import BackboneConfig
from medtl.artifacts.base import Artifact

__all__ = ["PhaseSummary", "RunSummary"]


class PhaseSummary(BaseModel):
    """One training phase of a strategy (e.g. head, then fine-tune)."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="null")

    run_dir: str | None = None
    epochs: int
    best_epoch: int | None = None
    best_metric: float | None = None
    monitor: str | None = None
    stopped_early: bool = False


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

    schema_version: int = 1
    name: str
    strategy: str
    num_outputs: int = Field(gt=0)
    label_names: list[str] = Field(default_factory=list)
    label_fraction: float = 1.0
    train_images: int
    train_patients: int
    data_seconds: float
    train_seconds: float
    total_seconds: float
    best_val_metric: float | None = None
    phases: list[PhaseSummary] = Field(default_factory=list)
    trainable_parameters: int | None = None
    total_parameters: int | None = None
    model_config_: BackboneConfig | None = Field(None, alias="model_config")
    weights_load_report: dict[str, Any] = Field(default_factory=dict)
    config_hash: str | None = None
    data_hash: str | None = None

    model_config = Artifact.model_config | {"populate_by_name": True, "serialize_by_alias": True}

    @property
    def backbone(self) -> BackboneConfig | None:
        """The backbone config (``model_config`` in the file)."""
        return self.model_config_
