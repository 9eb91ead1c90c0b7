"""Backbone configuration that travels with the weights.

:class:`BackboneConfig` and :class:`HeadConfig` are typed hand-offs (stored in run summaries
and model cards), so they live in :mod:`medtl.artifacts.backbone`; this module re-exports
them for ``from medtl.models.config import BackboneConfig``.

Example:
    >>> cfg = BackboneConfig(name="resnet18", spatial_dims=3, in_channels=1, num_outputs=2)
    >>> BackboneConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

from medtl.artifacts.backbone import BackboneConfig, HeadConfig

__all__ = ["BackboneConfig", "HeadConfig"]
