"""The report shows calibration with CIs (or why it was not applied), the calibration split
size, the spread over training seeds and the seed-aware verdict with its methods text."""

from __future__ import annotations

import numpy as np
import pytest

from medtl.artifacts import Comparison
from medtl.evaluation.seed_verdict import seed_patient_verdict
from tests.reports.conftest import LEARNING_CURVES


@pytest.fixture(scope="module")
def seed_report(tiny_run, tmp_path_factory):
    from medtl.reports.builder import build_report_data
    from medtl.reports.html import render_html

    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 30)
    pid = np.repeat(np.arange(30), 2)
    transfer = [y * s + rng.normal(0, 1, y.size) for s in (2.5, 0.3, 0.6)]
    scratch = [y * 1.0 + rng.normal(0, 1, y.size) for _ in range(3)]
    verdict = seed_patient_verdict(y, transfer, scratch, pid, n_resamples=200)
    path = tmp_path_factory.mktemp("verdict") / Comparison.FILE
    Comparison.parse(verdict).write(path)
    data = build_report_data(
        tiny_run,
        comparison=path,
        learning_curves=LEARNING_CURVES,
        failure_cases=0,
        saliency=False,
    )
    return data, render_html(data)


def test_calibration_fallback_and_split_size_are_reported(seed_report) -> None:
    data, html = seed_report
    cal = data.calibration
    # the tiny run's calibration split (6 patients, 12 images) is below temperature's minimum
    assert (cal.split_patients, cal.split_images) == (6, 12)
    assert cal.method == "none" and cal.requested == "temperature"
    assert cal.warning and "at least 30" in cal.warning
    assert 'id="calibration-warning"' in html and "12 images of 6 patients" in html
    ece = cal.table[0]
    assert ece.before_ci is not None and ece.before_ci.lower <= ece.before <= ece.before_ci.upper
    assert ece.change_ci is None
    assert any(f.startswith("No calibration was applied: ECE") for f in cal.findings)
    assert "patient-level stratified bootstrap" in cal.method_note


def test_seed_aware_verdict_and_spread_are_reported(seed_report) -> None:
    data, html = seed_report
    t = data.transfer
    assert t.verdict == "no significant difference"
    assert "hierarchical" in t.verdict_method and 'id="verdict-method"' in html
    assert t.comparison["n_seeds_transfer"] == 3
    assert "Test AUROC per training seed" in html
    full = next(r for r in t.learning_curves if r.fraction == 1.0)
    assert full.n_seeds == 2 and full.scratch_n_seeds == 2
    assert full.sd == pytest.approx(np.std([0.85, 0.86], ddof=1))
    assert (full.min, full.max) == (pytest.approx(0.85), pytest.approx(0.86))
    assert "SD [min–max]" in html


def test_no_calibration_requested_is_not_a_warning(tiny_run, tmp_path) -> None:
    """``method="none"`` is a choice, not a fallback: no warning is recorded."""
    import shutil

    from medtl.artifacts import Evaluation
    from medtl.evaluation.calibration_evidence import CALIBRATION_MINIMUMS
    from medtl.evaluation.run import evaluate_run

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert CALIBRATION_MINIMUMS["temperature"].images > 12
    evaluate_run(run, method="none", n_resamples=100)
    ev = Evaluation.read(run / Evaluation.FILE)
    assert ev.calibration_warning is None and ev.calibration_method == "none"
    assert ev.calibration_requested == "none"


def test_model_card_carries_the_calibration_split_and_fallback(tiny_run) -> None:
    from medtl.reports.card import build_card

    card = build_card(tiny_run)
    calibration = card.training["calibration"]
    assert (calibration["split_images"], calibration["split_patients"]) == (12, 6)
    assert calibration["method"] == "none" and "at least 30" in calibration["warning"]
    assert any("Not calibrated" in line for line in card.limitations)
    assert card.calibration is None
