"""Classification head shared by every backbone: global average pooling, dropout, linear.

Parameter names are stable (``fc`` for the output layer, ``hidden`` for the optional
hidden layer) because weight import maps source heads onto ``head.fc``.
"""

from __future__ import annotations

import torch
from torch import nn


class ClassifierHead(nn.Module):
    """Global average pool -> dropout -> [hidden linear -> ReLU -> dropout] -> linear.

    Args:
        in_features: channels of the feature map it receives.
        num_outputs: number of logits.
        dropout: dropout probability (default 0.3).
        hidden_dim: optional hidden layer width.

    Example:
        >>> head = ClassifierHead(64, 2)
        >>> head(torch.zeros(4, 64, 3, 3)).shape
        torch.Size([4, 2])
    """

    def __init__(
        self,
        in_features: int,
        num_outputs: int,
        dropout: float = 0.3,
        hidden_dim: int | None = None,
        pool: str = "avg",
    ) -> None:
        super().__init__()
        if pool not in ("avg", "avgmax"):
            raise ValueError(f"unknown pooling {pool!r}; use 'avg' or 'avgmax'")
        self.in_features = in_features
        self.num_outputs = num_outputs
        self.dropout_p = dropout
        self.hidden_dim = hidden_dim
        self.pool_mode = pool
        #: length of the pooled vector (``avgmax`` concatenates average and max pooling)
        self.pooled_dim = in_features * (2 if pool == "avgmax" else 1)
        self.dropout = nn.Dropout(dropout)
        width = self.pooled_dim
        if hidden_dim is not None:
            self.hidden: nn.Linear | None = nn.Linear(in_features, hidden_dim)
            self.act = nn.ReLU()
            self.hidden_dropout = nn.Dropout(dropout)
            width = hidden_dim
        else:
            self.hidden = None
        self.fc = nn.Linear(width, num_outputs)

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """Pool a ``(B, C, *spatial)`` feature map to ``(B, pooled_dim)``.

        ``avg`` is global average pooling; ``avgmax`` concatenates average and max pooling,
        which keeps the evidence of a small lesion that averaging over the whole image
        dilutes. Already pooled ``(B, pooled_dim)`` vectors pass through.
        """
        if features.ndim == 2:
            return features
        flat = features.flatten(2)
        if self.pool_mode == "avgmax":
            return torch.cat([flat.mean(dim=2), flat.amax(dim=2)], dim=1)
        return flat.mean(dim=2)

    def forward(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Map features to logits.

        Args:
            features: a feature map ``(B, C, *spatial)`` or a pooled vector ``(B, C)``.
            pre_logits: return the input of the last linear layer instead of logits.

        Returns:
            Logits ``(B, num_outputs)`` (or pre-logits).
        """
        x = self.dropout(self.pool(features))
        if self.hidden is not None:
            x = self.hidden_dropout(self.act(self.hidden(x)))
        if pre_logits:
            return x
        return self.fc(x)
