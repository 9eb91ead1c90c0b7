"""Every run records its provenance (issue 26): starting weights (file, sha256, layout, load
report), the source its weights state on their own card (the config's text only when they
carry none, labelled so), versions, commit, device, precision, threads, CPU capability; and
settings that cannot apply are refused or warned with the reason.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import torch
import yaml
from typer.testing import CliRunner

from medtl.artifacts import RunSummary
from medtl.artifacts.run import SourceDescription

REPO = Path(__file__).resolve().parents[2]


def _config(dataset: Path, weights: Path | None, **extra):
    from medtl.transfer.experiment import ExperimentConfig

    return ExperimentConfig.model_validate(
        {
            "name": "prov",
            "source_domain": "template domain text",
            "source_task": "template task text",
            "data": {"dataset": str(dataset), "modality": "cxr", "spatial_size": [32, 32]},
            "model": {"backbone": "smallcnn", "weights": str(weights) if weights else None},
            "strategy": {"name": "frozen_base", "head_epochs": 1, "finetune_epochs": 0},
            "training": {"batch_size": 16, "amp": "none", "progress": "never"},
            **extra,
        }
    )


def _source_model():
    from medtl.models import create_backbone

    torch.manual_seed(1)
    return create_backbone("smallcnn", spatial_dims=2, in_channels=1, num_outputs=1)


def _train(config, run: Path) -> RunSummary:
    from medtl.evaluation.run import evaluate_run
    from medtl.transfer.experiment import run_experiment

    torch.set_num_threads(1)
    run_experiment(config, run)
    evaluate_run(run, n_resamples=50)
    return RunSummary.read(run / "summary.json")


def test_weights_with_their_own_card_state_the_source_and_everything_is_recorded(
    tmp_path, square_dataset
) -> None:
    from medtl.models import ModelCard, save_package
    from medtl.reports.card import build_card
    from medtl.reports.report import write_report

    package = save_package(
        _source_model(),
        ModelCard(name="src", source_domain="card domain", source_task="card task"),
        tmp_path / "src",
    )
    summary = _train(_config(square_dataset, package), tmp_path / "run")

    assert summary.source == SourceDescription(
        domain="card domain", task="card task", stated_by="weights card"
    )
    assert any("template domain text" in w and "card" in w for w in summary.config_warnings)
    weights = summary.starting_weights
    assert weights is not None
    assert weights.file == "weights.safetensors" and weights.package == "src@0.1.0"
    expected = hashlib.sha256((package / "weights.safetensors").read_bytes()).hexdigest()
    assert weights.sha256 == expected and weights.has_card
    assert weights.format == "native" and weights.layout == "medtl native"
    assert weights.loaded_fraction == 1.0 and "loaded" in weights.load_report
    assert summary.backbone.source_domain == "card domain"

    env = summary.environment
    assert env is not None
    import monai
    import numpy
    import pydicom

    assert env.versions["torch"] == torch.__version__
    assert env.versions["monai"] == monai.__version__
    assert env.versions["numpy"] == numpy.__version__
    assert env.versions["pydicom"] == pydicom.__version__
    assert {"medtl", "python"} <= set(env.versions)
    assert env.threads == torch.get_num_threads() == 1
    assert env.cpu_capability == torch.backends.cpu.get_cpu_capability()
    assert env.device == "cpu" and env.precision == "fp32" and env.world_size == 1
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert env.git_commit == head and env.git_dirty is not None

    card = build_card(tmp_path / "run")
    assert card.source_domain == "card domain" and card.source_task == "card task"
    assert card.source_stated_by == "weights card"
    assert card.starting_weights == weights and card.environment == env
    paths = write_report(tmp_path / "run", pdf=False, saliency=False)
    html = paths["html"].read_text()
    assert "as stated by the starting weights' own model card" in html
    assert expected in html and "src@0.1.0" in html


def test_weights_without_a_card_keep_the_configs_text_labelled_as_such(
    tmp_path, square_dataset
) -> None:
    from medtl.reports.card import build_card
    from medtl.reports.report import write_report

    plain = tmp_path / "plain.pt"
    torch.save(_source_model().state_dict(), plain)
    summary = _train(_config(square_dataset, plain), tmp_path / "run")
    assert summary.source == SourceDescription(
        domain="template domain text", task="template task text", stated_by="experiment config"
    )
    weights = summary.starting_weights
    assert weights is not None and not weights.has_card and weights.package is None
    assert (
        weights.file == "plain.pt"
        and weights.sha256 == hashlib.sha256(plain.read_bytes()).hexdigest()
    )
    card = build_card(tmp_path / "run")
    assert card.source_domain == "template domain text"
    assert card.source_stated_by == "experiment config"
    html = write_report(tmp_path / "run", pdf=False, saliency=False)["html"].read_text()
    assert "as stated by the experiment config (the starting weights carry no model card" in html


def test_group_batches_by_an_attribute_no_record_has_is_refused(tmp_path, square_dataset) -> None:
    from medtl.cli import app

    config = _config(square_dataset, None).model_dump(mode="json")
    config["data"]["group_batches_by"] = "twin_pair"
    path = tmp_path / "twins.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["finetune", str(path), "--run-dir", str(run)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    line = result.output.strip()
    assert "group_batches_by" in line and "'twin_pair'" in line
    assert "no training record has" in line and "site" in line  # what the records carry
    assert not run.exists()  # refused before anything is written


def test_git_state_outside_a_checkout_is_none(tmp_path) -> None:
    from medtl.training.environment import git_state, run_environment

    assert git_state(tmp_path) == (None, None)
    env = run_environment("cpu", "none")
    assert env.precision == "fp32" and env.threads == torch.get_num_threads()
