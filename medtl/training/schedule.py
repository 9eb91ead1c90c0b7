"""The optimiser (:func:`make_optimizer`) and per-step learning-rate schedules: linear
warm-up, then constant, cosine or step decay.

The multiplier :func:`lr_factor` is applied to every param group's own base learning rate,
so discriminative learning rates (a small lr for the backbone, a large one for the head)
keep their ratio through the schedule. Step ``s`` is the 0-based index of the optimiser step
the factor applies to: with ``W`` warm-up steps, step ``s < W`` uses ``(s + 1) / W`` (the
first step already moves the weights; step ``W - 1`` reaches the full rate).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from medtl.training.config import TrainingConfig


def lr_factor(
    step: int,
    *,
    warmup_steps: int,
    total_steps: int,
    schedule: str = "constant",
    min_lr_ratio: float = 0.0,
    step_size: int = 1,
    gamma: float = 0.1,
) -> float:
    """Learning-rate multiplier for optimiser step ``step`` (0-based).

    Args:
        step: optimiser step index.
        warmup_steps: linear warm-up length in steps (0: none).
        total_steps: steps in the whole run (cosine reaches ``min_lr_ratio`` at the end).
        schedule: ``"constant"``, ``"cosine"`` or ``"step"``.
        min_lr_ratio: cosine floor as a fraction of the base rate.
        step_size: ``"step"``: steps between decays (counted after warm-up).
        gamma: ``"step"``: decay factor.

    Returns:
        The multiplier.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    after = step - warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, after / span)
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "step":
        return gamma ** (after // max(1, step_size))
    raise ValueError(f"unknown schedule {schedule!r}")


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainingConfig, steps_per_epoch: int
) -> LambdaLR:
    """A ``LambdaLR`` stepped once per optimiser step, following ``cfg``.

    Args:
        optimizer: the optimiser (its groups' current lrs become the base lrs).
        cfg: schedule, warm-up, floor and step-decay settings; ``max_epochs`` sets the length.
        steps_per_epoch: optimiser steps per epoch (after gradient accumulation).

    Returns:
        The scheduler.
    """
    steps_per_epoch = max(1, steps_per_epoch)
    warmup = (
        cfg.warmup_steps
        if cfg.warmup_steps is not None
        else round(cfg.warmup_epochs * steps_per_epoch)
    )
    fn = functools.partial(
        lr_factor,
        warmup_steps=int(warmup),
        total_steps=cfg.max_epochs * steps_per_epoch,
        schedule=cfg.schedule,
        min_lr_ratio=cfg.min_lr_ratio,
        step_size=max(1, round(cfg.step_epochs * steps_per_epoch)),
        gamma=cfg.step_gamma,
    )
    return LambdaLR(optimizer, lr_lambda=fn)


def make_optimizer(
    model: nn.Module, cfg: TrainingConfig, groups: Sequence[dict[str, Any]] | None = None
) -> torch.optim.Optimizer:
    """The configured optimiser over the trainable parameters of ``groups``.

    Args:
        model: the network (its trainable parameters form the one group by default).
        cfg: ``optimizer`` (adamw, adam or sgd), ``lr``, ``weight_decay``, ``momentum``.
        groups: optimiser groups (``[{"params": [...], "lr": 1e-4}, ...]``); frozen
            parameters are dropped and empty groups left out.

    Returns:
        The optimiser.

    Raises:
        ValueError: when no parameter is trainable.
    """
    if groups is None:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    built = []
    for group in groups:
        group = dict(group)
        group["params"] = [p for p in group["params"] if p.requires_grad]
        if group["params"]:
            built.append(group)
    if not built:
        raise ValueError("no trainable parameters: every parameter is frozen or left out")
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(built, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(built, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(built, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
