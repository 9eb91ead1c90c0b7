"""An experiment config runs end to end on real files: train, predict, calibrate, evaluate."""

from __future__ import annotations

import json

import pytest
import yaml

from medtl.artifacts import Evaluation
from medtl.transfer.experiment import load_config, read_predictions


def test_experiment_trains_predicts_and_evaluates(square_run) -> None:
    preds = read_predictions(square_run / "predictions.csv")
    assert set(preds) == {"val", "calibration", "test"}
    assert preds["test"]["logits"].shape == (8,)
    summary = json.loads((square_run / "summary.json").read_text())
    assert summary["train_patients"] == 24 and summary["num_outputs"] == 1
    assert (square_run / "features_train.safetensors").is_file()
    assert (square_run / "model.safetensors").is_file()
    result = json.loads((square_run / "evaluation.json").read_text())
    assert result["calibrated_on"] == "calibration"
    # 6 calibration patients, 12 images: too few to fit temperature scaling (>= 30 images),
    # so the run is left uncalibrated and says why (medtl.evaluation.calibration_evidence)
    assert result["calibration_requested"] == "temperature"
    assert result["calibrator"] is None and "12 images" in result["calibration_warning"]
    assert result["calibration_split"]["n_patients"] == 6
    assert 0.0 <= result["test"]["auroc"]["lower"] <= result["test"]["auroc"]["upper"] <= 1.0
    assert set(result["test"]["operating_points"]) >= {"youden", "sensitivity_0.90"}
    assert result["calibration"]["table"][0]["measure"].startswith("ECE")
    # the bright square is learnable: validation AUROC well above chance
    assert summary["best_val_metric"] > 0.8
    sizes = [row for row in result["subgroups"] if row["group"] == "nodule size"]
    assert sizes and all(row["n_positive"] >= 1 for row in sizes)
    # subgroup CIs use the run's bootstrap settings (evaluate_run(n_resamples=200)), by patient
    evaluation = Evaluation.read(square_run / "evaluation.json")
    assert evaluation.n_resamples == 200
    cis = [r.auroc for r in evaluation.subgroups if r.auroc is not None]
    assert cis and all(ci.n_resamples == 200 for ci in cis)
    assert all(r.n_patients is not None for r in evaluation.subgroups)


def test_label_fraction_keeps_patients_nested(square_dataset) -> None:
    from medtl.data.datasets import subsample_patients
    from medtl.data.manifest import Manifest

    manifest = Manifest.load(square_dataset)
    train = [(i, r) for i, r in enumerate(manifest.records) if r.split == "train"]
    small = {r.patient_id for _, r in subsample_patients(train, 0.25, seed=1)}
    large = {r.patient_id for _, r in subsample_patients(train, 0.5, seed=1)}
    assert len(small) == 6 and len(large) == 12
    assert {r.label for _, r in subsample_patients(train, 0.1, seed=1)} == {0, 1}
    with pytest.raises(ValueError):
        subsample_patients(train, 0.0, seed=1)


def test_config_resolves_relative_paths_and_rejects_unknown_keys(tmp_path) -> None:
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "e.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "data": {"dataset": "../data"}}))
    cfg = load_config(path)
    assert cfg.data.dataset == (tmp_path / "data").resolve()
    path.write_text(yaml.safe_dump({"name": "x", "data": {"dataset": "d"}, "bogus": 1}))
    with pytest.raises(ValueError, match="bogus"):
        load_config(path)
