"""The demo's ct_foundation stage runs the study of configs/ct_foundation.yaml."""

from __future__ import annotations

from pathlib import Path

import yaml

from medtl.demo.foundation import foundation_study
from medtl.demo.plans import PLANS
from medtl.transfer.arms import ArmsConfig, arm_config

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "ct_foundation.yaml"


def _shape(study: dict) -> dict:
    """What must agree: arm kinds, layers, backbones, strategies (not paths or budgets)."""
    out = {}
    for name, arm in study["arms"].items():
        strategy = dict(arm.get("strategy", {}))
        for budget in ("head_epochs", "finetune_epochs", "head_lr"):
            strategy.pop(budget, None)
        out[name] = (
            arm.get("kind", "experiment"),
            arm.get("layer"),
            arm.get("model", {}).get("backbone"),
            strategy,
        )
    return out


def test_demo_study_matches_the_example_config(tmp_path):
    example = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    demo = foundation_study(PLANS["full"], tmp_path, "mri-source-3d")
    assert _shape(demo) == _shape(example)
    assert demo["fractions"] == example["fractions"] == [0.05, 0.10, 0.25, 1.0]
    for key in ("preset", "spatial_size", "modality", "augmentation"):
        assert demo["base"]["data"][key] == example["base"]["data"][key], key
    study = ArmsConfig.model_validate(demo)
    staged = arm_config(study, "astra_staged")
    assert staged.strategy.unfreeze_blocks == 1 and staged.model.backbone == "i3resnet152"
    assert arm_config(study, "astra_layer3").model.options["last_stage"] == "layer3"


def test_without_a_3d_mri_source_that_arm_is_left_out(tmp_path):
    demo = foundation_study(PLANS["tiny"], tmp_path, None)
    assert "mri3d" not in demo["arms"] and demo["fractions"] == [0.5, 1.0]
    assert ArmsConfig.model_validate(demo).baseline == "scratch"


def test_stage_only_with_the_flag():
    from typer.testing import CliRunner

    from medtl.cli import app

    result = CliRunner().invoke(app, ["demo", "--size", "tiny", "--force", "ct_foundation"])
    assert result.exit_code == 2 and "unknown stage" in result.output
