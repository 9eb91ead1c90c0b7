"""DenseNet-121 backbone (2D and 3D) on :class:`monai.networks.nets.DenseNet121`.

MONAI's key layout equals torchvision's except that each dense layer's modules sit in
a ``layers`` Sequential (``denselayer1.layers.norm1`` for torchvision's
``denselayer1.norm1``); :mod:`medtl.models.importers` maps between them.
"""

from __future__ import annotations

import torch
from monai.networks.nets import DenseNet121
from torch import nn

from medtl.models.backbones import Backbone, Stage
from medtl.models.config import BackboneConfig


class DenseNetBackbone(Backbone):
    """DenseNet-121; ``encoder`` is a MONAI ``DenseNet121`` without ``class_layers``.

    Feature map: ``features`` output (ending in ``norm5``) followed by ReLU
    (``feature_act``, as in torchvision's forward). Stages: stem (conv0, norm0, relu0,
    pool0), then denseblock1+transition1, ..., denseblock4+norm5.
    """

    family = "densenet"
    gradcam_layer = "feature_act"
    first_conv = "encoder.features.conv0.weight"

    def __init__(self, config: BackboneConfig) -> None:
        if config.options:
            raise ValueError(f"densenet121 takes no options, got {sorted(config.options)}")
        encoder = DenseNet121(
            spatial_dims=config.spatial_dims,
            in_channels=config.in_channels,
            out_channels=1,
        )
        feature_dim = encoder.class_layers.out.in_features
        del encoder.class_layers
        super().__init__(config, encoder, feature_dim)
        # Not in place: Grad-CAM hooks read this module's output.
        self.feature_act = nn.ReLU(inplace=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the final feature map ``(B, 1024, *spatial)`` (after ReLU)."""
        return self.feature_act(self.encoder.features(x))

    def blocks(self) -> list[nn.Module]:
        """Return ``[stem, dense1+trans1, dense2+trans2, dense3+trans3, dense4+norm5]``."""
        f = self.encoder.features
        return [
            Stage(f.conv0, f.norm0, f.relu0, f.pool0),
            Stage(f.denseblock1, f.transition1),
            Stage(f.denseblock2, f.transition2),
            Stage(f.denseblock3, f.transition3),
            Stage(f.denseblock4, f.norm5),
        ]
