"""`medtl finetune CONFIG --dry-run`: the model built on the meta device, the memory of one
training step estimated and printed, nothing trained; configs/astra_finetune.yaml runs it."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from medtl.transfer.experiment import ExperimentConfig, load_config
from medtl.transfer.memory import estimate_step

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
_TOTAL = re.compile(r"estimated memory for one training step \(fp32\): .* \((\d+) bytes\)")


@pytest.fixture
def root_logging():
    """`medtl`'s root callback reconfigures logging; put it back for the tests after this."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _tiny(batch: int = 2, ckpt: bool = True, strategy: str = "full") -> dict:
    """A tiny astra-like config: the i3resnet152 geometry at width 4, one block per stage."""
    return {
        "name": "tiny_astra",
        "data": {"dataset": "no_data_needed", "modality": "ct", "preset": "merlin",
                 "spatial_size": [32, 32, 16]},
        "model": {"backbone": "i3resnet152",
                  "options": {"width": 4, "layers": [1, 1, 2, 1], "grad_checkpointing": ckpt}},
        "strategy": {"name": strategy, "head_epochs": 1, "finetune_epochs": 1},
        "training": {"batch_size": batch, "amp": "auto"},
    }  # fmt: skip


def _dry_run(tmp_path: Path, raw: dict) -> tuple[int, str]:
    from medtl.cli import app

    path = tmp_path / f"{raw['name']}_{raw['training']['batch_size']}.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["finetune", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    match = _TOTAL.search(result.output)
    assert match, result.output
    return int(match.group(1)), result.output


def test_dry_run_prints_an_estimate_that_grows_with_the_batch(root_logging, tmp_path):
    runs = Path(__import__("os").environ["MEDTL_HOME"]) / "runs"
    before = sorted(runs.rglob("*")) if runs.exists() else []
    small, text = _dry_run(tmp_path, _tiny(batch=2))
    large, _ = _dry_run(tmp_path, _tiny(batch=4))
    assert small > 0 and large > small
    assert "nothing is trained" in text and "gradient checkpointing on" in text
    assert "starting weights: none" in text  # no model.weights: random start, said so
    # the model on the meta device: nothing trained, no run folder written
    assert (sorted(runs.rglob("*")) if runs.exists() else []) == before


def test_the_estimate_follows_the_network():
    def est(**kw):
        return estimate_step(ExperimentConfig.model_validate(_tiny(**kw)))

    plain, ckpt = est(ckpt=False), est(ckpt=True)
    # without checkpointing the saved activations are linear in the batch (BatchNorm's
    # per-channel statistics are the part that does not grow)
    four, six = est(ckpt=False, batch=4), est(ckpt=False, batch=6)
    step = four.activation_bytes - plain.activation_bytes
    assert six.activation_bytes - four.activation_bytes == step
    assert step > 0.9 * plain.activation_bytes
    # checkpointing keeps block inputs only and pays one more forward
    assert ckpt.activation_bytes < plain.activation_bytes
    assert ckpt.step_flops * 3 == plain.step_flops * 4
    assert plain.activation_bytes_bf16 < plain.activation_bytes
    # the parameters are the real network's, and a frozen trunk needs neither its gradients
    # nor the activations of its backward pass
    from medtl.models import create_backbone

    real = create_backbone("i3resnet152", 3, options={"width": 4, "layers": [1, 1, 2, 1]})
    assert plain.parameters == sum(p.numel() for p in real.parameters())
    frozen = est(ckpt=False, strategy="frozen_base")
    head = sum(p.numel() for p in real.head.parameters())
    assert frozen.trainable == head and plain.trainable == plain.parameters
    assert frozen.activation_bytes < plain.activation_bytes / 10
    assert frozen.optimizer_bytes == 8 * head


def test_astra_finetune_config(root_logging, tmp_path):
    """The shipped config: whole network, gradient checkpointing, bf16 on GPU, the user's
    own manifest; its dry run estimates the real 224 x 224 x 160 network per GPU."""
    cfg = load_config(CONFIGS / "astra_finetune.yaml")
    assert cfg.model.backbone == "i3resnet152" and str(cfg.model.weights).endswith("astra-ct")
    assert cfg.model.options["grad_checkpointing"] is True
    assert str(cfg.strategy.name) == "full" and cfg.training.amp in ("auto", "bf16")
    assert cfg.data.preset == "merlin" and cfg.data.spatial_size == [224, 224, 160]
    est = estimate_step(cfg)
    assert est.input_shape == (2, 1, 224, 224, 160)  # 16 / 8 accumulation steps
    assert 100e6 < est.parameters < 130e6
    assert 3e9 < est.total_bytes_bf16 < est.total_bytes < 20e9
    total, text = _dry_run_file(CONFIGS / "astra_finetune.yaml")
    assert total == est.total_bytes
    # no astra-ct in this test's MEDTL_HOME: the dry run says how to get it
    assert "medtl models fetch astra-ct" in text


def _dry_run_file(path: Path) -> tuple[int, str]:
    from medtl.cli import app

    result = CliRunner().invoke(app, ["finetune", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    match = _TOTAL.search(result.output)
    assert match, result.output
    return int(match.group(1)), result.output


torch.set_num_threads(1)
