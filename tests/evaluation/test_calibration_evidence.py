"""Calibration that can be judged: CIs of before, after and the paired change; a split too
small for the calibrator falls back to no calibration and says so."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from medtl.artifacts import Evaluation, RunSummary, write_predictions
from medtl.data.manifest import Manifest, ManifestRecord
from medtl.evaluation.calibration_evidence import (
    CALIBRATION_MINIMUMS,
    calibration_split_problem,
    calibration_table_ci,
)
from medtl.evaluation.run import evaluate_run


def _overconfident(n_patients: int, per_patient: int, seed: int, scale: float = 4.0):
    """Logits of a model that is right more often than chance but far too sure."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n_patients * per_patient)
    pid = np.repeat(np.arange(n_patients), per_patient)
    true_logit = 1.2 * (2 * y - 1) + rng.normal(0, 1.5, y.size)
    return y, pid, scale * true_logit


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_a_real_improvement_has_a_change_ci_below_zero() -> None:
    y, pid, logits = _overconfident(250, 2, seed=0, scale=6.0)
    before = _sigmoid(logits)
    # the true log-odds of the simulation are 2 * 1.2 / 1.5**2 = 1.067 times the logit
    after = _sigmoid(logits / 6.0 * 1.067)
    rows = calibration_table_ci(before, after, y, pid, n_resamples=300)
    ece = rows[0]
    assert ece["measure"].startswith("ECE")
    assert ece["change_ci"]["upper"] < 0
    assert ece["finding"].startswith("Calibration reduced ECE")
    assert ece["before_ci"]["lower"] <= ece["before"] <= ece["before_ci"]["upper"]
    assert ece["after_ci"]["lower"] <= ece["after"] <= ece["after_ci"]["upper"]
    nll = next(r for r in rows if r["measure"] == "NLL")
    assert nll["change_ci"]["upper"] < 0


def test_a_change_within_the_noise_is_reported_as_no_measurable_change() -> None:
    y, pid, logits = _overconfident(40, 7, seed=1, scale=1.0)
    before = _sigmoid(logits)
    after = _sigmoid(logits / 1.03)  # a negligible temperature
    rows = calibration_table_ci(before, after, y, pid, n_resamples=300)
    ece = rows[0]
    assert ece["change_ci"]["lower"] <= 0 <= ece["change_ci"]["upper"]
    assert ece["finding"].startswith("Calibration did not measurably change ECE")
    # the paired change is far narrower than the before/after intervals themselves
    width = ece["change_ci"]["upper"] - ece["change_ci"]["lower"]
    assert width < 0.5 * (ece["before_ci"]["upper"] - ece["before_ci"]["lower"])


def test_patient_resampling_widens_the_interval_for_clustered_images() -> None:
    """20 images per patient: resampling patients, not images, gives a wider ECE CI."""
    rng = np.random.default_rng(2)
    pid = np.repeat(np.arange(15), 20)
    offset = np.repeat(rng.normal(0, 1.5, 15), 20)  # patient-level miscalibration
    y = rng.integers(0, 2, pid.size)
    p = _sigmoid(1.0 * (2 * y - 1) + offset)
    by_patient = calibration_table_ci(p, p, y, pid, n_resamples=300, calibrated=False)[0]
    by_image = calibration_table_ci(p, p, y, None, n_resamples=300, calibrated=False)[0]

    def width(row):
        return row["before_ci"]["upper"] - row["before_ci"]["lower"]

    assert width(by_patient) > width(by_image)
    assert by_patient["change_ci"] is None
    assert by_patient["finding"].startswith("No calibration was applied")


def test_minimums_per_method() -> None:
    y = np.tile([0, 1], 20)  # 40 images
    assert calibration_split_problem("temperature", y, np.arange(40)) is None
    few_patients = calibration_split_problem("temperature", y, np.repeat(np.arange(4), 10))
    assert few_patients is not None and "4 patients" in few_patients
    one_class = calibration_split_problem("temperature", np.zeros(40, int), np.arange(40))
    assert one_class is not None and "class" in one_class
    isotonic = calibration_split_problem("isotonic", y, np.arange(40))
    assert isotonic is not None and "200" in isotonic
    assert calibration_split_problem("none", y[:2], [0, 0]) is None
    assert CALIBRATION_MINIMUMS["isotonic"].images > CALIBRATION_MINIMUMS["temperature"].images
    # multi-class: every class must be present
    three = calibration_split_problem("temperature", np.tile([0, 1], 20), np.arange(40), 3)
    assert three is not None and "[2]" in three


