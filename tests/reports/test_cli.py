"""``medtl report`` and ``medtl package`` through the Typer sub-app."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from medtl.evaluation.transfer_analysis import NOT_ASSESSABLE
from medtl.reports.cli import app
from tests.reports.conftest import LEARNING_CURVES

runner = CliRunner()


def test_report_command_writes_json_and_html(tiny_run, tmp_path) -> None:
    curves = tmp_path / "curves.json"
    curves.write_text(json.dumps({"points": LEARNING_CURVES}))
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "report",
            str(tiny_run),
            "--no-pdf",
            "--out",
            str(out),
            "--learning-curves",
            str(curves),
            "--against",
            str(tiny_run),  # a run against itself: no difference, both ROC curves identical
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json"]
    doc = json.loads((out / "report.json").read_text())
    assert doc["transfer"]["learning_curves"] and doc["run"] == "squares-report"
    # 4 test patients: too few for a verdict (medtl.evaluation refuses below 10)
    assert doc["transfer"]["verdict"] == NOT_ASSESSABLE
    assert any("not assessable" in w for w in doc["summary"]["warnings"])
    assert doc["transfer"]["comparison"]["delta_auroc"] == 0.0
    figures = [f["id"] for f in doc["transfer"]["figures"]]
    assert figures == ["roc-transfer-vs-scratch", "learning-curves"]
    html = (out / "report.html").read_text()
    assert 'id="fig-roc-transfer-vs-scratch"' in html and 'id="negative-transfer"' not in html


def test_report_command_refuses_what_is_not_a_run(tmp_path) -> None:
    result = runner.invoke(app, ["report", str(tmp_path), "--no-pdf"])
    assert result.exit_code == 2
    assert "not a finished run folder" in result.output


def test_report_command_checks_option_files(tiny_run, tmp_path) -> None:
    missing = tmp_path / "nope.json"
    result = runner.invoke(app, ["report", str(tiny_run), "--learning-curves", str(missing)])
    assert result.exit_code == 2 and "--learning-curves" in result.output


def test_package_command_registers(tiny_run, tmp_path, monkeypatch) -> None:
    from medtl.models.package import list_packages

    monkeypatch.setenv("MEDTL_HOME", str(tmp_path / "home"))
    out = tmp_path / "pkg"
    args = ["package", str(tiny_run), "--name", "sq", "--version", "2.0", "--out", str(out)]
    result = runner.invoke(app, [*args, "--no-report"])
    assert result.exit_code == 0, result.output
    assert [p.ref for p in list_packages()] == ["sq@2.0"]
    assert not (out / "report.html").exists() and (out / "model.json").is_file()
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.output


@pytest.mark.parametrize(
    "points, message",
    [
        ([{"strategy": "full", "fraction": 0.5}], "misses"),
        ([{"strategy": "x", "fraction": 0.0, "auroc": 0.5}], "fraction"),
    ],
)
def test_learning_curve_file_errors(points, message) -> None:
    from medtl.reports.builder import read_learning_curves

    with pytest.raises(ValueError, match=message):
        read_learning_curves(points)


def test_learning_curve_reader_keeps_extra_metrics(tmp_path) -> None:
    from medtl.reports.builder import read_learning_curves

    path = tmp_path / "c.json"
    path.write_text(
        json.dumps(
            [
                {
                    "strategy": "full",
                    "fraction": 1,
                    "seed": 3,
                    "auroc": 0.9,
                    "auprc": 0.8,
                    "n_train": 40,
                    "brier": 0.1,
                }
            ]
        )
    )
    (point,) = read_learning_curves(path)
    assert (point.strategy, point.fraction, point.seed, point.auroc) == ("full", 1.0, 3, 0.9)
    assert point.auprc == 0.8 and point.n_train == 40 and point.extra == {"brier": 0.1}
