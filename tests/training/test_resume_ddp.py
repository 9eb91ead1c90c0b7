"""Process-level tests: a killed run resumes to the same weights; 2-process gloo DDP = 1 process.

Both spawn real Python processes (a run killed with SIGKILL, and ``torchrun`` with two
ranks on the gloo backend) running the scripts below, written into ``tmp_path``.
"""

from __future__ import annotations

import csv
import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from medtl.training import Trainer, load_checkpoint

RESUME_SCRIPT = r'''
import sys, time
import torch
from torch import nn
from torch.utils.data import TensorDataset
from medtl.training import Callback, Trainer, TrainingConfig


def build():
    torch.manual_seed(123)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(48, 6, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
    cfg = TrainingConfig(max_epochs=3, batch_size=8, lr=0.02, warmup_steps=4,
                         schedule="cosine", seed=5, progress="never")
    return model, TensorDataset(x, y), cfg


class HangInSecondEpoch(Callback):
    """Stop making progress in the middle of epoch 2 so the parent can kill us there."""

    def on_step_end(self, trainer, step, loss):
        if step == 9:  # 6 optimiser steps per epoch: step 9 is inside epoch 2
            print("HANG", flush=True)
            time.sleep(300)


if __name__ == "__main__":
    torch.set_num_threads(1)
    model, ds, cfg = build()
    Trainer(model, nn.CrossEntropyLoss(), cfg, callbacks=[HangInSecondEpoch()]).fit(
        ds, ds, run_dir=sys.argv[1])
'''

DDP_SCRIPT = r"""
import sys
import torch
from torch import nn
from torch.utils.data import TensorDataset
from safetensors.torch import save_file
from medtl.training import Trainer, TrainingConfig, cleanup_distributed


def build():
    torch.manual_seed(11)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(64, 5, generator=g)
    y = (x @ torch.tensor([1.0, -2.0, 0.5, 0.0, 1.5]) > 0).long()
    model = nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 2))
    # amp="none": DDP and one process must agree to 1e-5, which bf16 autocast cannot promise
    cfg = TrainingConfig(max_epochs=2, batch_size=8, optimizer="sgd", lr=0.1, momentum=0.9,
                         shuffle=True, seed=9, progress="never", val_batch_size=6, amp="none")
    return model, TensorDataset(x, y), TensorDataset(x[:27], y[:27]), cfg


if __name__ == "__main__":
    torch.set_num_threads(1)
    model, train, val, cfg = build()
    trainer = Trainer(model, nn.CrossEntropyLoss(), cfg)
    result = trainer.fit(train, val, run_dir=sys.argv[1])
    logits, targets = trainer.predict(val)
    if trainer.dist.is_main:
        tensors = {f"w.{k}": v.contiguous() for k, v in model.state_dict().items()}
        tensors["logits"] = logits
        tensors["targets"] = targets
        tensors["train_loss"] = torch.tensor([r["train_loss"] for r in result.history])
        tensors["world"] = torch.tensor([trainer.dist.world_size])
        save_file(tensors, sys.argv[2])
    cleanup_distributed()
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_killed_run_resumes_to_identical_weights(tmp_path: Path, one_thread) -> None:
    script = tmp_path / "resume_script.py"
    script.write_text(RESUME_SCRIPT)
    run = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(run)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.strip() == "HANG", proc.stderr.read() if proc.stderr else ""
        last = run / "checkpoints" / "last.ckpt"
        deadline = time.monotonic() + 30
        while not last.is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert last.is_file()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    state = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert state["progress"]["epoch"] == 1 and state["progress"]["global_step"] == 6

    build = runpy.run_path(str(script))["build"]
    # Uninterrupted reference run.
    model_ref, ds, cfg = build()
    ref = Trainer(model_ref, torch.nn.CrossEntropyLoss(), cfg).fit(ds, ds, run_dir=tmp_path / "ref")
    # Resume the killed run in a fresh model: everything comes from last.ckpt.
    model_res, ds2, cfg2 = build()
    torch.nn.init.zeros_(model_res[0].weight)  # prove the weights come from the checkpoint
    cfg2.resume = True
    res = Trainer(model_res, torch.nn.CrossEntropyLoss(), cfg2).fit(ds2, ds2, run_dir=run)

    assert res.epochs_run == 3 and ref.epochs_run == 3
    for key, value in model_ref.state_dict().items():
        assert torch.equal(value, model_res.state_dict()[key]), key
    assert [r["train_loss"] for r in res.history] == [r["train_loss"] for r in ref.history]
    with (run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]


def test_two_process_gloo_ddp_matches_single_process(tmp_path: Path, one_thread) -> None:
    script = tmp_path / "ddp_script.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "ddp.safetensors"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        str(tmp_path / "ddp_run"),
        str(out),
    ]
    # A session of its own, so a hang can be ended for the launcher and both ranks at once.
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
        start_new_session=True,
    )  # fmt: skip
    try:
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    ddp = load_file(out)
    assert int(ddp["world"]) == 2

    build = runpy.run_path(str(script))["build"]
    model, train, val, cfg = build()
    trainer = Trainer(model, torch.nn.CrossEntropyLoss(), cfg)
    result = trainer.fit(train, val, run_dir=tmp_path / "single")
    logits, targets = trainer.predict(val)

    for key, value in model.state_dict().items():
        torch.testing.assert_close(ddp[f"w.{key}"], value, atol=1e-5, rtol=0)
    # Gathered predictions come back in dataset order, padding removed.
    assert ddp["logits"].shape == (27, 2)
    assert torch.equal(ddp["targets"], targets)
    torch.testing.assert_close(ddp["logits"], logits, atol=1e-5, rtol=0)
    # Train loss is all-reduced over ranks: it equals the single-process mean.
    torch.testing.assert_close(
        ddp["train_loss"],
        torch.tensor([r["train_loss"] for r in result.history]),
        atol=1e-5,
        rtol=0,
    )
    assert (tmp_path / "ddp_run" / "checkpoints" / "last.ckpt").is_file()
