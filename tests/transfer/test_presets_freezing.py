"""Freezing really freezes; parameter groups; modality presets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medtl.transfer.freezing import count_parameters, keep_frozen_bn_in_eval, set_trainable
from medtl.transfer.param_groups import discriminative_groups, head_and_base_groups
from medtl.transfer.presets import (
    build_augmentation,
    build_preprocessing,
    default_augmentation,
    default_preprocessing,
)


def _tiny() -> tuple[nn.Sequential, nn.Linear, list[nn.Module]]:
    stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    block = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    head = nn.Linear(4, 2)
    model = nn.Sequential(stem, block, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    return model, head, [stem, block]


def test_frozen_base_keeps_weights_and_bn_statistics() -> None:
    torch.manual_seed(0)
    model, head, blocks = _tiny()
    set_trainable(blocks, False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(3):
        model.train()
        assert keep_frozen_bn_in_eval(model) == 2
        x = torch.randn(8, 1, 8, 8) * 3 + 2  # statistics far from the running ones
        loss = nn.functional.cross_entropy(model(x), torch.randint(0, 2, (8,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = model.state_dict()
    for key, value in before.items():
        if key.startswith("4."):  # the head
            continue
        assert torch.equal(value, after[key]), key  # weights AND running_mean/var/num_batches
    assert not torch.equal(before["4.weight"], after["4.weight"])
    trainable, total = count_parameters(model)
    assert trainable == head.weight.numel() + head.bias.numel() < total


def test_without_eval_hook_bn_statistics_drift() -> None:
    """The failure the hook prevents: model.train() alone updates running statistics."""
    model, _, blocks = _tiny()
    set_trainable(blocks, False)
    mean_before = blocks[0][1].running_mean.clone()
    model.train()
    model(torch.randn(8, 1, 8, 8) + 5)
    assert not torch.equal(mean_before, blocks[0][1].running_mean)


def test_discriminative_groups_decay_and_skip_frozen() -> None:
    _, head, blocks = _tiny()
    groups = discriminative_groups(head, blocks, lr=1e-3, decay=0.1)
    assert [g["name"] for g in groups] == ["head", "block0", "block1"]
    assert groups[0]["lr"] == pytest.approx(1e-3)
    assert groups[2]["lr"] == pytest.approx(1e-4)  # last block: one step of decay
    assert groups[1]["lr"] == pytest.approx(1e-5)  # stem: two steps
    set_trainable(blocks[0], False)
    names = [g["name"] for g in discriminative_groups(head, blocks, lr=1e-3)]
    assert names == ["head", "block1"]
    groups = head_and_base_groups(head, blocks, head_lr=1e-3, base_lr=1e-5)
    assert [g["name"] for g in groups] == ["head", "base"]
    n_base = sum(p.numel() for p in groups[1]["params"])
    assert n_base == sum(p.numel() for p in blocks[1].parameters())


def test_ct_window_preprocessing_is_exact() -> None:
    spec = default_preprocessing("ct", [4, 4])
    x = np.array([[-2000, -1000, 0, 1000], [3000, 500, -500, 0]] * 2, dtype=np.float32)[None]
    y = build_preprocessing(spec)(x)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32 and y.shape == (1, 4, 4)
    expected = np.clip((x + 1000.0) / 2000.0, 0, 1)
    np.testing.assert_allclose(y.numpy(), expected, atol=1e-6)


def test_mri_percentile_preprocessing_range() -> None:
    spec = default_preprocessing("mri", [8, 8, 8])
    x = np.random.default_rng(0).gamma(2.0, 100.0, (1, 8, 8, 8)).astype(np.float32)
    y = build_preprocessing(spec)(x)
    assert y.shape == (1, 8, 8, 8)
    assert float(y.min()) == 0.0 and float(y.max()) == 1.0


def test_cxr_augmentation_never_flips_left_right_and_replays_with_seed() -> None:
    spec = default_augmentation("cxr", 2)
    assert spec.flip_axes == []
    assert default_augmentation("ct", 3).flip_axes == [0, 1, 2]
    x = torch.rand(1, 32, 32)
    a = build_augmentation(spec, 2, seed=3)
    b = build_augmentation(spec, 2, seed=3)
    outs_a = [a(x) for _ in range(4)]
    outs_b = [b(x) for _ in range(4)]
    for ya, yb in zip(outs_a, outs_b, strict=True):
        assert torch.equal(torch.as_tensor(ya), torch.as_tensor(yb))
    assert any(not torch.equal(torch.as_tensor(y), x) for y in outs_a)


def test_translate_shifts_by_a_fraction_of_the_side_and_needs_the_size() -> None:
    from medtl.transfer.presets import AugmentationSpec

    spec = AugmentationSpec(translate=0.25, prob=1.0)
    with pytest.raises(ValueError, match="spatial_size"):
        build_augmentation(spec, 2, seed=0)
    x = torch.zeros(1, 32, 32)
    x[0, 14:18, 14:18] = 1.0  # a bright square in the centre
    aug = build_augmentation(spec, 2, seed=0, spatial_size=[32, 32])
    shifts = []
    for _ in range(20):
        y = torch.as_tensor(aug(x))[0]
        ys, xs = torch.nonzero(y > 0.5, as_tuple=True)
        shifts.append((float(ys.float().mean()) - 15.5, float(xs.float().mean()) - 15.5))
        assert float(y.sum()) == pytest.approx(16.0, abs=3.0)  # moved, not scaled or cut
    # every shift stays within 25% of the side (8 px), and some are large
    assert all(abs(dy) <= 8.5 and abs(dx) <= 8.5 for dy, dx in shifts)
    assert max(max(abs(dy), abs(dx)) for dy, dx in shifts) > 3.0
