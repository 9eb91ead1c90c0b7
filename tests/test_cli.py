"""The medtl CLI: clear one-line errors with exit status 2, inspect on real files, and every
``--json`` command writing exactly one JSON document on stdout (logs on stderr)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def _env(home: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MEDTL_DATABASE_URL"}
    if home is not None:
        env["MEDTL_HOME"] = str(home / "medtl_home")
    return env


def _medtl(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medtl.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(home),
        check=False,
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


# --- every --json command: exactly one JSON document on stdout, logs on stderr -------------
#: The commands with a --json option, and the test below that runs each one.
JSON_COMMANDS = {
    ("inspect",): "test_inspect_dicom_json_alone_on_stdout",
    (
        "predict",
    ): "tests/inference/test_cli.py::test_json_is_alone_on_stdout_through_the_real_command",
    ("models", "import-weights"): "test_import_weights_json_alone_on_stdout",
    ("users", "list"): "test_users_list_json_alone_on_stdout",
    # medtl_json() in tests/pacs/test_pacs.py parses the whole stdout (against a real Orthanc)
    ("pacs", "find"): "tests/pacs/test_pacs.py (medtl_json: pacs find)",
    ("pacs", "status"): "tests/pacs/test_pacs.py (medtl_json: pacs status)",
    ("pacs", "jobs"): "tests/pacs/test_jobs.py (medtl_json: pacs jobs)",
}


def _json_commands() -> set[tuple[str, ...]]:
    """Every command of ``medtl`` with a ``--json`` option (Typer vendors click: duck typing)."""
    import typer

    from medtl.cli import app

    found: set[tuple[str, ...]] = set()

    def walk(cmd: object, path: tuple[str, ...]) -> None:
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(sub, (*path, name))
        if any("--json" in getattr(p, "opts", ()) for p in getattr(cmd, "params", ())):
            found.add(path)

    walk(typer.main.get_command(app), ())
    return found


def test_every_json_command_has_a_stdout_test() -> None:
    found = _json_commands()
    assert {("inspect",), ("predict",), ("users", "list")} <= found  # the walk sees commands
    missing = found - set(JSON_COMMANDS)
    assert not missing, f"add a test that parses the stdout of: {sorted(missing)}"


def _only_json(out: subprocess.CompletedProcess[str]) -> object:
    """Parse the whole of stdout as one JSON document (fails on any log line around it)."""
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_inspect_dicom_json_alone_on_stdout(tmp_path) -> None:
    from medtl.io.testing import chest_pixels, radiograph_dataset, write

    folder = tmp_path / "series"
    write(radiograph_dataset(chest_pixels(64), photometric="MONOCHROME1"), folder / "a.dcm")
    (folder / "notes.txt").write_text("not a scan", encoding="utf-8")
    out = _medtl("inspect", str(folder), "--json")
    info = _only_json(out)
    assert info["modality"] == "CR" and info["shape"] == [64, 64]
    assert info["warnings"], "the loader warns (a non-DICOM file was ignored)"
    assert "scan warning" in out.stderr  # ...and its log line went to stderr


def test_import_weights_json_alone_on_stdout(tmp_path) -> None:
    from medtl.models import create_backbone
    from medtl.models.weights import save_weights

    src = save_weights(create_backbone("smallcnn", 2, 1, 2), tmp_path / "w.safetensors")
    copy = tmp_path / "copy.safetensors"
    out = _medtl(
        "models",
        "import-weights",
        "smallcnn",
        str(src),
        "--num-outputs",
        "2",
        "--json",
        "--save",
        str(copy),
    )
    report = _only_json(out)
    assert report["loaded_fraction"] == 1.0 and copy.is_file()
    assert f"saved {copy}" in out.stderr


def test_users_list_json_alone_on_stdout(tmp_path) -> None:
    db = f"sqlite:///{tmp_path / 'review.sqlite'}"
    added = subprocess.run(
        [
            sys.executable,
            "-m",
            "medtl.cli",
            "users",
            "add",
            "alice",
            "--role",
            "admin",
            "--password-stdin",
            "--db",
            db,
        ],
        input="a long enough password 123\n",
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(tmp_path),
        check=False,
    )
    assert added.returncode == 0, added.stderr
    users = _only_json(_medtl("users", "list", "--json", "--db", db, home=tmp_path))
    assert [(u["username"], u["role"], u["active"]) for u in users] == [("alice", "admin", True)]
