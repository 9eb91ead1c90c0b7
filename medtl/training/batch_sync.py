"""Layers that see the global batch, so N processes train the model one process trains.

Two kinds of layer make a DDP run differ from a single-process run with the same
effective batch even when every process sees the right samples:

- **BatchNorm** normalises with the statistics of the batch it is given: under DDP, each
  process's share only. :class:`GlobalBatchNorm` all-reduces the per-channel count, mean
  and spread over the processes (and their gradients in the backward pass), so the
  statistics, the running averages and the gradients are those of the whole batch. torch's
  ``SyncBatchNorm`` does the same on GPUs only; this one also runs on CPUs (gloo), and it
  leaves filler samples (:class:`~medtl.training.sampling.MicroBatch`) out of the statistics.
- **Dropout** draws its mask from each process's random stream. :class:`StepDropout` draws
  the mask of the *global* batch from a generator seeded by (seed, epoch, step, layer) and
  keeps the rows of this process's samples, so a sample gets the same mask whichever
  process trains it, and a resumed run draws the masks an uninterrupted one drew.

:class:`GlobalBatchLayers` swaps these in for ``nn.BatchNorm*``/``nn.Dropout*`` for the
duration of a fit and puts the original modules back (parameters and buffers are shared,
so the originals hold the trained values). The training loop tells the layers which
micro-batch they see through a :class:`BatchContext`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from medtl.training.sampling import MicroBatch

__all__ = ["BatchContext", "GlobalBatchLayers", "GlobalBatchNorm", "StepDropout"]


@dataclass
class BatchContext:
    """What the swapped layers need to know about the micro-batch being trained.

    Attributes:
        seed: the run's seed (dropout masks derive from it).
        epoch: the current epoch (0-based).
        micro: the micro-batch in the forward pass; ``None`` outside the training loop
            (the layers then behave as the ones they replace).
    """

    seed: int = 0
    epoch: int = 0
    micro: MicroBatch | None = None


class _SumOverProcesses(torch.autograd.Function):
    """All-reduce (sum) whose backward all-reduces the gradient (every rank's loss depends
    on every rank's statistics). ``torch.distributed.nn.functional.all_reduce`` does the
    same but is deprecated."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return _SumOverProcesses.apply(grad)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm over the samples of every process (a stand-in for ``source``).

    Shares ``source``'s parameters and buffers. In training mode under a process group it
    normalises with the statistics of the global batch; otherwise it is ``source``.

    Args:
        source: the ``nn.BatchNorm1d/2d/3d`` it replaces.
        context: tells it when a micro-batch is a filler (counted as no samples).
    """

    def __init__(self, source: _BatchNorm, context: BatchContext) -> None:
        super().__init__(
            source.num_features,
            source.eps,
            source.momentum,
            source.affine,
            source.track_running_stats,
        )
        self.weight = source.weight
        self.bias = source.bias
        self.running_mean = source.running_mean
        self.running_var = source.running_var
        self.num_batches_tracked = source.num_batches_tracked
        self.train(source.training)
        self.context = context

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Normalise ``input`` (``(N, C, ...)``) with the global batch's statistics."""
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else factor
        batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        if not (batch_stats and _distributed()):
            track = not self.training or self.track_running_stats
            return F.batch_norm(
                input,
                self.running_mean if track else None,
                self.running_var if track else None,
                self.weight,
                self.bias,
                batch_stats,
                factor,
                self.eps,
            )
        return self._global(input, factor)

    # collectives and per-step Python state: run eagerly under torch.compile (a graph break,
    # not a recompilation per micro-batch)
    @torch.compiler.disable
    def _global(self, x: torch.Tensor, factor: float) -> torch.Tensor:
        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        shape = [1, channels] + [1] * (x.dim() - 2)
        xf = x.float()
        micro = self.context.micro
        keep = 0.0 if micro is not None and micro.filler else 1.0
        n_local = xf.numel() // max(1, channels)
        # Each rank's exact two-pass mean and spread, combined over ranks around a shift
        # every rank shares (the running mean): the combination then cancels little.
        shift = (
            self.running_mean.detach().float()
            if self.running_mean is not None
            else xf.new_zeros(channels)
        )
        local_mean = xf.mean(dim=dims)
        spread = ((xf - local_mean.view(shape)) ** 2).sum(dim=dims)
        offset = (local_mean - shift).double()
        count = xf.new_tensor([n_local * keep], dtype=torch.float64)
        stats = torch.cat(
            [count, offset * n_local * keep, (spread.double() + n_local * offset**2) * keep]
        )
        total = _SumOverProcesses.apply(stats)
        n = total[0]
        centred = total[1 : channels + 1] / n
        var = (total[channels + 1 :] / n - centred**2).clamp_min(0.0)
        mean = (centred + shift.double()).float()
        y = (xf - mean.view(shape)) * torch.rsqrt(var.float() + self.eps).view(shape)
        if self.weight is not None:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.training and self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                unbiased = var * n / (n - 1).clamp_min(1.0)
                self.running_mean.mul_(1 - factor).add_(mean.detach() * factor)
                self.running_var.mul_(1 - factor).add_(unbiased.float() * factor)
        return y


def _mask_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


#: the dropout layers :class:`StepDropout` replaces, with their functional form
_NATIVE: dict[type, Callable[..., torch.Tensor]] = {
    nn.Dropout: F.dropout,
    nn.Dropout1d: F.dropout1d,
    nn.Dropout2d: F.dropout2d,
    nn.Dropout3d: F.dropout3d,
}


class StepDropout(nn.Module):
    """Dropout whose mask is a function of (seed, epoch, step, layer, position in the batch).

    Args:
        source: the ``nn.Dropout`` (element-wise) or ``nn.Dropout1d/2d/3d`` (channel-wise)
            it replaces.
        context: the micro-batch being trained.
        layer: this layer's number in the model (each layer draws its own masks).
    """

    def __init__(self, source: nn.Module, context: BatchContext, layer: int) -> None:
        super().__init__()
        self.p = float(source.p)
        self.channelwise = type(source) is not nn.Dropout
        self.context = context
        self.layer = layer
        self._native: Callable[..., torch.Tensor] = _NATIVE[type(source)]
        self.train(source.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, channelwise={self.channelwise}, layer={self.layer}"

    @torch.compiler.disable  # per-step Python state: eager, not a recompilation per step
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Drop and rescale as ``source`` would, with the global batch's mask rows."""
        micro = self.context.micro
        if not self.training or self.p == 0.0:
            return x
        if micro is None or x.shape[0] != len(micro.positions) or x.dim() < 1:
            # outside the training loop, or a model that reshapes the batch: the native draw
            return self._native(x, self.p, True)
        if self.p == 1.0:
            return x * 0.0
        ctx = self.context
        gen = torch.Generator(device=x.device)
        gen.manual_seed(_mask_seed(ctx.seed, ctx.epoch, micro.step, self.layer))
        rest = list(x.shape[1:])
        if self.channelwise and x.dim() > 2:
            rest = [rest[0]] + [1] * (x.dim() - 2)
        draw = torch.rand([micro.global_size, *rest], generator=gen, device=x.device)
        rows = torch.as_tensor(micro.positions, device=x.device)
        keep = (draw.index_select(0, rows) >= self.p).to(x.dtype)
        return x * keep / (1.0 - self.p)


class GlobalBatchLayers:
    """Swap BatchNorm/Dropout layers of ``model`` for their global-batch forms, and back.

    Args:
        model: the network (modified in place until :meth:`restore`).
        context: shared by the swapped layers; the training loop fills it.
        sync_batchnorm: swap ``BatchNorm*`` for :class:`GlobalBatchNorm` (under DDP).
        step_dropout: swap ``Dropout``/``Dropout1d/2d/3d`` for :class:`StepDropout`.

    Example::

        layers = GlobalBatchLayers(model, ctx, sync_batchnorm=True, step_dropout=True)
        try:
            ...  # train
        finally:
            layers.restore()
    """

    def __init__(
        self,
        model: nn.Module,
        context: BatchContext,
        *,
        sync_batchnorm: bool,
        step_dropout: bool,
    ) -> None:
        self._swapped: list[tuple[nn.Module, str, nn.Module, nn.Module]] = []
        self._live: dict[int, nn.Module] = {}
        layer = 0
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                new = self._live.get(id(child))
                if new is None:
                    if sync_batchnorm and type(child) in (
                        nn.BatchNorm1d,
                        nn.BatchNorm2d,
                        nn.BatchNorm3d,
                    ):
                        new = GlobalBatchNorm(child, context)  # type: ignore[arg-type]
                    elif step_dropout and type(child) in _NATIVE:
                        new = StepDropout(child, context, layer)
                        layer += 1
                    else:
                        continue
                    self._live[id(child)] = new
                setattr(parent, name, new)
                self._swapped.append((parent, name, child, new))

    def __len__(self) -> int:
        """Number of layers swapped."""
        return len({id(new) for *_, new in self._swapped})

    def live(self, module: nn.Module) -> nn.Module:
        """The module that stands in for ``module`` while swapped (``module`` if none)."""
        return self._live.get(id(module), module)

    def restore(self) -> None:
        """Put the original layers back, in the mode the stand-ins ended in."""
        for parent, name, original, new in reversed(self._swapped):
            original.train(new.training)
            setattr(parent, name, original)
        self._swapped.clear()
        self._live.clear()
