"""Two gloo processes train the model one process trains (same effective batch).

The models here have what made DDP runs differ: BatchNorm (statistics per process),
dropout (masks per process), augmentation (drawn from each process's stream) and a last
batch that does not split evenly (torch's ``DistributedSampler`` pads it with repeats).
Each test runs ``torchrun --nproc_per_node=2`` in a session of its own and the same work
in this process, and compares weights and predictions.
"""

from __future__ import annotations

import csv
import os
import runpy
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from medtl.training import Trainer
from tests.training.test_resume_ddp import _env

ENGINE_SCRIPT = r"""
import sys
import torch
from torch import nn
from safetensors.torch import save_file
from medtl.training import Trainer, TrainingConfig, cleanup_distributed
from medtl.training.seed import sample_seed


class Augmented(torch.utils.data.Dataset):
    '''Fixed images plus noise drawn from the sample's own (seed, epoch, index) seed.'''

    def __init__(self):
        g = torch.Generator().manual_seed(3)
        self.x = torch.randn(29, 1, 6, 6, generator=g)
        self.y = (self.x[:, 0, 2:4, 2:4].mean((1, 2)) > 0).long()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, key):
        gen = torch.Generator().manual_seed(sample_seed(5, getattr(key, "epoch", 0), int(key)))
        return self.x[key] + 0.3 * torch.randn(1, 6, 6, generator=gen), self.y[key]


def build():
    torch.manual_seed(11)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout2d(0.2),
        nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(6, 2),
    )
    # 29 samples in global batches of 8 (two micro-steps): the last step holds 5, which two
    # processes split 3/2 (rank 1 runs a filler micro-batch); amp off: float32 on both sides
    cfg = TrainingConfig(max_epochs=2, batch_size=8, grad_accum_steps=2, optimizer="sgd",
                         lr=0.1, momentum=0.9, seed=9, progress="never", amp="none",
                         monitor="train_loss")
    return model, Augmented(), cfg


if __name__ == "__main__":
    torch.set_num_threads(1)
    model, train, cfg = build()
    trainer = Trainer(model, nn.CrossEntropyLoss(), cfg)
    result = trainer.fit(train, run_dir=sys.argv[1])
    if trainer.dist.is_main:
        tensors = {f"w.{k}": v.contiguous() for k, v in model.state_dict().items()}
        tensors["train_loss"] = torch.tensor([r["train_loss"] for r in result.history])
        tensors["world"] = torch.tensor([trainer.dist.world_size])
        tensors["kinds"] = torch.tensor([type(m) is nn.BatchNorm2d for m in model.modules()])
        save_file(tensors, sys.argv[2])
    cleanup_distributed()
"""


def _torchrun(args: list[str], timeout: float = 240) -> None:
    """Run ``torchrun --standalone --nproc_per_node=2 ARGS``; fail with its stderr."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    # a session of its own, so a hang can be ended for the launcher and both ranks at once
    proc = subprocess.Popen(
        cmd + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
        start_new_session=True,
    )  # fmt: skip
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err[-3000:]


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_batchnorm_dropout_augmentation_and_uneven_tail_match(tmp_path: Path, one_thread) -> None:
    script = tmp_path / "engine_script.py"
    script.write_text(ENGINE_SCRIPT)
    out = tmp_path / "ddp.safetensors"
    _torchrun([str(script), str(tmp_path / "ddp_run"), str(out)])
    ddp = load_file(out)
    assert int(ddp["world"]) == 2

    model, train, cfg = runpy.run_path(str(script))["build"]()
    result = Trainer(model, torch.nn.CrossEntropyLoss(), cfg).fit(
        train, run_dir=tmp_path / "single"
    )
    # the original BatchNorm layers are back after the fit, holding the trained statistics
    assert ddp["kinds"].tolist() == [type(m) is torch.nn.BatchNorm2d for m in model.modules()]
    for key, value in model.state_dict().items():
        diff = (ddp[f"w.{key}"].double() - value.double()).abs().max().item()
        assert diff < 1e-4, (key, diff)
    torch.testing.assert_close(
        ddp["train_loss"],
        torch.tensor([r["train_loss"] for r in result.history]),
        atol=1e-5,
        rtol=0,
    )


def _faint_squares(root: Path) -> Path:
    """32 patients x 2 PNGs, 16 px; positives carry a faint 5 px square (AUROC well below 1)."""
    from medtl.data.manifest import Manifest, ManifestRecord

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    splits = ["train"] * 16 + ["val"] * 4 + ["calibration"] * 4 + ["test"] * 8
    records = []
    for p, split in enumerate(splits):
        for k in range(2):
            label = (p + k) % 2
            img = rng.normal(1000, 80, (16, 16))
            if label:
                y0, x0 = rng.integers(2, 10, 2)
                img[y0 : y0 + 5, x0 : x0 + 5] += 150
            rel = f"images/p{p:03d}_{k}.png"
            Image.fromarray(img.astype(np.uint16)).save(root / rel)
            records.append(
                ManifestRecord(
                    image=rel, label=label, patient_id=f"P{p:03d}", split=split,
                    modality="OT", task="square",
                )
            )  # fmt: skip
    Manifest(
        name="faint",
        task="square",
        label_names=["absent", "present"],
        simulated=True,
        description="faint squares for the DDP test",
        records=records,
    ).save(root)
    return root


def _test_auroc(run: Path) -> tuple[float, np.ndarray]:
    from sklearn.metrics import roc_auc_score

    with (run / "predictions.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == "test"]
    logits = np.array([float(r["logit"]) for r in rows])
    return float(roc_auc_score([int(r["label"]) for r in rows], logits)), logits


def test_torchrun_finetune_matches_one_process(tmp_path: Path, one_thread, monkeypatch) -> None:
    """``torchrun -m medtl.cli finetune`` (smallcnn: BatchNorm, head dropout, cxr
    augmentation; 32 training images in batches of 6) gives the one-process model."""
    from medtl.transfer.experiment import load_config, run_experiment

    monkeypatch.setenv("MEDTL_HOME", str(tmp_path / "home"))
    config = {
        "name": "ddp-check",
        "data": {"dataset": str(_faint_squares(tmp_path / "data")), "modality": "cxr",
                 "spatial_size": [16, 16]},
        "model": {"backbone": "smallcnn", "options": {"widths": [8, 16]}},
        "strategy": {"name": "scratch", "head_epochs": 2, "finetune_epochs": 1,
                     "head_lr": 0.01},
        "training": {"batch_size": 6, "amp": "none", "progress": "never", "monitor": "auroc",
                     "mode": "max", "seed": 0, "device": "cpu"},
    }  # fmt: skip
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config))
    ddp_run = tmp_path / "two"
    _torchrun(["-m", "medtl.cli", "finetune", str(path), "--run-dir", str(ddp_run),
               "--no-evaluate"])  # fmt: skip
    one_run = run_experiment(load_config(path), tmp_path / "one")

    auroc_one, logits_one = _test_auroc(one_run)
    auroc_two, logits_two = _test_auroc(ddp_run)
    assert 0.6 < auroc_one < 1.0  # a task the model half learns: a difference would show
    assert abs(auroc_two - auroc_one) < 0.01
    assert np.abs(logits_two - logits_one).max() < 1e-3
    one, two = load_file(one_run / "model.safetensors"), load_file(ddp_run / "model.safetensors")
    for key, value in one.items():
        diff = (two[key].double() - value.double()).abs().max().item()
        assert diff < 1e-4, (key, diff)
