"""The medtl CLI: clear one-line errors with exit status 2, and inspect on real files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image


def _medtl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medtl.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_inspect_png_json(tmp_path) -> None:
    path = tmp_path / "x.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(path)
    out = _medtl("inspect", str(path), "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["shape"] == [8, 8]
    assert info["intensity_range"] == [0.0, 63.0]
    assert info["format"] == "png"


def test_inspect_bad_input_one_line_exit_2(tmp_path) -> None:
    path = tmp_path / "report.dcm"
    path.write_bytes(b"%PDF-1.5\n" + b"0" * 3000)
    out = _medtl("inspect", str(path))
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "PDF" in lines[0]
    assert "Traceback" not in out.stderr
    missing = _medtl("inspect", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_evaluate_refuses_non_run_folder(tmp_path) -> None:
    out = _medtl("evaluate", str(tmp_path))
    assert out.returncode == 2 and "not a finished run folder" in out.stderr
