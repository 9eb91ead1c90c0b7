"""``i3resnet152``: the inflated 3D ResNet-152 image encoder of Merlin (and Astra).

The geometry is read from StanfordMIMI/Merlin ``merlin/models/i3res.py`` and
``merlin/models/inflate.py`` (an I3D inflation of torchvision's ResNet-152):

- stem: ``Conv3d(3, 64, k=(3, 7, 7), s=(1, 2, 2), p=(1, 3, 3), bias=False)``, BatchNorm,
  ReLU, ``MaxPool3d(3, stride=2, padding=1)``;
- bottlenecks (3/8/36/3 in layer1..4): 1x1x1 -> 3x3x3 (the stage stride in all three axes,
  padding 1) -> 1x1x1, expansion 4; the first block of a stage has a 1x1x1 strided conv +
  BatchNorm shortcut;
- no biases in convolutions (torchvision's ResNet has none; the inflation copies ``None``);
- global average pool -> 2048 features (Merlin's ``ImageEmbedding``).

**Input axes.** Merlin is fed a MONAI tensor ``(B, 1, X, Y, Z)`` after ``Orientation("RAS")``
and permutes it to ``(B, C, Z, X, Y)`` (depth first: the inflated kernels are 3 deep along Z
and 7x7 in-plane), then repeats the grey channel three times. This backbone does the same
inside :meth:`I3ResNetBackbone.forward_features` and permutes every feature map back to the
input's ``(X, Y, Z)`` order, so saliency maps line up with the input grid. Use the ``merlin``
preprocessing preset (:data:`medtl.models.foundation.MERLIN_PREPROCESSING`) to get that input.

Options (``BackboneConfig.options``): ``width`` (stem width, 64 for the real network; small
widths keep the exact key names for fast tests), ``layers`` (bottlenecks per stage, default
``[3, 8, 36, 3]``), ``grad_checkpointing`` (recompute each bottleneck in the backward pass,
as Merlin does, to fit 224x224x160 volumes in GPU memory), ``last_stage`` (``layer4``, the
default, or ``layer3``: the encoder ends there, so ``forward_features``, the pooled features,
the head and ``blocks()`` all work on that stage; importing the full file reports the unused
deeper stage as unexpected keys).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from medtl.models.backbones import Backbone, Stage
from medtl.models.config import BackboneConfig

DEFAULT_LAYERS = (3, 8, 36, 3)
STAGES = ("layer1", "layer2", "layer3", "layer4")
EXPANSION = 4
_OPTIONS = {"width", "layers", "grad_checkpointing", "last_stage"}


class Bottleneck3d(nn.Module):
    """Merlin's ``Bottleneck3d``: 1x1x1 -> 3x3x3 (strided) -> 1x1x1 with a residual."""

    def __init__(self, c_in: int, planes: int, stride: int) -> None:
        super().__init__()
        out = planes * EXPANSION
        self.conv1 = nn.Conv3d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or c_in != out:
            self.downsample = nn.Sequential(
                nn.Conv3d(c_in, out, 1, stride=stride, bias=False), nn.BatchNorm3d(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class ToInputAxes(nn.Module):
    """Permute a ``(B, C, Z, X, Y)`` feature map back to the input's ``(B, C, X, Y, Z)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 1, 3, 4, 2)


class I3ResNetEncoder(nn.Module):
    """The encoder: ``conv1``, ``bn1``, ``relu``, ``maxpool``, ``layer1..layer4``.

    State-dict keys are Merlin's (``conv1.weight``, ``layer3.35.bn2.running_var``, ...).
    """

    def __init__(
        self,
        width: int = 64,
        layers: Sequence[int] = DEFAULT_LAYERS,
        stem_channels: int = 3,
        last_stage: str = "layer4",
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(
            stem_channels, width, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False
        )
        self.bn1 = nn.BatchNorm3d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        c_in = width
        self.stages = STAGES[: STAGES.index(last_stage) + 1]
        for i, (name, n_blocks) in enumerate(zip(self.stages, layers, strict=False)):
            planes = width * 2**i
            blocks = []
            for b in range(n_blocks):
                blocks.append(Bottleneck3d(c_in, planes, stride=2 if (i > 0 and b == 0) else 1))
                c_in = planes * EXPANSION
            setattr(self, name, nn.Sequential(*blocks))
        self.out_channels = {name: width * 2**i * EXPANSION for i, name in enumerate(self.stages)}
        self.to_input_axes = ToInputAxes()


class I3ResNetBackbone(Backbone):
    """Merlin's I3ResNet-152 on the backbone contract (3D only).

    ``config.in_channels`` is the channel count of the preprocessed input (1 for CT); a
    single channel is repeated to the stem's 3 channels, exactly as Merlin does.
    """

    family = "i3resnet"
    gradcam_layer = "encoder.to_input_axes"
    first_conv = "encoder.conv1.weight"

    def __init__(self, config: BackboneConfig) -> None:
        unknown = set(config.options) - _OPTIONS
        if unknown:
            raise ValueError(f"unknown i3resnet options {sorted(unknown)}; allowed: {_OPTIONS}")
        if config.spatial_dims != 3:
            raise ValueError("i3resnet152 is a 3D network; use spatial_dims=3")
        if config.in_channels not in (1, 3):
            raise ValueError("i3resnet152 takes 1 (repeated to 3) or 3 input channels")
        width = int(config.options.get("width", 64))
        layers = [int(n) for n in config.options.get("layers", DEFAULT_LAYERS)]
        if width <= 0 or len(layers) != 4 or any(n <= 0 for n in layers):
            raise ValueError("i3resnet width must be positive and layers four positive counts")
        last = str(config.options.get("last_stage", "layer4"))
        if last not in ("layer3", "layer4"):
            raise ValueError(f"i3resnet last_stage must be layer3 or layer4, got {last!r}")
        encoder = I3ResNetEncoder(width, layers, last_stage=last)
        super().__init__(config, encoder, encoder.out_channels[last])
        self.last_stage = last
        self.grad_checkpointing = bool(config.options.get("grad_checkpointing", False))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each bottleneck during backward (less memory, about 30 % more time).

        Note: as in Merlin, BatchNorm layers in train mode see each batch twice (forward and
        recomputation), which nudges their running statistics twice by the same batch.
        """
        self.grad_checkpointing = enable

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        e = self.encoder
        x = x.permute(0, 1, 4, 2, 3)  # (B, C, X, Y, Z) -> (B, C, Z, X, Y), as Merlin
        if x.shape[1] == 1:
            x = x.expand(-1, e.conv1.in_channels, -1, -1, -1)
        return e.maxpool(e.relu(e.bn1(e.conv1(x))))

    def _run_stage(self, stage: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        if not (self.grad_checkpointing and torch.is_grad_enabled() and self.training):
            return stage(x)
        for block in stage:
            x = checkpoint(block, x, use_reentrant=False)
        return x

    def forward_stages(
        self, x: torch.Tensor, layers: Sequence[str] = ("layer4",)
    ) -> dict[str, torch.Tensor]:
        """Return the feature maps of the named stages, in the input's axis order.

        Args:
            x: ``(B, C, X, Y, Z)`` input (C = 1 or 3).
            layers: any of ``layer1``..``layer4``; the forward stops at the deepest asked.

        Returns:
            ``{name: (B, channels, x, y, z)}``.
        """
        wanted = list(layers)
        stages = self.encoder.stages
        unknown = [n for n in wanted if n not in stages]
        if unknown or not wanted:
            raise ValueError(f"unknown layers {unknown}; choose from {', '.join(stages)}")
        last = max(stages.index(n) for n in wanted)
        out: dict[str, torch.Tensor] = {}
        x = self._stem(x)
        for name in stages[: last + 1]:
            x = self._run_stage(getattr(self.encoder, name), x)
            if name in wanted:
                out[name] = self.encoder.to_input_axes(x)
        return out

    def forward_trunk(self, x: torch.Tensor, upto: str) -> torch.Tensor:
        """Run the stem and the stages up to ``upto``; the map stays in the network's axes.

        ``forward_trunk(x, "layer3")`` followed by ``encoder.layer4`` equals the full
        forward: a frozen trunk's output can be cached and the later stages trained on it.

        Args:
            x: ``(B, C, X, Y, Z)`` input (C = 1 or 3).
            upto: the last stage to run (``layer1``..``layer3``).

        Returns:
            ``(B, channels, z, x, y)``: the network's own axis order, not the input's.
        """
        stages = self.encoder.stages
        if upto not in stages:
            raise ValueError(f"unknown stage {upto!r}; choose from {', '.join(stages)}")
        x = self._stem(x)
        for name in stages[: stages.index(upto) + 1]:
            x = self._run_stage(getattr(self.encoder, name), x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the last stage's feature map (``layer4``: ``(B, 2048, x, y, z)``), input axes."""
        return self.forward_stages(x, (self.last_stage,))[self.last_stage]

    def feature_layers(self) -> dict[str, int]:
        """Return ``{stage name: channels}`` of the stages :meth:`forward_stages` offers."""
        return dict(self.encoder.out_channels)

    def blocks(self) -> list[nn.Module]:
        """Return ``[stem, layer1, layer2, layer3, layer4]`` (up to ``last_stage``)."""
        e = self.encoder
        return [Stage(e.conv1, e.bn1, e.relu, e.maxpool), *(getattr(e, n) for n in e.stages)]
