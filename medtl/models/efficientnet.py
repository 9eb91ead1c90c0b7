"""EfficientNet-B0 backbone (2D and 3D) on :class:`monai.networks.nets.EfficientNetBN`."""

from __future__ import annotations

import torch
from monai.networks.nets import EfficientNetBN
from torch import nn

from medtl.models.backbones import Backbone, Stage
from medtl.models.config import BackboneConfig


class EfficientNetBackbone(Backbone):
    """EfficientNet-B0; ``encoder`` is a MONAI ``EfficientNetBN`` without ``_fc``.

    Feature map: swish(bn1(conv_head(...))) ``(B, 1280, *spatial)``; the final swish is
    ``feature_act`` (``nn.SiLU``, numerically MONAI's swish) so Grad-CAM can hook it.
    Stages: stem (conv_stem, bn0), the seven MBConv stacks ``_blocks.0..6``, and the
    1x1 head convolution (conv_head, bn1).
    """

    family = "efficientnet"
    gradcam_layer = "feature_act"
    first_conv = "encoder._conv_stem.weight"

    def __init__(self, config: BackboneConfig, variant: str = "efficientnet-b0") -> None:
        if config.options:
            raise ValueError(f"{variant} takes no options, got {sorted(config.options)}")
        encoder = EfficientNetBN(
            variant,
            pretrained=False,
            spatial_dims=config.spatial_dims,
            in_channels=config.in_channels,
            num_classes=1,
        )
        feature_dim = encoder._fc.in_features
        del encoder._fc
        super().__init__(config, encoder, feature_dim)
        self.feature_act = nn.SiLU(inplace=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the head-convolution feature map ``(B, 1280, *spatial)``."""
        e = self.encoder
        x = e._swish(e._bn0(e._conv_stem(e._conv_stem_padding(x))))
        x = e._blocks(x)
        return self.feature_act(e._bn1(e._conv_head(e._conv_head_padding(x))))

    def blocks(self) -> list[nn.Module]:
        """Return ``[stem, stack0, ..., stack6, conv_head]``."""
        e = self.encoder
        return [
            Stage(e._conv_stem, e._bn0),
            *list(e._blocks),
            Stage(e._conv_head, e._bn1),
        ]
