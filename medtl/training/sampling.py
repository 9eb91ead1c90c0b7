"""Training batches that do not depend on the process count.

:class:`GlobalBatchSampler` draws one seeded permutation of the dataset per epoch (the same
on every process and for any process count), cuts it into *global* batches of
``batch_size`` (one optimiser step each) and gives process ``r`` of ``W`` the positions
``r, r+W, r+2W, ...`` of each global batch, split into ``grad_accum_steps`` micro-batches.
The union of one step's micro-batches over all processes is therefore exactly the batch a
single process trains on. Unlike torch's ``DistributedSampler`` nothing is padded: a short
last batch is split unevenly, and each micro-batch carries the weight that makes the sum
of the processes' losses the mean over the global batch (:attr:`MicroBatch.weight`). A
process whose share of a step is smaller than another's runs a *filler* micro-batch (one
repeated sample with weight 0, left out of synchronised BatchNorm statistics) so every
process runs the same number of forward/backward passes, which DDP and synchronised
BatchNorm need.

Indices come out as :class:`SampleKey` (an ``int`` that also carries the epoch), so a
dataset can derive per-sample augmentation seeds from (seed, epoch, index) even in
persistent DataLoader workers, which never see ``set_epoch``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch


class SampleKey(int):
    """A dataset index that also says which epoch asks for it (``key.epoch``).

    It is an ``int``: datasets that ignore the epoch index with it as before.
    """

    epoch: int

    def __new__(cls, index: int, epoch: int) -> SampleKey:
        """Make the key of ``index`` in ``epoch``."""
        obj = super().__new__(cls, index)
        obj.epoch = int(epoch)
        return obj

    def __reduce__(self) -> tuple[type, tuple[int, int]]:
        """Pickle as ``(index, epoch)`` (DataLoader workers receive keys by pickle)."""
        return (SampleKey, (int(self), self.epoch))


@dataclass(frozen=True)
class MicroBatch:
    """One micro-batch of this process.

    Attributes:
        indices: dataset indices, in order.
        positions: their positions in the step's global batch (rows of a global-batch draw).
        global_size: samples in the step's global batch (all processes together).
        step: optimiser step within the epoch (0-based).
        weight: loss multiplier: ``len(indices) * world / global_size`` (0 for a filler).
            With DDP averaging gradients over ``world`` processes, the sum over processes
            and micro-batches of ``weight * mean loss`` is the mean over the global batch.
        last_in_step: the optimiser steps after this micro-batch.
        filler: a stand-in sample that only keeps the processes in step.
    """

    indices: tuple[int, ...]
    positions: tuple[int, ...]
    global_size: int
    step: int
    weight: float
    last_in_step: bool
    filler: bool = False


class GlobalBatchSampler:
    """Batch sampler whose global batches are the same for any number of processes.

    Args:
        length: dataset length.
        batch_size: effective batch per optimiser step, over all processes.
        world: number of processes.
        rank: this process.
        grad_accum_steps: micro-batches per step and process.
        shuffle: a seeded permutation per epoch (``torch.randperm`` seeded with
            ``seed + epoch``, as torch's ``DistributedSampler``); else dataset order.
        seed: permutation seed.
        drop_last: drop a last global batch smaller than ``batch_size``.

    Raises:
        ValueError: ``batch_size`` is not divisible by ``world * grad_accum_steps``.

    Example:
        >>> s = GlobalBatchSampler(5, 4, world=2, rank=1, shuffle=False)
        >>> [list(b) for b in s]
        [[1, 3], [4]]
    """

    def __init__(
        self,
        length: int,
        batch_size: int,
        *,
        world: int = 1,
        rank: int = 0,
        grad_accum_steps: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if batch_size % (world * grad_accum_steps):
            raise ValueError(
                f"batch_size {batch_size} must be divisible by world_size x grad_accum_steps "
                f"= {world * grad_accum_steps}"
            )
        self.length = int(length)
        self.batch_size = int(batch_size)
        self.world = int(world)
        self.rank = int(rank)
        self.accum = int(grad_accum_steps)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.epoch = 0
        self._plan: tuple[int, list[MicroBatch]] | None = None

    @property
    def micro_size(self) -> int:
        """Samples per full micro-batch of one process."""
        return self.batch_size // (self.world * self.accum)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order :meth:`plan` and iteration follow."""
        self.epoch = int(epoch)

    def order(self) -> list[int]:
        """The epoch's sample order (the same on every process)."""
        if not self.shuffle:
            return list(range(self.length))
        gen = torch.Generator()
        gen.manual_seed(self.seed + self.epoch)
        return torch.randperm(self.length, generator=gen).tolist()

    def plan(self) -> list[MicroBatch]:
        """This process's micro-batches of the current epoch, in training order."""
        if self._plan is not None and self._plan[0] == self.epoch:
            return self._plan[1]
        order = self.order()
        out: list[MicroBatch] = []
        for step, start in enumerate(range(0, self.length, self.batch_size)):
            chunk = order[start : start + self.batch_size]
            if self.drop_last and len(chunk) < self.batch_size:
                break
            out.extend(self._step(step, chunk))
        self._plan = (self.epoch, out)
        return out

    def _step(self, step: int, chunk: list[int]) -> list[MicroBatch]:
        """Split one global batch: this rank's positions, in micro-batches (fillers last)."""
        size, micro = len(chunk), self.micro_size
        mine = list(range(self.rank, size, self.world))
        # every rank runs as many micro-batches as rank 0, which has the largest share
        count = math.ceil(len(range(0, size, self.world)) / micro)
        out = []
        for m in range(count):
            part = mine[m * micro : (m + 1) * micro]
            last = m == count - 1
            if part:
                weight = len(part) * self.world / size
                out.append(
                    MicroBatch(tuple(chunk[p] for p in part), tuple(part), size, step, weight, last)
                )
            else:
                out.append(MicroBatch((chunk[0],), (0,), size, step, 0.0, last, filler=True))
        return out

    def steps(self) -> int:
        """Optimiser steps per epoch."""
        full, rest = divmod(self.length, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[list[SampleKey]]:
        """Yield this process's micro-batches as lists of :class:`SampleKey`."""
        for batch in self.plan():
            yield [SampleKey(i, self.epoch) for i in batch.indices]

    def __len__(self) -> int:
        """Micro-batches of this process per epoch."""
        return len(self.plan())


def micro_batch_plan(loader: object) -> list[MicroBatch] | None:
    """The epoch's micro-batches of a loader built on a :class:`GlobalBatchSampler`.

    Args:
        loader: a ``DataLoader`` (call after ``set_epoch``).

    Returns:
        The plan, aligned with the loader's batches; ``None`` for other loaders.
    """
    sampler = getattr(loader, "batch_sampler", None)
    return sampler.plan() if isinstance(sampler, GlobalBatchSampler) else None
