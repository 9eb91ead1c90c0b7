"""``medtl`` starts without its heavy libraries: ``--help`` and light commands import
neither torch nor MONAI (nor the others below), checked in a fresh interpreter.

Structural only: how long start-up takes is measured by bench/startup_bench.py, never
asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: libraries no command may import just to start (each costs 50 ms to 1 s)
HEAVY = (
    "torch",
    "monai",
    "numpy",
    "scipy",
    "sklearn",
    "matplotlib",
    "pydicom",
    "PIL",
    "nibabel",
    "safetensors",
    "streamlit",
    "sqlalchemy",
    "weasyprint",
)
#: what a command that only reads the review store may import: SQLAlchemy, not the ML stack
ML = ("torch", "monai", "numpy", "scipy", "sklearn", "matplotlib", "pydicom", "safetensors")

_PROBE = """
import json, sys
out, args, heavy = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
from medtl.cli import app
try:
    app(args, prog_name="medtl")
except SystemExit as done:
    code = done.code
else:
    code = 0
with open(out, "w") as f:
    json.dump({"code": code, "loaded": [m for m in heavy if m in sys.modules]}, f)
"""


def _loaded(args: list[str], heavy: tuple[str, ...], tmp_path: Path) -> list[str]:
    """Run ``medtl ARGS`` in a fresh interpreter; return which of ``heavy`` it imported."""
    out = tmp_path / "probe.json"
    env = {k: v for k, v in os.environ.items() if k != "MEDTL_DATABASE_URL"}
    env["MEDTL_HOME"] = str(tmp_path / "home")
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(out), json.dumps(args), json.dumps(heavy)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 0 and out.is_file(), proc.stderr
    result = json.loads(out.read_text())
    assert result["code"] in (0, None), (args, proc.stdout, proc.stderr)
    return result["loaded"]


def test_import_medtl_cli_is_light(tmp_path: Path) -> None:
    code = (
        "import sys, medtl.cli\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
        "print(len(medtl.cli.app.registered_groups))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.splitlines()
    assert out[0] == "", f"import medtl.cli imports {out[0]}"
    assert int(out[1]) >= 5  # the sub-apps (data, models, pacs, ...) are registered


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["models", "--help"],
        ["models", "backbones"],
        ["models", "packages"],
        ["data", "--help"],
        ["pacs", "--help"],
        ["reviews", "export", "--help"],
        ["finetune", "--help"],
    ],
    ids=" ".join,
)
def test_light_commands_import_no_heavy_library(args: list[str], tmp_path: Path) -> None:
    assert _loaded(args, HEAVY, tmp_path) == []


@pytest.mark.parametrize("args", [["pacs", "status"], ["users", "list"]], ids=" ".join)
def test_store_commands_import_no_ml_library(args: list[str], tmp_path: Path) -> None:
    assert _loaded(args, ML, tmp_path) == []


def test_models_backbones_still_lists_every_backbone(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MEDTL_DATABASE_URL"}
    env["MEDTL_HOME"] = str(tmp_path / "home")
    proc = subprocess.run(
        [sys.executable, "-m", "medtl.cli", "models", "backbones"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    names = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    assert {"resnet18", "densenet121", "smallcnn", "i3resnet152"} <= names
