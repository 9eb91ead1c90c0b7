"""ResNet-10/18/34/50 backbones (2D and 3D) on :class:`monai.networks.nets.ResNet`.

Default geometry is torchvision's (7x7 stride-2 stem, max pool, shortcut ``B`` without
bias, stride 2 in layers 2-4), so ImageNet checkpoints in torchvision/timm layout load
one-to-one. ``medicalnet=True`` gives MedicalNet's geometry (Chen et al. 2019): the same
stem, the depth's shortcut type (``A`` for 18/34, ``B`` otherwise, no downsample bias)
and stride 1 with dilation 2 (layer3) and 4 (layer4). MONAI's ResNet has no dilation
argument, so the dilated convolutions are set on the built modules (shapes unchanged).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from monai.networks.nets import ResNet
from torch import nn

from medtl.models.backbones import Backbone, Stage
from medtl.models.config import BackboneConfig

#: depth -> (block, layers per stage)
RESNET_LAYOUTS: dict[int, tuple[str, list[int]]] = {
    10: ("basic", [1, 1, 1, 1]),
    18: ("basic", [2, 2, 2, 2]),
    34: ("basic", [3, 4, 6, 3]),
    50: ("bottleneck", [3, 4, 6, 3]),
}

#: MedicalNet's shortcut type per depth (from the MedicalNet README and MONAI).
MEDICALNET_SHORTCUT = {10: "B", 18: "A", 34: "A", 50: "B"}

_ALLOWED_OPTIONS = {
    "shortcut_type",
    "conv1_t_size",
    "conv1_t_stride",
    "no_max_pool",
    "bias_downsample",
    "medicalnet",
}


def resnet_geometry(depth: int, options: dict[str, Any]) -> dict[str, Any]:
    """Resolve the ResNet geometry from config options.

    Args:
        depth: 10, 18, 34 or 50.
        options: ``BackboneConfig.options``.

    Returns:
        Dict with ``shortcut_type``, ``conv1_t_size``, ``conv1_t_stride``,
        ``no_max_pool``, ``bias_downsample`` and ``medicalnet``.
    """
    unknown = set(options) - _ALLOWED_OPTIONS
    if unknown:
        raise ValueError(
            f"unknown ResNet options {sorted(unknown)}; allowed: {sorted(_ALLOWED_OPTIONS)}"
        )
    medicalnet = bool(options.get("medicalnet", False))
    geometry = {
        "shortcut_type": MEDICALNET_SHORTCUT[depth] if medicalnet else "B",
        "conv1_t_size": 7,
        "conv1_t_stride": 2,
        "no_max_pool": False,
        "bias_downsample": False,
        "medicalnet": medicalnet,
    }
    geometry.update({k: v for k, v in options.items() if k != "medicalnet"})
    if geometry["shortcut_type"] not in ("A", "B"):
        raise ValueError("shortcut_type must be 'A' or 'B'")
    return geometry


def _dilate_layer(layer: nn.Sequential, dilation: int, encoder: ResNet, spatial_dims: int) -> None:
    """Turn a stride-2 ResNet stage into MedicalNet's stride-1 dilated stage, in place."""
    for block in layer:
        convs = [block.conv1, block.conv2] if block.conv1.kernel_size[0] == 3 else [block.conv2]
        for conv in convs:
            nd = len(conv.kernel_size)
            conv.stride = (1,) * nd
            conv.dilation = (dilation,) * nd
            conv.padding = (dilation,) * nd
        block.stride = 1
        down = block.downsample
        if isinstance(down, nn.Sequential):
            down[0].stride = (1,) * len(down[0].kernel_size)
        elif isinstance(down, partial):
            block.downsample = partial(
                encoder._downsample_basic_block,
                planes=down.keywords["planes"],
                stride=1,
                spatial_dims=spatial_dims,
            )


class ResNetBackbone(Backbone):
    """ResNet backbone; ``encoder`` is a MONAI ``ResNet`` without its ``fc``.

    Feature map: output of ``layer4`` (after its ReLU); stages: stem (conv1, bn1, act,
    maxpool), layer1..layer4.
    """

    family = "resnet"
    gradcam_layer = "encoder.layer4"
    first_conv = "encoder.conv1.weight"

    def __init__(self, config: BackboneConfig, depth: int) -> None:
        block, layers = RESNET_LAYOUTS[depth]
        geo = resnet_geometry(depth, config.options)
        encoder = ResNet(
            block=block,
            layers=layers,
            block_inplanes=[64, 128, 256, 512],
            spatial_dims=config.spatial_dims,
            n_input_channels=config.in_channels,
            conv1_t_size=geo["conv1_t_size"],
            conv1_t_stride=geo["conv1_t_stride"],
            no_max_pool=geo["no_max_pool"],
            shortcut_type=geo["shortcut_type"],
            bias_downsample=geo["bias_downsample"],
            feed_forward=False,
        )
        if geo["medicalnet"]:
            _dilate_layer(encoder.layer3, 2, encoder, config.spatial_dims)
            _dilate_layer(encoder.layer4, 4, encoder, config.spatial_dims)
        self.depth = depth
        self.geometry = geo
        feature_dim = 512 * (4 if block == "bottleneck" else 1)
        super().__init__(config, encoder, feature_dim)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the ``layer4`` feature map ``(B, 512 or 2048, *spatial)``."""
        e = self.encoder
        x = e.act(e.bn1(e.conv1(x)))
        if not e.no_max_pool:
            x = e.maxpool(x)
        return e.layer4(e.layer3(e.layer2(e.layer1(x))))

    def blocks(self) -> list[nn.Module]:
        """Return ``[stem, layer1, layer2, layer3, layer4]``."""
        e = self.encoder
        stem = Stage(e.conv1, e.bn1, e.act, e.maxpool)
        return [stem, e.layer1, e.layer2, e.layer3, e.layer4]
