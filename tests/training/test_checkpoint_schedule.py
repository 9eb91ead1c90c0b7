"""Atomic checkpoints, safe loading, RNG snapshots, warm-up schedules, device and AMP choice."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from medtl.training import checkpoint as ckpt
from medtl.training import precision
from medtl.training.config import TrainingConfig
from medtl.training.schedule import lr_factor, make_scheduler
from medtl.training.seed import rng_state, seed_everything, set_rng_state


def test_partial_write_never_replaces_last(tmp_path: Path, monkeypatch) -> None:
    last = tmp_path / "checkpoints" / ckpt.LAST
    ckpt.save_checkpoint({"model": {"w": torch.ones(3)}, "epoch": 1}, last)
    before = last.read_bytes()

    real_save = torch.save

    def dies_midway(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a checkpoint")
        handle.flush()
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint({"model": {"w": torch.zeros(3)}, "epoch": 2}, last)
    monkeypatch.setattr(torch, "save", real_save)

    assert last.read_bytes() == before
    assert ckpt.stale_temp_files(last.parent) == []  # the temp file was removed
    assert ckpt.load_checkpoint(last)["epoch"] == 1


def test_a_killed_writer_leaves_only_a_temp_file(tmp_path: Path) -> None:
    last = tmp_path / ckpt.LAST
    ckpt.save_checkpoint({"epoch": 1}, last)
    torn = tmp_path / f".{ckpt.LAST}.abc123.tmp"  # what SIGKILL during a write leaves
    torn.write_bytes(b"garbage")
    assert ckpt.load_checkpoint(last)["epoch"] == 1
    assert ckpt.stale_temp_files(tmp_path) == [torn]


class Evil:
    """An arbitrary class: unpickling it would run code paths weights_only forbids."""


def test_loading_is_weights_only(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ckpt"
    torch.save({"format": ckpt.FORMAT, "obj": Evil()}, bad)
    with pytest.raises(ckpt.CheckpointError, match="cannot read"):
        ckpt.load_checkpoint(bad)
    other = tmp_path / "other.ckpt"
    torch.save({"w": torch.ones(1)}, other)
    with pytest.raises(ckpt.CheckpointError, match="not a"):
        ckpt.load_checkpoint(other)
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint"):
        ckpt.load_checkpoint(tmp_path / "missing.ckpt")


def test_rng_state_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    seed_everything(42)
    random.random(), np.random.rand(), torch.rand(1)
    ckpt.save_checkpoint({"rng": rng_state()}, tmp_path / "r.ckpt")
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    seed_everything(7)
    set_rng_state(ckpt.load_checkpoint(tmp_path / "r.ckpt")["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


def test_warmup_then_cosine_values() -> None:
    kw = {"warmup_steps": 4, "total_steps": 12, "schedule": "cosine"}
    assert [lr_factor(s, **kw) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, **kw) == 1.0
    assert lr_factor(8, **kw) == pytest.approx(0.5)  # half-way through the cosine
    assert lr_factor(12, **kw) == pytest.approx(0.0, abs=1e-12)
    floor = lr_factor(12, **kw, min_lr_ratio=0.1)
    assert floor == pytest.approx(0.1)
    step = {"warmup_steps": 2, "total_steps": 20, "schedule": "step", "step_size": 3, "gamma": 0.5}
    assert [lr_factor(s, **step) for s in range(2, 9)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]


def test_scheduler_applies_to_each_group_per_step() -> None:
    w1, w2 = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(1))
    opt = torch.optim.SGD([{"params": [w1], "lr": 0.1}, {"params": [w2], "lr": 0.01}], lr=1.0)
    cfg = TrainingConfig(max_epochs=2, warmup_epochs=0.5, schedule="cosine")
    sched = make_scheduler(opt, cfg, steps_per_epoch=4)  # 2 warm-up steps of 8
    seen = []
    for _ in range(8):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert seen[0] == pytest.approx([0.05, 0.005])
    assert seen[1] == pytest.approx([0.1, 0.01])
    assert seen[2] == pytest.approx([0.1, 0.01])
    expected = 0.1 * 0.5 * (1 + math.cos(math.pi * 5 / 6))
    assert seen[7][0] == pytest.approx(expected)


def test_cpu_bf16_detection_reads_cpuinfo_flags(tmp_path: Path, monkeypatch) -> None:
    fake = tmp_path / "cpuinfo"
    monkeypatch.setattr(precision, "_CPUINFO", fake)
    monkeypatch.setattr(precision, "_CPUINFO_OVERRIDE", True)
    cpu = torch.device("cpu")
    onednn = torch.backends.mkldnn.is_available()

    def probe(flags: str) -> None:
        fake.write_text(f"processor : 0\nflags : {flags}\n")
        precision.cpu_supports_bf16.cache_clear()
        precision.cpu_bf16_is_fast.cache_clear()

    try:
        probe("fpu avx2 avx512f")
        assert precision.cpu_supports_bf16() is False
        assert precision.resolve_amp("auto", cpu) is None
        # AVX512-BF16 without AMX: bf16 exists but measured slower than fp32, so auto = fp32
        probe("fpu avx2 avx512f avx512_bf16")
        assert precision.cpu_supports_bf16() is onednn
        assert precision.cpu_bf16_is_fast() is False
        assert precision.resolve_amp("auto", cpu) is None
        probe("fpu amx_bf16 amx_tile")
        assert precision.cpu_bf16_is_fast() is onednn
        assert precision.resolve_amp("auto", cpu) == (torch.bfloat16 if onednn else None)
    finally:
        precision.cpu_supports_bf16.cache_clear()
        precision.cpu_bf16_is_fast.cache_clear()


def test_cpu_flags_come_from_torchs_probe_on_this_machine() -> None:
    caps = torch._C._cpu._get_cpu_capability()  # the dict behind torch.backends.cpu
    expected = bool(caps.get("amx_bf16")) and torch.backends.mkldnn.is_available()
    precision.cpu_bf16_is_fast.cache_clear()
    try:
        assert precision.cpu_bf16_is_fast() is expected
    finally:
        precision.cpu_bf16_is_fast.cache_clear()
    cpu = torch.device("cpu")
    assert precision.resolve_amp("bf16", cpu) == torch.bfloat16
    assert precision.resolve_amp("none", cpu) is None
    with pytest.raises(ValueError, match="CUDA"):
        precision.resolve_amp("fp16", cpu)
    assert not precision.make_grad_scaler(cpu, torch.bfloat16).is_enabled()


def test_device_and_memory_format() -> None:
    assert precision.select_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            precision.select_device("cuda")
        assert precision.select_device("auto").type in ("cpu", "mps")
    x2 = precision.to_memory_format(torch.zeros(2, 3, 4, 5))
    x3 = precision.to_memory_format(torch.zeros(2, 3, 4, 5, 6))
    assert x2.is_contiguous(memory_format=torch.channels_last)
    assert x3.is_contiguous(memory_format=torch.channels_last_3d)
    conv3 = torch.nn.Conv3d(3, 4, 3)
    precision.model_to_channels_last(conv3, 5)
    assert conv3.weight.is_contiguous(memory_format=torch.channels_last_3d)
