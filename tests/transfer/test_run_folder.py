"""Run folders are never silently mixed (issue 26): finetune, learning curves and report /
package refuse results of another config, data or weights, naming the difference.

Every run here is a real tiny training (smallcnn on 32 px PNG squares, one epoch).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from typer.testing import CliRunner

from medtl.artifacts import LearningCurves, ModelCard, RunSummary
from medtl.artifacts.run import RunInputs, file_sha256
from medtl.cli import app


def _config(dataset: Path, strategy: str = "scratch", head_lr: float = 0.002, **extra) -> dict:
    return {
        "name": "mixing",
        "data": {"dataset": str(dataset), "modality": "cxr", "spatial_size": [32, 32]},
        "model": {"backbone": "smallcnn"},
        "strategy": {"name": strategy, "head_epochs": 1, "finetune_epochs": 0, "head_lr": head_lr},
        "training": {"batch_size": 16, "amp": "none", "progress": "never", "seed": 0},
        **extra,
    }


def _write(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _ok(result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def _refused(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.output


def test_finetune_refuses_another_config_and_package_never_ships_another_runs_report(
    tmp_path, square_dataset
) -> None:
    runner = CliRunner()
    a = _write(tmp_path / "a.yaml", _config(square_dataset))
    b = _write(tmp_path / "b.yaml", _config(square_dataset, head_lr=0.01))
    run = tmp_path / "run"
    _ok(runner.invoke(app, ["finetune", str(a), "--run-dir", str(run), "--no-evaluate"]))
    _ok(runner.invoke(app, ["evaluate", str(run), "--bootstrap", "50"]))
    _ok(runner.invoke(app, ["report", str(run), "--no-pdf", "--no-saliency"]))
    summary_a = RunSummary.read(run / "summary.json")

    # B into A's folder: refused, naming the hash and the changed key; nothing written
    out = _refused(runner.invoke(app, ["finetune", str(b), "--run-dir", str(run)]))
    assert "config hash" in out and "strategy.head_lr: 0.002 -> 0.01" in out
    assert "--overwrite" in out
    assert RunSummary.read(run / "summary.json").config_hash == summary_a.config_hash
    assert RunInputs.read(run / "run_inputs.json").config_hash == summary_a.config_hash
    out = _refused(runner.invoke(app, ["finetune", str(b), "--run-dir", str(run), "--resume"]))
    assert "--resume continues a run of the same config" in out

    # --overwrite moves A aside (nothing deleted) and trains B in a fresh folder
    args = ["finetune", str(b), "--run-dir", str(run), "--overwrite", "--no-evaluate"]
    _ok(runner.invoke(app, args))
    (aside,) = tmp_path.glob("run.replaced-*")
    assert RunSummary.read(aside / "summary.json").config_hash == summary_a.config_hash
    assert (aside / "report.html").is_file() and not (run / "report.html").exists()
    summary_b = RunSummary.read(run / "summary.json")
    assert summary_b.config_hash != summary_a.config_hash

    # A's evaluation in B's folder: the report refuses it
    shutil.copy(aside / "evaluation.json", run / "evaluation.json")
    out = _refused(runner.invoke(app, ["report", str(run), "--no-pdf", "--no-saliency"]))
    assert "evaluation.json was built from other results" in out
    assert "predictions sha256" in out and "medtl evaluate" in out
    _ok(runner.invoke(app, ["evaluate", str(run), "--bootstrap", "50"]))

    # A's report copied into B's folder: the package refuses to ship it
    shutil.copy(aside / "report.html", run / "report.html")
    out = _refused(runner.invoke(app, ["package", str(run), "--no-register"]))
    assert "report.html was built from other results" in out
    assert "config hash" in out and "trained weights sha256" in out and "--no-report" in out
    assert not (run / "package").exists()
    (run / "report.html").write_text("<html><body>hand-made</body></html>")
    out = _refused(runner.invoke(app, ["package", str(run), "--no-register"]))
    assert "does not record which run it was built from" in out

    # rebuilt from B, it ships; the card records what it was built from
    _ok(runner.invoke(app, ["report", str(run), "--no-pdf", "--no-saliency"]))
    _ok(runner.invoke(app, ["package", str(run), "--no-register"]))
    card = ModelCard.read(run / "package" / "model.json")
    assert card.built_from is not None
    assert card.built_from.config_hash == summary_b.config_hash
    assert card.built_from.model_sha256 == file_sha256(run / "model.safetensors")
    assert card.built_from.predictions_sha256 == file_sha256(run / "predictions.csv")
    assert card.config_hash == summary_b.config_hash

    # a folder whose summary is not of the run started there last is refused too
    other = RunInputs.read(run / "run_inputs.json").model_copy(update={"config_hash": "0" * 16})
    other.write(run / "run_inputs.json")
    out = _refused(runner.invoke(app, ["report", str(run), "--no-pdf", "--no-saliency"]))
    assert "mixes two runs" in out


def test_same_config_passes_the_guard(square_run) -> None:
    from medtl.transfer.experiment import ExperimentConfig
    from medtl.transfer.run_folder import expected_inputs, guard_run_folder

    config = ExperimentConfig.model_validate_json(
        ExperimentConfig.model_validate(
            yaml.safe_load((square_run / "experiment.yaml").read_text())
        ).model_dump_json()
    )
    # progress bars and loggers do not enter the hash: the same run
    quiet = config.model_copy(
        update={"training": config.training.model_copy(update={"progress": "always"})}
    )
    expected = expected_inputs(quiet)
    assert expected == RunInputs.read(square_run / "run_inputs.json")
    assert guard_run_folder(square_run, quiet, expected, resume=True, overwrite=False) is None
    assert guard_run_folder(square_run, quiet, expected, resume=False, overwrite=False) is None


def test_learning_curves_reuse_only_matching_points(tmp_path, square_dataset) -> None:
    runner = CliRunner()
    a = _write(tmp_path / "a.yaml", _config(square_dataset, "frozen_base"))
    b = _write(tmp_path / "b.yaml", _config(square_dataset, "frozen_base", head_lr=0.01))
    out_dir = tmp_path / "curves"
    common = ["--out", str(out_dir), "--seeds", "1", "--resamples", "50"]
    out = _ok(runner.invoke(app, ["learning-curves", str(a), "--fractions", "1", *common]))
    assert "0 points reused, 2 recomputed" in out
    from medtl.transfer.experiment import load_config

    curves = LearningCurves.read(out_dir / "learning_curves.json")
    assert curves.config_hash == load_config(a).config_hash()
    assert curves.data_hash == RunSummary.read(out_dir / "scratch_f1_s0" / "summary.json").data_hash
    before = [p.auroc for p in curves.points]

    # head_lr changed: the old points are not passed off as the new results
    out = _refused(runner.invoke(app, ["learning-curves", str(b), "--fractions", "1", *common]))
    assert "2 of 2 points" in out and "strategy.head_lr: 0.002 -> 0.01" in out
    assert [p.auroc for p in LearningCurves.read(out_dir / "learning_curves.json").points] == (
        before
    )
    args = ["learning-curves", str(b), "--fractions", "1", *common, "--overwrite"]
    out = _ok(runner.invoke(app, args))
    assert "0 points reused, 2 recomputed (old results moved to" in out
    (aside,) = tmp_path.glob("curves.replaced-*")
    assert {p.name for p in aside.iterdir()} == {"frozen_base_f1_s0", "scratch_f1_s0"}
    assert LearningCurves.read(out_dir / "learning_curves.json").config_hash == (
        load_config(b).config_hash()
    )

    # a new fraction: the matching points are reused, the new ones computed
    args = ["learning-curves", str(b), "--fractions", "0.5,1", *common]
    out = _ok(runner.invoke(app, args))
    assert "2 points reused, 2 recomputed" in out
