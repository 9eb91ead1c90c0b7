"""Task helpers: loss and validation metric from the number of outputs.

Binary tasks use one logit with ``BCEWithLogitsLoss`` (the logit is the score that
calibration and ROC analysis work on); multi-class tasks use ``K`` logits with
cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn


class BinaryLoss(nn.Module):
    """``BCEWithLogitsLoss`` on ``(B, 1)`` or ``(B,)`` logits and integer targets."""

    def __init__(self, pos_weight: float | None = None) -> None:
        super().__init__()
        self.pos_weight = pos_weight

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weight = (
            None
            if self.pos_weight is None
            else torch.tensor(self.pos_weight, device=logits.device, dtype=logits.dtype)
        )
        return nn.functional.binary_cross_entropy_with_logits(
            logits.reshape(-1), targets.reshape(-1).to(logits.dtype), pos_weight=weight
        )


class MulticlassLoss(nn.Module):
    """Cross-entropy with optional label smoothing."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(
            logits.float(), targets.reshape(-1).long(), label_smoothing=self.label_smoothing
        )


def loss_for(num_outputs: int) -> nn.Module:
    """The loss matching a head of ``num_outputs`` logits."""
    return BinaryLoss() if num_outputs == 1 else MulticlassLoss()


def scores_from_logits(logits: torch.Tensor | np.ndarray) -> np.ndarray:
    """Probabilities: sigmoid of one logit, or softmax over ``K`` logits."""
    t = torch.as_tensor(logits).float()
    if t.ndim == 1 or t.shape[-1] == 1:
        return torch.sigmoid(t.reshape(-1)).numpy()
    return torch.softmax(t, dim=-1).numpy()


def metric_for(num_outputs: int) -> Callable[[torch.Tensor, torch.Tensor], dict[str, float]]:
    """Validation metric: AUROC (binary) or macro one-vs-rest AUROC and accuracy."""
    from sklearn.metrics import roc_auc_score

    from medtl.evaluation.metrics import macro_auroc

    def binary(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        y = targets.reshape(-1).numpy().astype(int)
        p = scores_from_logits(logits)
        auroc = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")
        return {"auroc": auroc, "accuracy": float(np.mean((p >= 0.5) == y))}

    def multiclass(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        y = targets.reshape(-1).numpy().astype(int)
        p = scores_from_logits(logits)
        return {"auroc": macro_auroc(y, p), "accuracy": float(np.mean(p.argmax(1) == y))}

    return binary if num_outputs == 1 else multiclass
