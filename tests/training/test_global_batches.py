"""Global batches: the same steps, masks and augmentations for any number of processes.

In-process checks of the pieces the 2-process tests (test_ddp_same_model.py) rely on:
the sampler's split of each step, the loss weights, dropout masks by batch position and
per-sample augmentation seeds.
"""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from medtl.training.batch_sync import BatchContext, GlobalBatchLayers, StepDropout
from medtl.training.sampling import GlobalBatchSampler, SampleKey


def _steps(sampler: GlobalBatchSampler) -> dict[int, list]:
    steps: dict[int, list] = {}
    for micro in sampler.plan():
        steps.setdefault(micro.step, []).append(micro)
    return steps


@pytest.mark.parametrize("length", [29, 32, 7])
@pytest.mark.parametrize(("world", "accum"), [(2, 1), (2, 2), (3, 2), (4, 1)])
@pytest.mark.parametrize("drop_last", [False, True])
def test_each_step_is_the_single_process_batch(length, world, accum, drop_last) -> None:
    batch = 12 if world == 3 else 8
    kwargs = {"grad_accum_steps": accum, "seed": 4, "drop_last": drop_last}
    one = GlobalBatchSampler(length, batch, **kwargs)
    ranks = [GlobalBatchSampler(length, batch, world=world, rank=r, **kwargs) for r in range(world)]
    for sampler in (one, *ranks):
        sampler.set_epoch(3)
    single = _steps(one)
    per_rank = [_steps(s) for s in ranks]
    assert all(len(steps) == len(single) == one.steps() for steps in per_rank)
    for step, micros in single.items():
        expected = [i for m in micros for i in m.indices]
        # every process runs as many micro-batches (DDP and BatchNorm sync need it)
        assert len({len(steps[step]) for steps in per_rank}) == 1
        real = [m for steps in per_rank for m in steps[step] if not m.filler]
        assert sorted(i for m in real for i in m.indices) == sorted(expected)  # no padding
        for m in real:  # positions are where the samples sit in the global batch
            assert [expected[p] for p in m.positions] == list(m.indices)
        # weights: sum over processes of weight x mean loss = mean over the global batch
        assert sum(m.weight for m in real) / world == pytest.approx(1.0)
        assert all(m.weight == 0 for steps in per_rank for m in steps[step] if m.filler)
        # micro-step m of all processes together is micro-step m of one process
        for k, micro in enumerate(micros):
            union = [i for steps in per_rank for i in steps[step][k].indices
                     if not steps[step][k].filler]  # fmt: skip
            assert sorted(union) == sorted(micro.indices)
    if drop_last:
        assert all(m.global_size == batch for m in one.plan())


def test_order_follows_seed_and_epoch_and_keys_carry_the_epoch() -> None:
    sampler = GlobalBatchSampler(20, 4, seed=2)
    sampler.set_epoch(0)
    first = [int(i) for b in sampler for i in b]
    sampler.set_epoch(1)
    keys = [i for b in sampler for i in b]
    assert sorted(first) == list(range(20)) and first != [int(i) for i in keys]
    assert {k.epoch for k in keys} == {1}
    # torch's DistributedSampler on one process draws the same order (resumed runs agree)
    dist = torch.utils.data.distributed.DistributedSampler(
        range(20), num_replicas=1, rank=0, seed=2
    )
    dist.set_epoch(1)
    assert list(dist) == [int(k) for k in keys]
    key = pickle.loads(pickle.dumps(SampleKey(7, 3)))  # DataLoader workers get keys pickled
    assert (int(key), key.epoch) == (7, 3)
    data = TensorDataset(torch.arange(10) * 2)
    assert int(data[SampleKey(4, 0)][0]) == 8


def test_dropout_mask_depends_on_batch_position_not_process() -> None:
    torch.manual_seed(0)
    x = torch.randn(6, 5)
    ctx = BatchContext(seed=3, epoch=1)
    layer = StepDropout(nn.Dropout(0.5), ctx, layer=0).train()
    ctx.micro = GlobalBatchSampler(6, 6, shuffle=False).plan()[0]
    reference = layer(x)
    assert (reference == 0).any() and (reference != 0).any()
    torch.testing.assert_close(layer(x), reference, rtol=0, atol=0)  # a function, not a stream
    for rank in (0, 1):  # each process holds rows of the global batch: the same masks
        ctx.micro = GlobalBatchSampler(6, 6, world=2, rank=rank, shuffle=False).plan()[0]
        rows = list(ctx.micro.positions)
        torch.testing.assert_close(layer(x[rows]), reference[rows], rtol=0, atol=0)
    ctx.micro = GlobalBatchSampler(6, 6, shuffle=False).plan()[0]
    ctx.epoch = 2  # another epoch, other masks
    assert not torch.equal(layer(x), reference)
    ctx.micro = None  # outside the training loop it is plain dropout
    assert layer.eval()(x) is x


def test_layers_swap_and_restore_share_the_parameters() -> None:
    bn = nn.BatchNorm2d(3)
    drop = nn.Dropout(0.1)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), bn, drop, nn.Sequential(drop))
    layers = GlobalBatchLayers(model, BatchContext(), sync_batchnorm=True, step_dropout=True)
    assert len(layers) == 2
    live = layers.live(bn)
    assert live is model[1] and type(live).__name__ == "GlobalBatchNorm"
    assert live.weight is bn.weight and live.running_mean is bn.running_mean
    assert model[2] is model[3][0] is layers.live(drop)  # a shared module stays shared
    model.eval()
    layers.restore()
    assert model[1] is bn and model[2] is drop and model[3][0] is drop
    assert not bn.training  # the mode the stand-in ended in


def test_augmentation_depends_on_sample_and_epoch_only(tmp_path) -> None:
    """medtl's augmented training view: the same (epoch, index) gives the same image
    whatever was loaded before it (another process, another order)."""
    from medtl.data.datasets import build_datasets
    from medtl.transfer.presets import default_augmentation, default_preprocessing
    from tests.transfer.conftest import write_square_dataset

    root = write_square_dataset(tmp_path / "data")
    data = build_datasets(
        root,
        default_preprocessing("cxr", [32, 32]),
        default_augmentation("cxr", 2),
        seed=1,
    )
    first = [data.train[SampleKey(i, 0)]["image"] for i in (0, 1, 2)]
    again = [data.train[SampleKey(i, 0)]["image"] for i in (2, 1, 0)][::-1]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    later = data.train[SampleKey(0, 1)]["image"]
    assert not torch.equal(later, first[0])
    data.train.set_epoch(1)  # plain indices take the epoch from set_epoch
    assert torch.equal(data.train[0]["image"], later)
