"""Learning curves run every point once, reuse finished runs, and produce a verdict."""

from __future__ import annotations

from medtl.artifacts import LearningCurves
from medtl.transfer.experiment import ExperimentConfig
from medtl.transfer.learning_curves import point_dir, run_learning_curves
from tests.artifacts.schema_check import validate_json_file


def test_learning_curves_points_summary_and_resume(tmp_path, square_dataset) -> None:
    config = ExperimentConfig.model_validate(
        {
            "name": "lc",
            "data": {"dataset": str(square_dataset), "modality": "cxr", "spatial_size": [32, 32]},
            "model": {"backbone": "smallcnn"},
            "strategy": {
                "name": "frozen_base",
                "head_epochs": 2,
                "finetune_epochs": 1,
                "head_lr": 0.01,
            },
            "training": {
                "batch_size": 16,
                "amp": "none",
                "progress": "never",
                "monitor": "auroc",
                "mode": "max",
            },
        }
    )
    out = run_learning_curves(
        config, tmp_path / "lc", fractions=(0.5, 1.0), seeds=1, n_resamples=100, progress=False
    )
    curves = LearningCurves.read(tmp_path / "lc" / "learning_curves.json")
    assert curves.schema_version == LearningCurves.SCHEMA_VERSION
    points = [p.model_dump() for p in curves.points]
    assert {(p["strategy"], p["fraction"]) for p in points} == {
        ("frozen_base", 0.5),
        ("frozen_base", 1.0),
        ("scratch", 0.5),
        ("scratch", 1.0),
    }
    half = [p for p in points if p["fraction"] == 0.5]
    full = [p for p in points if p["fraction"] == 1.0]
    assert all(h["n_train"] < f["n_train"] for h, f in zip(half, full, strict=True))
    # 4 test patients: too few for a verdict (needs >= 10), and the run says so.
    assert out["verdict"]["verdict"] == "not assessable"
    assert out["verdict"]["n_patients"] == 4
    assert (tmp_path / "lc" / "sample_efficiency.json").is_file()
    # every JSON file of the folder (points' runs included) validates against its schema
    stems = {validate_json_file(f) for f in (tmp_path / "lc").rglob("*.json")}
    assert stems == {
        "learning_curves",
        "sample_efficiency",
        "comparison",
        "run_summary",
        "run_inputs",
        "evaluation",
    }
    assert out["reuse"] == "0 points reused, 4 recomputed"
    # A second call reuses the finished runs (no retraining: files untouched).
    marker = point_dir(tmp_path / "lc", "scratch", 1.0, 0) / "summary.json"
    before = marker.stat().st_mtime_ns
    again = run_learning_curves(
        config, tmp_path / "lc", fractions=(0.5, 1.0), seeds=1, n_resamples=100, progress=False
    )
    assert marker.stat().st_mtime_ns == before
    assert again["reuse"] == "4 points reused, 0 recomputed"


def test_parallel_points_match_serial_points(tmp_path, square_dataset) -> None:
    """Two worker processes give the same predictions as one process, point by point."""
    config = ExperimentConfig.model_validate(
        {
            "name": "lcp",
            "data": {"dataset": str(square_dataset), "modality": "cxr", "spatial_size": [32, 32]},
            "model": {"backbone": "smallcnn"},
            "strategy": {"name": "frozen_base", "head_epochs": 1, "finetune_epochs": 1},
            "training": {"batch_size": 16, "amp": "none", "progress": "never"},
        }
    )
    import torch

    # Each worker process runs with cpu_count // workers intra-op threads (1 here); the serial
    # run uses one thread too, so float reductions are summed in the same order.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = run_learning_curves(
            config, tmp_path / "serial", fractions=(1.0,), seeds=1, n_resamples=50, progress=False
        )
    finally:
        torch.set_num_threads(threads)
    parallel = run_learning_curves(
        config,
        tmp_path / "parallel",
        fractions=(1.0,),
        seeds=1,
        n_resamples=50,
        progress=False,
        workers=2,
    )
    assert [p["auroc"] for p in serial["points"]] == [p["auroc"] for p in parallel["points"]]
    for name in serial["runs"]:
        a = (tmp_path / "serial" / name / "predictions.csv").read_text()
        b = (tmp_path / "parallel" / name / "predictions.csv").read_text()
        assert a == b, name


def test_cli_learning_curves(tmp_path, square_dataset) -> None:
    import yaml
    from typer.testing import CliRunner

    from medtl.cli import app

    config = {
        "name": "lccli",
        "data": {"dataset": str(square_dataset), "modality": "cxr", "spatial_size": [32, 32]},
        "model": {"backbone": "smallcnn"},
        "strategy": {"name": "frozen_base", "head_epochs": 1, "finetune_epochs": 0},
        "training": {"batch_size": 16, "amp": "none", "progress": "never"},
    }
    path = tmp_path / "lc.yaml"
    path.write_text(yaml.safe_dump(config))
    runner = CliRunner()
    out = tmp_path / "curves"
    args = ["learning-curves", str(path), "--out", str(out), "--fractions", "0.25,1"]
    result = runner.invoke(app, [*args, "--resamples", "50", "--seeds", "2", "--top-seeds", "1"])
    assert result.exit_code == 0, result.output
    assert "frozen_base" in result.output and "scratch" in result.output
    assert "Not assessable" in result.output  # 4 test patients: no verdict
    # 2 seeds at 25 % of labels, 1 at 100 %, per arm
    seeds = {
        (p.strategy, p.fraction): []
        for p in LearningCurves.read(out / "learning_curves.json").points
    }
    for p in LearningCurves.read(out / "learning_curves.json").points:
        seeds[(p.strategy, p.fraction)].append(p.seed)
    assert seeds == {
        ("frozen_base", 0.25): [0, 1],
        ("scratch", 0.25): [0, 1],
        ("frozen_base", 1.0): [0],
        ("scratch", 1.0): [0],
    }
    cell = LearningCurves.read(out / "learning_curves.json").cell("scratch", 0.25)
    assert cell is not None and cell.n_seeds == 2 and cell.min <= cell.mean <= cell.max
    bad = runner.invoke(app, ["learning-curves", str(path), "--out", str(out), "--fractions", "2"])
    assert bad.exit_code == 2 and "fractions" in bad.output
    no_seed = runner.invoke(app, [*args, "--seeds", "0"])
    assert no_seed.exit_code == 2 and "seeds" in no_seed.output