def _run(root: Path, n_cal_patients: int, per_patient: int = 2) -> Path:
    """A run folder (real predictions.csv, summary, config, manifest) ready to evaluate."""
    records, rows = [], []
    rng = np.random.default_rng(5)
    for split, n in (("calibration", n_cal_patients), ("test", 30)):
        for p in range(n):
            for k in range(per_patient):
                label = k % 2
                pid = f"{split[:3]}{p:03d}"
                rec = {"image": f"i/{pid}_{k}.png", "label": label, "patient_id": pid}
                records.append(ManifestRecord(**rec, split=split, task="t"))
                logit = 4.0 * ((2 * label - 1) + rng.normal(0, 1.2))
                rows.append({"split": split, "index": len(rows), "patient_id": pid,
                             "label": label, "logit": logit})  # fmt: skip
    data = root / "data"
    Manifest(name="d", task="t", label_names=["no", "yes"], records=records).save(data)
    run = root / "run"
    run.mkdir()
    write_predictions(run / "predictions.csv", rows, num_outputs=1)
    times = {"data_seconds": 0, "train_seconds": 0, "total_seconds": 0}
    summary = RunSummary(name="run", strategy="full", num_outputs=1, train_images=10,
                         train_patients=5, **times)  # fmt: skip
    summary.write(run / "summary.json")
    (run / "experiment.yaml").write_text(yaml.safe_dump({"data": {"dataset": str(data)}}))
    return run


def test_too_small_calibration_split_falls_back_with_a_warning(tmp_path, caplog) -> None:
    run = _run(tmp_path, n_cal_patients=4)  # 8 images of 4 patients
    with caplog.at_level(logging.WARNING, logger="medtl.evaluation.run"):
        evaluate_run(run, n_resamples=100)
    ev = Evaluation.read(run / Evaluation.FILE)
    assert ev.calibration_requested == "temperature"
    assert ev.calibration_method == "none" and ev.calibrator is None
    assert ev.calibration_warning is not None and "8 images" in ev.calibration_warning
    assert "Not calibrated" in caplog.text and "at least 30" in caplog.text
    assert ev.calibration_split is not None
    assert (ev.calibration_split.n_patients, ev.calibration_split.n_images) == (4, 8)
    # uncalibrated: the test probabilities are the model's own sigmoid
    preds = np.array(ev.test_scores.prob)
    assert preds.min() < 0.01 or preds.max() > 0.99
    assert ev.calibration.table[0].finding.startswith("No calibration was applied")


def test_large_enough_split_is_calibrated_and_reports_size_and_cis(tmp_path) -> None:
    run = _run(tmp_path, n_cal_patients=40)  # 80 images of 40 patients
    evaluate_run(run, n_resamples=200)
    ev = Evaluation.read(run / Evaluation.FILE)
    assert ev.schema_version == 2
    assert ev.calibration_method == "temperature" and ev.calibration_warning is None
    assert ev.calibration_split.n_images == 80 and ev.calibration_split.class_counts == {
        0: 40,
        1: 40,
    }
    ece = ev.calibration.table[0]
    assert ece.change_ci is not None and ece.change_ci.n_resamples == 200
    assert ece.change == pytest.approx(ece.after - ece.before)
    assert ece.finding and "ECE" in ece.finding


def test_cli_evaluate_prints_the_fallback_and_the_findings(tmp_path) -> None:
    from typer.testing import CliRunner

    from medtl.cli import app

    run = _run(tmp_path, n_cal_patients=4)
    result = CliRunner().invoke(app, ["evaluate", str(run), "--bootstrap", "100"])
    assert result.exit_code == 0, result.output
    assert "calibration: none" in result.output
    assert "warning: Not calibrated: the calibration split has 8 images" in result.output
    assert "No calibration was applied: ECE" in result.output
