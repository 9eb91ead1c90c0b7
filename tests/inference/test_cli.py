"""``medtl predict``: JSON output, text output, heat map PNG, exit statuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from medtl.inference import Predictor
from medtl.inference.cli import app

from .conftest import square_image, write_dicom

runner = CliRunner()


def _root() -> typer.Typer:
    """The sub-app mounted the way ``medtl``'s main app mounts it."""
    root = typer.Typer()

    @root.callback()
    def _main() -> None:
        """medtl."""

    root.add_typer(app)
    return root


def _invoke(*args: str):
    return runner.invoke(_root(), ["predict", *map(str, args)])


def test_json_matches_the_predictor(square_package, square_dicoms) -> None:
    res = _invoke(square_package, square_dicoms["positive"], "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    expected = Predictor.from_package(square_package).predict(square_dicoms["positive"])
    assert data["probability"] == pytest.approx(expected.probability)
    assert data["decision"]["operating_point"] == "youden"
    assert data["decision"]["positive"] is expected.decision.positive
    assert data["domain"]["status"] == "ok"
    assert set(data["timings_ms"]) >= {"decode", "preprocess", "forward", "calibration", "saliency"}


def test_text_output_and_heatmap_png(square_package, square_dicoms, tmp_path) -> None:
    out = tmp_path / "heat" / "overlay.png"
    res = _invoke(square_package, square_dicoms["positive"], "--heatmap", out, "-p", "youden")
    assert res.exit_code == 0, res.output
    assert "probability" in res.stdout and "decision: square" in res.stdout
    assert "domain check: ok" in res.stdout
    with Image.open(out) as img:
        assert img.mode == "RGB" and img.size == (64, 64)


@pytest.mark.parametrize("kind", ["truncated_dicom", "pdf", "missing"])
def test_unreadable_scan_exits_2_with_one_line(square_package, tmp_path, kind) -> None:
    if kind == "truncated_dicom":
        img, _ = square_image(np.random.default_rng(0), True)
        full = write_dicom(tmp_path / "full.dcm", img).read_bytes()
        path = tmp_path / "cut.dcm"
        path.write_bytes(full[: len(full) // 2])
    elif kind == "pdf":
        path = tmp_path / "report.pdf"
        path.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n")
    else:
        path = tmp_path / "nothing.dcm"
    res = _invoke(square_package, path, "--json")
    assert res.exit_code == 2, res.output
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "Traceback" not in res.stderr


def test_bad_package_and_operating_point_exit_2(square_package, square_dicoms, tmp_path) -> None:
    res = _invoke(tmp_path / "no-package", square_dicoms["positive"])
    assert res.exit_code == 2 and res.stderr.startswith("error: ")
    res = _invoke(square_package, square_dicoms["positive"], "-p", "nonsense")
    assert res.exit_code == 2 and "no operating point 'nonsense'" in res.stderr


def test_refused_scan_exits_1_with_reasons(square_package, tmp_path) -> None:
    img, _ = square_image(np.random.default_rng(3), False)
    res = _invoke(square_package, write_dicom(tmp_path / "ct.dcm", img, modality="CT"))
    assert res.exit_code == 1
    assert "REFUSED" in res.stdout and "CT image" in res.stdout
    res = _invoke(square_package, tmp_path / "ct.dcm", "--json")
    assert res.exit_code == 1 and json.loads(res.stdout)["domain"]["status"] == "refuse"


def test_json_is_alone_on_stdout_through_the_real_command(
    square_package, square_dicoms, tmp_path
) -> None:
    """``medtl predict ... --json | jq``: logs (the loader's scan warnings) go to stderr."""
    env = {**os.environ, "MEDTL_HOME": str(tmp_path / "home")}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "medtl.cli",
            "predict",
            str(square_package),
            str(square_dicoms["positive"]),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)  # the whole of stdout is one JSON document
    assert data["domain"]["status"] == "ok" and 0.0 <= data["probability"] <= 1.0
    # the loader logged its warning, on stderr (where it belongs), and the JSON still has it
    assert "scan warning" in out.stderr
    assert data["warnings"], "the scan warning belongs in the JSON result too"
