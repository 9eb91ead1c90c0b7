"""Typed hand-offs: files of the previous release load, writers and readers validate, and
errors name the file and the field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from medtl.artifacts import (
    ArtifactError,
    BackboneConfig,
    Comparison,
    Evaluation,
    LearningCurves,
    ModelCard,
    PredictionDetails,
    PredictionRow,
    PreprocessingSpec,
    RunSummary,
    SampleEfficiencyFile,
    read_predictions,
    write_predictions,
)

FIXTURES = Path(__file__).parent / "fixtures"


def test_files_of_the_previous_release_load_and_upgrade() -> None:
    """The fixtures were written by medtl before artifacts existed (no schema_version)."""
    assert "schema_version" not in json.loads((FIXTURES / "summary_v0.json").read_text())
    summary = RunSummary.read(FIXTURES / "summary_v0.json")
    assert summary.schema_version == RunSummary.SCHEMA_VERSION
    assert summary.train_patients == 24 and summary.phases[0].epochs == 2
    assert summary.backbone is not None and summary.backbone.name == "smallcnn"
    assert summary.backbone.preprocessing == PreprocessingSpec(
        modality="cxr", spatial_size=[32, 32]
    )

    evaluation = Evaluation.read(FIXTURES / "evaluation_v0.json")
    assert evaluation.binary and evaluation.calibrated_on == "calibration"
    assert evaluation.test.auroc.lower <= evaluation.test.auroc.estimate
    assert set(evaluation.test.operating_points) >= {"youden", "sensitivity_0.90"}
    assert evaluation.operating_points_chosen["youden"].metrics.tp == 6
    wilson = next(r.sensitivity for r in evaluation.subgroups if r.sensitivity is not None)
    assert wilson.n_resamples is None and 0 <= wilson.lower <= wilson.upper <= 1
    assert len(evaluation.test_scores.prob) == evaluation.test.n_images == 8

    card = ModelCard.read(FIXTURES / "model_card_v0.json")
    assert json.loads((FIXTURES / "model_card_v0.json").read_text())["schema_version"] == 1
    assert card.schema_version == 2 and card.preprocessing.modality == "cxr"
    assert card.architecture.preprocessing == card.preprocessing

    curves = LearningCurves.read(FIXTURES / "learning_curves_v0.json")  # a bare list in v0
    assert {(p.strategy, p.fraction) for p in curves.points} == {
        ("full", 0.5),
        ("full", 1.0),
        ("scratch", 0.5),
        ("scratch", 1.0),
    }

    preds = read_predictions(FIXTURES / "predictions_v0.csv")
    assert set(preds) == {"val", "calibration", "test"}
    assert preds["test"].logits.shape == (8,) and preds["test"].label.dtype == np.int64


def test_learning_curve_summaries_of_the_previous_release_load() -> None:
    verdict = Comparison.read(FIXTURES / "verdict_v0.json")
    assert verdict.verdict == "not assessable" and not verdict.is_negative
    table = SampleEfficiencyFile.read(FIXTURES / "sample_efficiency_v0.json")
    assert table.metric == "auroc"
    assert table.to_json_dict()["rows"][0]["transfer_ci_low"] is None  # NaN in v0: null now
    assert table.sentences


def test_previous_card_with_empty_preprocessing_loads(tmp_path: Path) -> None:
    data = json.loads((FIXTURES / "model_card_v0.json").read_text())
    data["preprocessing"] = {}
    data["architecture"]["preprocessing"] = {}
    (tmp_path / "model.json").write_text(json.dumps(data))
    card = ModelCard.read(tmp_path / "model.json")
    assert card.preprocessing is None and card.architecture.preprocessing is None


@pytest.mark.parametrize(
    ("cls", "fixture"),
    [
        (RunSummary, "summary_v0.json"),
        (Evaluation, "evaluation_v0.json"),
        (ModelCard, "model_card_v0.json"),
        (LearningCurves, "learning_curves_v0.json"),
        (SampleEfficiencyFile, "sample_efficiency_v0.json"),
        (Comparison, "verdict_v0.json"),
    ],
)
def test_round_trip_is_exact_and_versioned(cls, fixture: str, tmp_path: Path) -> None:
    obj = cls.read(FIXTURES / fixture)
    path = obj.write(tmp_path / "out.json")
    written = json.loads(path.read_text())
    assert written["schema_version"] == cls.SCHEMA_VERSION
    assert cls.read(path).to_json_dict() == obj.to_json_dict()  # NaN: null on both sides


def test_reader_names_file_and_field(tmp_path: Path) -> None:
    data = json.loads((FIXTURES / "summary_v0.json").read_text())
    data["phases"][0]["epochs"] = "two"
    bad = tmp_path / "summary.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=r"phases\.0\.epochs") as info:
        RunSummary.read(bad)
    assert str(bad) in str(info.value) and info.value.field == "phases.0.epochs"

    data = json.loads((FIXTURES / "evaluation_v0.json").read_text())
    del data["test"]["auroc"]
    (tmp_path / "evaluation.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=r"test\.auroc"):
        Evaluation.read(tmp_path / "evaluation.json")

    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        Evaluation.read(tmp_path / "broken.json")
    with pytest.raises(ArtifactError, match="cannot read"):
        Evaluation.read(tmp_path / "missing.json")


def test_newer_files_are_refused_with_a_clear_message(tmp_path: Path) -> None:
    data = json.loads((FIXTURES / "summary_v0.json").read_text())
    data["schema_version"] = RunSummary.SCHEMA_VERSION + 1
    (tmp_path / "summary.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="newer than this medtl reads"):
        RunSummary.read(tmp_path / "summary.json")


def test_writer_validates_before_writing(tmp_path: Path) -> None:
    summary = RunSummary.read(FIXTURES / "summary_v0.json")
    summary.train_images = "many"  # no validate_assignment: caught on the way out
    target = tmp_path / "summary.json"
    with pytest.raises(ArtifactError, match="train_images"):
        summary.write(target)
    assert not target.exists()


def test_nan_is_written_as_null_and_read_back(tmp_path: Path) -> None:
    summary = RunSummary.read(FIXTURES / "summary_v0.json")
    summary.best_val_metric = float("nan")
    path = summary.write(tmp_path / "summary.json")
    assert json.loads(path.read_text())["best_val_metric"] is None
    assert RunSummary.read(path).best_val_metric is None


def test_predictions_writer_and_reader_check_the_columns(tmp_path: Path) -> None:
    rows = [
        PredictionRow("test", 3, "P1", 2, (0.1, -0.5, 2.0)),
        PredictionRow("val", 1, "P2", 0, (1.0, 0.0, 0.0)),
    ]
    path = write_predictions(tmp_path / "predictions.csv", rows, 3)
    preds = read_predictions(path)
    assert preds["test"].logits.shape == (1, 3) and preds["test"].patient_id[0] == "P1"
    assert preds["test"]["label"][0] == 2  # mapping-style access of the earlier reader
    with pytest.raises(ArtifactError, match="expected 3"):
        write_predictions(tmp_path / "x.csv", [PredictionRow("test", 0, "P", 0, (1.0,))], 3)
    with pytest.raises(ArtifactError, match="unknown split"):
        write_predictions(tmp_path / "x.csv", [PredictionRow("train", 0, "P", 0, (1.0,))], 1)
    with pytest.raises(ArtifactError, match="non-finite"):
        write_predictions(tmp_path / "x.csv", [PredictionRow("test", 0, "P", 0, (np.nan,))], 1)
    bad = tmp_path / "bad.csv"
    shutil.copy(path, bad)
    bad.write_text(bad.read_text().replace("-0.5", "oops"))
    with pytest.raises(ArtifactError, match="line 2") as info:
        read_predictions(bad)
    assert info.value.field == "logit" and str(bad) in str(info.value)
    (tmp_path / "cols.csv").write_text("split,index,label\ntest,0,1\n")
    with pytest.raises(ArtifactError, match="missing columns"):
        read_predictions(tmp_path / "cols.csv")


def test_prediction_details_of_the_previous_release_load() -> None:
    stored = {  # what app/components/analysis.py stored before PredictionDetails
        "domain": "warn",
        "domain_reasons": ["modality CT, expected CR/DX"],
        "calibrated": True,
        "operating_point": "youden",
        "expected_sensitivity": 0.9,
        "expected_specificity": 0.8,
        "positive": False,
        "heat_peak": [12, 30],
        "labels": ["no nodule", "nodule"],
    }
    details = PredictionDetails.from_stored(stored)
    assert details.domain == "warn" and details.heat_peak == [12, 30]
    assert details.schema_version == PredictionDetails.SCHEMA_VERSION
    assert PredictionDetails.from_stored(None) == PredictionDetails()
    with pytest.raises(ArtifactError, match="expected_sensitivity"):
        PredictionDetails.from_stored({**stored, "expected_sensitivity": "high"})
    assert PredictionDetails.from_stored(details.to_json_dict()) == details


def test_backbone_preprocessing_is_typed() -> None:
    cfg = BackboneConfig(name="smallcnn", spatial_dims=2, preprocessing={})
    assert cfg.preprocessing is None
    cfg = BackboneConfig(
        name="smallcnn", spatial_dims=2, preprocessing={"modality": "ct", "spatial_size": [8, 8]}
    )
    assert cfg.preprocessing.modality == "ct"
    with pytest.raises(ValidationError, match="preprocessing"):
        BackboneConfig(name="smallcnn", spatial_dims=2, preprocessing={"window": [-1000, 400]})
