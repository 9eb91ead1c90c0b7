"""Freezing helpers shared by the transfer strategies.

Freezing a pretrained base has two parts that are easy to get half right:

1. ``requires_grad=False`` on its parameters, so the optimiser leaves the weights alone;
2. its BatchNorm layers kept in **inference mode** (running statistics frozen, batch statistics
   not used). ``model.train()`` silently switches BatchNorm back to training mode, which
   updates the running means from target-domain batches and destroys pretrained features even
   though no weight has a gradient. :func:`keep_frozen_bn_in_eval` undoes that after every
   ``model.train()`` call.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn


def set_trainable(modules: nn.Module | Iterable[nn.Module], trainable: bool) -> None:
    """Set ``requires_grad`` on every parameter of ``modules``."""
    for module in [modules] if isinstance(modules, nn.Module) else modules:
        for param in module.parameters():
            param.requires_grad_(trainable)


def batchnorm_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """All BatchNorm layers (1d/2d/3d, SyncBatchNorm) inside ``module``."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def keep_frozen_bn_in_eval(model: nn.Module) -> int:
    """Put every BatchNorm whose parameters are all frozen back into eval mode.

    Call after ``model.train()`` (the training engine does so through its ``on_train_mode``
    hook). A layer counts as frozen when its affine parameters are frozen; BatchNorm layers
    without affine parameters are left in the mode ``model.train()`` set.

    Returns:
        The number of BatchNorm layers switched to eval mode.
    """
    switched = 0
    for layer in batchnorm_layers(model):
        params = list(layer.parameters(recurse=False))
        if params and not any(p.requires_grad for p in params):
            layer.eval()
            switched += 1
    return switched


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """Return ``(trainable, total)`` parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
