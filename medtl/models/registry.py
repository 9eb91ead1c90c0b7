"""Explicit backbone registry: names -> builders.

Example:
    >>> model = create_backbone("resnet18", spatial_dims=3, in_channels=1, num_outputs=2)
    >>> "densenet121" in list_backbones()
    True
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medtl.models.config import BackboneConfig, HeadConfig

if TYPE_CHECKING:  # builders import torch/MONAI when called, so listing names stays cheap
    from medtl.models.backbones import Backbone

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: its builder and a one-line description."""

    name: str
    builder: Callable[[BackboneConfig], Backbone]
    description: str


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(
    name: str, builder: Callable[[BackboneConfig], Backbone], description: str = ""
) -> None:
    """Register a backbone builder under ``name``.

    Args:
        name: registry name (lower case).
        builder: callable taking a :class:`BackboneConfig` and returning a :class:`Backbone`.
        description: one line for listings.
    """
    if name in _REGISTRY:
        raise ValueError(f"backbone {name!r} is already registered")
    _REGISTRY[name] = BackboneSpec(name, builder, description)


def _resnet(depth: int) -> Callable[[BackboneConfig], Backbone]:
    def build(config: BackboneConfig) -> Backbone:
        from medtl.models.resnet import ResNetBackbone

        return ResNetBackbone(config, depth)

    return build


def _densenet121(config: BackboneConfig) -> Backbone:
    from medtl.models.densenet import DenseNetBackbone

    return DenseNetBackbone(config)


def _efficientnet_b0(config: BackboneConfig) -> Backbone:
    from medtl.models.efficientnet import EfficientNetBackbone

    return EfficientNetBackbone(config, "efficientnet-b0")


def _smallcnn(config: BackboneConfig) -> Backbone:
    from medtl.models.smallcnn import SmallCNNBackbone

    return SmallCNNBackbone(config)


def _i3resnet152(config: BackboneConfig) -> Backbone:
    from medtl.models.i3resnet import I3ResNetBackbone

    return I3ResNetBackbone(config)


for _depth in (10, 18, 34, 50):
    register_backbone(
        f"resnet{_depth}",
        _resnet(_depth),
        f"ResNet-{_depth} (MONAI); torchvision geometry, options.medicalnet for MedicalNet's",
    )
register_backbone("densenet121", _densenet121, "DenseNet-121 (MONAI)")
register_backbone("efficientnet-b0", _efficientnet_b0, "EfficientNet-B0 (MONAI EfficientNetBN)")
register_backbone("smallcnn", _smallcnn, "small conv-BN-ReLU CNN for CPU demos")
register_backbone(
    "i3resnet152",
    _i3resnet152,
    "inflated 3D ResNet-152 of Merlin/Astra (CT foundation encoder; `medtl models fetch`)",
)


def list_backbones() -> list[str]:
    """Return the registered backbone names, sorted."""
    return sorted(_REGISTRY)


def describe_backbones() -> dict[str, str]:
    """Return ``{name: description}`` for every registered backbone."""
    return {name: _REGISTRY[name].description for name in list_backbones()}


def build_backbone(config: BackboneConfig | dict[str, Any]) -> Backbone:
    """Build a randomly initialised backbone from its config.

    Args:
        config: a :class:`BackboneConfig` or its ``to_dict()``.

    Returns:
        The backbone (train mode, CPU, float32).
    """
    if isinstance(config, dict):
        config = BackboneConfig.from_dict(config)
    spec = _REGISTRY.get(config.name)
    if spec is None:
        available = ", ".join(list_backbones())
        raise KeyError(f"unknown backbone {config.name!r}; available: {available}")
    return spec.builder(config)


def create_backbone(
    name: str,
    spatial_dims: int,
    in_channels: int = 1,
    num_outputs: int = 1,
    weights: str | Path | None = None,
    *,
    weights_format: str = "auto",
    min_loaded: float = 0.9,
    inflate: bool = False,
    dropout: float = 0.3,
    hidden_dim: int | None = None,
    options: dict[str, Any] | None = None,
    pool: str = "avg",
    **config_fields: Any,
) -> Backbone:
    """Create a backbone by name, optionally importing local weights.

    Args:
        name: a name from :func:`list_backbones`.
        spatial_dims: 2 or 3.
        in_channels: input channels.
        num_outputs: logits of the head.
        weights: optional local checkpoint (file or MONAI bundle folder) passed to
            :func:`medtl.models.import_weights`; its report is kept as ``model.load_report``.
        weights_format: format for the import (``"auto"`` sniffs it).
        min_loaded: minimum fraction of backbone parameters that must load.
        inflate: allow 2D -> 3D kernel inflation during import.
        dropout: head dropout.
        hidden_dim: optional head hidden layer width.
        pool: head pooling, ``"avg"`` or ``"avgmax"``.
        options: architecture options (see :class:`BackboneConfig`).
        **config_fields: other :class:`BackboneConfig` fields (``input_size``, ``labels``,
            ``preprocessing``, ``source_domain``, ``source_task``).

    Returns:
        The backbone.

    Raises:
        KeyError: unknown name.
        medtl.models.WeightImportError: the weights did not load well enough.
    """
    config = BackboneConfig(
        name=name,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_outputs=num_outputs,
        head=HeadConfig(dropout=dropout, hidden_dim=hidden_dim, pool=pool),
        options=dict(options or {}),
        **config_fields,
    )
    model = build_backbone(config)
    if weights is not None:
        from medtl.models.importers import import_weights

        model.load_report = import_weights(
            model, weights, format=weights_format, min_loaded=min_loaded, inflate=inflate
        )
    return model
