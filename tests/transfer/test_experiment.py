"""An experiment config runs end to end on real files: train, predict, calibrate, evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from medtl.evaluation.run import evaluate_run
from medtl.transfer.experiment import load_config, read_predictions, run_experiment


def _write_config(tmp_path, dataset, strategy: str = "scratch", **extra) -> object:
    cfg = {
        "name": "squares-test",
        "data": {"dataset": str(dataset), "modality": "cxr", "spatial_size": [32, 32]},
        "model": {"backbone": "smallcnn"},
        "strategy": {"name": strategy, "head_epochs": 3, "finetune_epochs": 3, "head_lr": 0.01},
        "training": {
            "batch_size": 16,
            "amp": "none",
            "progress": "never",
            "monitor": "auroc",
            "mode": "max",
            "seed": 0,
        },
        **extra,
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_config(path)


def test_experiment_trains_predicts_and_evaluates(tmp_path, square_dataset) -> None:
    config = _write_config(tmp_path, square_dataset)
    run = run_experiment(config, tmp_path / "run")
    preds = read_predictions(run / "predictions.csv")
    assert set(preds) == {"val", "calibration", "test"}
    assert preds["test"]["logits"].shape == (8,)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["train_patients"] == 24 and summary["num_outputs"] == 1
    assert (run / "features_train.safetensors").is_file()
    result = evaluate_run(run, n_resamples=200)
    assert result["calibrated_on"] == "calibration"
    assert result["calibrator"]["method"] == "temperature"
    assert 0.0 <= result["test"]["auroc"]["lower"] <= result["test"]["auroc"]["upper"] <= 1.0
    assert set(result["test"]["operating_points"]) >= {"youden", "sensitivity_0.90"}
    assert [row["measure"].split(" ")[0] for row in result["calibration"]["table"]][:1] == ["ECE"]
    assert (run / "evaluation.json").is_file()
    # the bright square is learnable: validation AUROC well above chance
    assert summary["best_val_metric"] > 0.8


def test_label_fraction_keeps_patients_nested(tmp_path, square_dataset) -> None:
    from medtl.data.datasets import subsample_patients
    from medtl.data.manifest import Manifest

    manifest = Manifest.load(square_dataset)
    train = [(i, r) for i, r in enumerate(manifest.records) if r.split == "train"]
    small = {r.patient_id for _, r in subsample_patients(train, 0.25, seed=1)}
    large = {r.patient_id for _, r in subsample_patients(train, 0.5, seed=1)}
    assert len(small) == 6 and len(large) == 12
    labels = {r.label for _, r in subsample_patients(train, 0.1, seed=1)}
    assert labels == {0, 1}
    with pytest.raises(ValueError):
        subsample_patients(train, 0.0, seed=1)
    assert np.isfinite(len(small))


def test_config_resolves_relative_paths_and_rejects_unknown_keys(tmp_path) -> None:
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "e.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "data": {"dataset": "../data"}}))
    cfg = load_config(path)
    assert cfg.data.dataset == (tmp_path / "data").resolve()
    path.write_text(yaml.safe_dump({"name": "x", "data": {"dataset": "d"}, "bogus": 1}))
    with pytest.raises(ValueError, match="bogus"):
        load_config(path)
