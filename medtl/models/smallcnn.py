"""``smallcnn``: a small fast CNN for CPU demos and tests (2D and 3D).

Four conv-BN-ReLU stages; each stage after the first halves the resolution with a
strided convolution. Default widths (16, 32, 64, 128) keep a 2D 224 px forward or a
3D 64^3 forward in the tens of milliseconds on a laptop CPU.
"""

from __future__ import annotations

import torch
from monai.networks.layers.factories import Conv, Norm
from torch import nn

from medtl.models.backbones import Backbone
from medtl.models.config import BackboneConfig

DEFAULT_WIDTHS = (16, 32, 64, 128)


def _stage(spatial_dims: int, c_in: int, c_out: int, stride: int) -> nn.Sequential:
    conv = Conv[Conv.CONV, spatial_dims]
    norm = Norm[Norm.BATCH, spatial_dims]
    return nn.Sequential(
        conv(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
        norm(c_out),
        nn.ReLU(inplace=True),
        conv(c_out, c_out, kernel_size=3, padding=1, bias=False),
        norm(c_out),
        nn.ReLU(inplace=True),
    )


class SmallCNNBackbone(Backbone):
    """Small CNN; ``encoder`` is an ``nn.Sequential`` of stages.

    Options: ``widths`` (channels per stage, default ``[16, 32, 64, 128]``). The stem
    has stride 2, so the feature map is 1/2^len(widths) of the input size.
    """

    family = "smallcnn"
    first_conv = "encoder.0.0.weight"

    def __init__(self, config: BackboneConfig) -> None:
        unknown = set(config.options) - {"widths"}
        if unknown:
            raise ValueError(f"unknown smallcnn options {sorted(unknown)}; allowed: ['widths']")
        widths = [int(w) for w in config.options.get("widths", DEFAULT_WIDTHS)]
        if not widths or any(w <= 0 for w in widths):
            raise ValueError("smallcnn widths must be a non-empty list of positive integers")
        stages = []
        c_in = config.in_channels
        for w in widths:
            stages.append(_stage(config.spatial_dims, c_in, w, stride=2))
            c_in = w
        super().__init__(config, nn.Sequential(*stages), widths[-1])
        self.gradcam_layer = f"encoder.{len(widths) - 1}"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the last stage's feature map ``(B, widths[-1], *spatial)``."""
        return self.encoder(x)

    def blocks(self) -> list[nn.Module]:
        """Return the stages, stem first."""
        return list(self.encoder)
