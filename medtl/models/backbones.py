"""The backbone contract (after timm) shared by every network medtl trains.

Every backbone is a :class:`Backbone`: an ``encoder`` (a MONAI network without its
classifier, or the small CNN) plus a :class:`~medtl.models.heads.ClassifierHead` named
``head``. Transfer strategies, the trainer, saliency and the domain guard use only:

- ``forward_features(x)``: the **feature map** ``(B, C, *spatial)`` of the last stage,
  after its final normalisation and activation, before pooling;
- ``pool_features(x)``: the pooled vector ``(B, C)`` (global average of the feature map),
  for feature extraction, LogME and the Mahalanobis domain guard;
- ``forward_head(features)``: logits from a feature map or a pooled vector;
- ``forward(x) == forward_head(forward_features(x))``;
- ``reset_head(num_outputs, dropout)``: a fresh head;
- ``blocks()``: ordered stages (stem first, head excluded) for staged unfreezing; together
  they hold every non-head parameter exactly once;
- ``gradcam_layer``: the ``named_modules()`` name of the last conv stage (for MONAI
  ``GradCAM(nn_module, target_layers=model.gradcam_layer)``);
- ``first_conv``: the state-dict key of the first convolution's weight (weight import
  adapts its input channels);
- ``config``: the :class:`~medtl.models.config.BackboneConfig` that rebuilds it.
"""

from __future__ import annotations

import torch
from torch import nn

from medtl.models.config import BackboneConfig
from medtl.models.heads import ClassifierHead

HEAD_PREFIX = "head."


class Backbone(nn.Module):
    """Base class: ``encoder`` + ``head`` with the backbone contract.

    Subclasses set ``family``, ``gradcam_layer`` and ``first_conv``, build ``encoder`` and
    implement :meth:`forward_features` and :meth:`blocks`.

    Args:
        config: the backbone config.
        encoder: the feature extractor.
        feature_dim: channels of the feature map returned by :meth:`forward_features`.
    """

    family: str = ""
    gradcam_layer: str = ""
    first_conv: str = ""

    def __init__(self, config: BackboneConfig, encoder: nn.Module, feature_dim: int) -> None:
        super().__init__()
        self.config = config
        self.feature_dim = feature_dim
        self.encoder = encoder
        self.head = ClassifierHead(
            feature_dim,
            config.num_outputs,
            dropout=config.head.dropout,
            hidden_dim=config.head.hidden_dim,
            pool=config.head.pool,
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the last stage's feature map ``(B, feature_dim, *spatial)``."""
        raise NotImplementedError

    def blocks(self) -> list[nn.Module]:
        """Return the stages in forward order, stem first, head excluded."""
        raise NotImplementedError

    def pool_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the globally pooled features ``(B, head.pooled_dim)``."""
        return self.head.pool(self.forward_features(x))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Return logits ``(B, num_outputs)`` from a feature map or a pooled vector.

        Args:
            features: output of :meth:`forward_features` or :meth:`pool_features`.
            pre_logits: return the input of the last linear layer instead.
        """
        return self.head(features, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits ``(B, num_outputs)``."""
        return self.forward_head(self.forward_features(x))

    def reset_head(
        self, num_outputs: int, dropout: float | None = None, hidden_dim: int | None = None
    ) -> None:
        """Replace the head with a freshly initialised one (same device and dtype).

        Args:
            num_outputs: number of logits of the new head.
            dropout: dropout probability; ``None`` keeps the current setting.
            hidden_dim: optional hidden layer width (``None``: no hidden layer).
        """
        dropout = self.config.head.dropout if dropout is None else dropout
        ref = self.head.fc.weight
        self.head = ClassifierHead(
            self.feature_dim,
            num_outputs,
            dropout=dropout,
            hidden_dim=hidden_dim,
            pool=self.config.head.pool,
        ).to(device=ref.device, dtype=ref.dtype)
        head_cfg = self.config.head.model_copy(
            update={"dropout": dropout, "hidden_dim": hidden_dim}
        )
        labels = self.config.labels if len(self.config.labels) == num_outputs else []
        self.config = self.config.model_copy(
            update={"num_outputs": num_outputs, "head": head_cfg, "labels": labels}
        )

    def head_parameter_names(self) -> list[str]:
        """Return the state-dict keys that belong to the head."""
        return [k for k in self.state_dict() if k.startswith(HEAD_PREFIX)]


class Stage(nn.Sequential):
    """A plain ``nn.Sequential`` used to group existing modules into one stage.

    Grouping does not register the modules a second time in the backbone (the stage
    is built on demand by ``blocks()`` and not stored as an attribute).
    """
