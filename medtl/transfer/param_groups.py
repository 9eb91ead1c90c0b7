"""Optimiser parameter groups for fine-tuning: head vs base, and discriminative rates.

Discriminative (layer-wise) learning rates follow Howard & Ruder (ULMFiT, 2018): the head
learns at ``lr``, and each earlier block at ``lr * decay**depth``, so generic early features
(edges, textures) move least.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn


def _trainable(params: Sequence[nn.Parameter]) -> list[nn.Parameter]:
    return [p for p in params if p.requires_grad]


def head_and_base_groups(
    head: nn.Module, base_blocks: Sequence[nn.Module], head_lr: float, base_lr: float
) -> list[dict[str, Any]]:
    """Two groups: the head at ``head_lr``, all trainable base parameters at ``base_lr``."""
    groups = [{"params": _trainable(list(head.parameters())), "lr": head_lr, "name": "head"}]
    base = [p for block in base_blocks for p in _trainable(list(block.parameters()))]
    if base:
        groups.append({"params": base, "lr": base_lr, "name": "base"})
    return [g for g in groups if g["params"]]


def discriminative_groups(
    head: nn.Module, blocks: Sequence[nn.Module], lr: float, decay: float = 0.5
) -> list[dict[str, Any]]:
    """One group per block with geometrically decaying learning rates.

    Args:
        head: the classification head (learning rate ``lr``).
        blocks: the backbone stages, stem first (``backbone.blocks()``).
        lr: learning rate of the head.
        decay: factor applied per block going from the last block towards the stem
            (last block ``lr * decay``, the one before ``lr * decay**2``...).

    Returns:
        Parameter groups (frozen parameters are left out; empty groups dropped), each with a
        ``name`` key (``head``, ``block0``...) for logging.
    """
    if not 0 < decay <= 1:
        raise ValueError("decay must be in (0, 1]")
    groups: list[dict[str, Any]] = [
        {"params": _trainable(list(head.parameters())), "lr": lr, "name": "head"}
    ]
    n = len(blocks)
    for index, block in enumerate(blocks):
        depth = n - index  # last block -> 1, stem -> n
        groups.append(
            {
                "params": _trainable(list(block.parameters())),
                "lr": lr * decay**depth,
                "name": f"block{index}",
            }
        )
    return [g for g in groups if g["params"]]
