"""Backbone configuration that travels with the weights (in summaries and model cards).

A :class:`BackboneConfig` holds everything needed to rebuild a network before its
weights are loaded: architecture name and geometry, input size, the preprocessing it was
trained with, labels, the source domain/task it was trained on, and head settings.

Example:
    >>> cfg = BackboneConfig(name="resnet18", spatial_dims=3, in_channels=1, num_outputs=2)
    >>> BackboneConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from medtl.artifacts.base import DOCUMENT, DocumentModel
from medtl.artifacts.preprocessing import PreprocessingSpec

__all__ = ["BackboneConfig", "HeadConfig"]


class HeadConfig(DocumentModel):
    """Classification head: global pooling, dropout, optional hidden layer, linear.

    Attributes:
        pool: global pooling over the spatial axes: ``"avg"``, or ``"avgmax"`` (average and
            max concatenated: better for small lesions).
        dropout: dropout probability before each linear layer.
        hidden_dim: width of an optional hidden linear layer (with ReLU); ``None`` for none.
    """

    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = ("pool", "dropout", "hidden_dim")

    pool: Literal["avg", "avgmax"] = "avg"
    dropout: float = Field(0.3, ge=0.0, lt=1.0)
    hidden_dim: int | None = Field(None, gt=0)


def empty_as_none(value: Any) -> Any:
    """Files of earlier releases wrote "no preprocessing recorded" as ``{}``."""
    return None if isinstance(value, dict) and not value else value


def empty_as_none_in_code(value: Any, info: ValidationInfo) -> Any:
    """``{}`` as ``None`` for code building a config; a current document must say ``null``
    (files of earlier releases are upgraded before validation)."""
    if info.context and info.context.get(DOCUMENT):
        return value
    return empty_as_none(value)


class BackboneConfig(DocumentModel):
    """Everything needed to rebuild a backbone (see :func:`medtl.models.build_backbone`).

    Attributes:
        name: registered backbone name (see :func:`medtl.models.list_backbones`).
        spatial_dims: 2 for images, 3 for volumes.
        in_channels: input channels (1 for CT/MRI/CXR).
        num_outputs: logits produced by the head.
        input_size: spatial input size the model was trained at (informative; the
            networks accept other sizes), e.g. ``[224, 224]`` or ``[64, 64, 64]``.
        preprocessing: the :class:`~medtl.artifacts.PreprocessingSpec` the weights were
            trained with, e.g. ``{"modality": "ct", "spatial_dims": 3, "spatial_size":
            [64, 64, 64], "intensity": {"kind": "window", "lower": -1000, "upper": 400}}``;
            ``None`` when unknown (e.g. imported third-party weights).
        labels: class names, one per output (empty when unknown).
        source_domain: domain the weights were learned on (e.g. ``"MRI brain T1"``).
        source_task: task the weights were learned on (e.g. ``"ImageNet classification"``).
        head: head settings.
        options: architecture options passed to the family builder (e.g. for ResNets
            ``shortcut_type``, ``conv1_t_size``, ``conv1_t_stride``, ``no_max_pool``,
            ``bias_downsample``, ``medicalnet``; for ``smallcnn`` ``widths``).
    """

    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = (
        "in_channels",
        "num_outputs",
        "input_size",
        "preprocessing",
        "labels",
        "source_domain",
        "source_task",
        "head",
        "options",
    )

    name: str = Field(min_length=1)
    spatial_dims: Literal[2, 3]
    in_channels: int = Field(1, gt=0)
    num_outputs: int = Field(1, gt=0)
    input_size: list[Annotated[int, Field(gt=0)]] | None = Field(None, min_length=2, max_length=3)
    preprocessing: PreprocessingSpec | None = None
    labels: list[str] = Field(default_factory=list)
    source_domain: str | None = None
    source_task: str | None = None
    head: HeadConfig = Field(default_factory=HeadConfig)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("preprocessing", mode="before")
    @classmethod
    def _empty_preprocessing(cls, value: Any, info: ValidationInfo) -> Any:
        return empty_as_none_in_code(value, info)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (round-trips through :meth:`from_dict`)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackboneConfig:
        """Build a config from :meth:`to_dict` output.

        Args:
            data: the dict.

        Returns:
            The validated config (raises ``pydantic.ValidationError`` on bad input).
        """
        return cls.model_validate(data)
