"""Every command, with the mistakes people make, ends with one clear line and no traceback.

Each case runs the real ``medtl`` app in-process (typer's CliRunner) and checks: a non-zero
exit, exactly one ``error:`` line on stderr that says what to do, and no escaped exception
(a traceback). Two cases also go through ``python -m medtl.cli`` to check the real entry
point prints no ``Traceback``. A bug (an error medtl does not recognise as the user's) still
shows its traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from medtl._cli import UserErrorGroup, describe_error
from tests.transfer.conftest import write_square_dataset

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def _experiment(dataset: str, **model) -> dict:
    return {
        "name": "mine",
        "data": {"dataset": dataset, "modality": "cxr", "spatial_size": [32, 32]},
        "model": {"backbone": "smallcnn", **model},
        "strategy": {"name": "full", "head_epochs": 1, "finetune_epochs": 1},
        "training": {"progress": "never", "amp": "none"},
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """The inputs people get wrong: configs, weights, tables, scans."""
    root = tmp_path_factory.mktemp("mistakes")
    dataset = write_square_dataset(root / "squares", n_patients=40, per_patient=1)
    out: dict[str, Path] = {"root": root, "dataset": dataset}

    def config(name: str, data: object) -> None:
        out[name] = root / f"{name}.yaml"
        out[name].write_text(data if isinstance(data, str) else yaml.safe_dump(data))

    config("bad_yaml", "name: mine\ndata: {dataset: squares\n  modality: cxr\n")
    config("wrong_key", {**_experiment(str(dataset)), "strategy": {"name": "full", "head_lrr": 1}})
    config("unknown_model", _experiment(str(dataset), backbone="resnet99"))
    config("wrong_data", _experiment(str(root / "no_such_folder")))
    config("missing_package", _experiment(str(dataset), weights="cxr-source"))
    out["notes"] = root / "weights.txt"
    out["notes"].write_text("lr = 0.01\n")
    config("text_weights", _experiment(str(dataset), weights=str(out["notes"])))
    out["missing"] = root / "does_not_exist.yaml"
    out["scan"] = root / "scan.png"
    out["scan"].write_bytes((dataset / "images" / "p000_0.png").read_bytes())
    out["table"] = root / "no_table.csv"
    return out


def _cases(f: dict[str, Path]) -> dict[str, tuple[list[str], str]]:
    """name -> (arguments, a fragment the error line must hold)."""
    missing, out = str(f["missing"]), str(f["root"] / "out")
    return {
        "inspect: missing file": (["inspect", missing], "does not exist"),
        "deid: missing file": (["deid", missing, "--out", out], f"not found: {missing}"),
        "finetune: missing file": (["finetune", missing], f"file not found: {missing}"),
        "finetune: bad YAML": (["finetune", str(f["bad_yaml"])], "YAML (line 3"),
        "finetune: wrong config key": (
            ["finetune", str(f["wrong_key"])],
            "strategy.head_lrr: unknown setting",
        ),
        "finetune: unknown model": (
            ["finetune", str(f["unknown_model"])],
            "unknown backbone 'resnet99'; available:",
        ),
        "finetune: wrong data path": (["finetune", str(f["wrong_data"])], "dataset not found"),
        "finetune: missing package": (
            ["finetune", str(f["missing_package"])],
            "build it with `medtl pretrain ",
        ),
        "finetune: text as weights": (
            ["finetune", str(f["text_weights"])],
            "not a PyTorch checkpoint or safetensors file",
        ),
        "learning-curves: wrong config key": (
            ["learning-curves", str(f["wrong_key"]), "--out", out],
            "unknown setting",
        ),
        "learning-curves: missing package": (
            ["learning-curves", str(f["missing_package"]), "--out", out, "--seeds", "1"],
            "pretrain_cxr.yaml",
        ),
        "pretrain: missing file": (["pretrain", missing], "file not found"),
        "pretrain: bad YAML": (["pretrain", str(f["bad_yaml"])], "YAML (line 3"),
        "pretrain: experiment given": (["pretrain", str(f["wrong_key"])], "unknown setting"),
        "evaluate: not a run": (["evaluate", str(f["root"])], "not a finished run folder"),
        "score: missing file": (["score", missing, "-c", "random"], "file not found"),
        "score: missing package": (
            ["score", str(f["text_weights"]), "-c", "cxr-source", "--max-samples", "8"],
            "no model package 'cxr-source'",
        ),
        "score: missing --finetuned": (
            ["score", str(f["text_weights"]), "-c", "random", "--finetuned", missing],
            "--finetuned",
        ),
        "study: bad YAML": (["study", str(f["bad_yaml"]), "--out", out], "YAML (line 3"),
        "report: not a run": (["report", str(f["root"])], "not a finished run folder"),
        "package: not a run": (["package", str(f["root"])], "not a finished run folder"),
        "predict: missing package": (
            ["predict", "my-model", str(f["scan"])],
            "no model package 'my-model'",
        ),
        "embed: missing package": (
            ["embed", "my-model", str(f["scan"]), "--out", out + ".npy"],
            "no model package 'my-model'",
        ),
        "models import-weights: unknown model": (
            ["models", "import-weights", "resnet99", str(f["notes"])],
            "unknown backbone",
        ),
        "models import-weights: text file": (
            ["models", "import-weights", "resnet18", str(f["notes"])],
            "not a PyTorch checkpoint",
        ),
        "models show: missing package": (["models", "show", "my-model"], "no model package"),
        "models export: missing package": (
            ["models", "export", "my-model", "--out", out],
            "no model package",
        ),
        "data import: missing table": (
            ["data", "import", str(f["table"]), "--root", str(f["root"])],
            "nothing written",
        ),
        "data preview: wrong data path": (
            ["data", "preview", str(f["root"] / "nowhere")],
            "no manifest.json",
        ),
    }


CASE_NAMES = list(_cases(defaultdict(lambda: Path("/x"))))


@pytest.mark.parametrize("case", CASE_NAMES)
def test_a_mistake_ends_with_one_clear_line(case: str, files, monkeypatch, tmp_path) -> None:
    from medtl.cli import app

    monkeypatch.setenv("MEDTL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(ROOT)  # as from a checkout: configs/ holds the pretraining configs
    args, fragment = _cases(files)[case]
    result = runner.invoke(app, args)
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # no escape
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if "error: " in line]
    assert len(errors) == 1, result.stderr
    assert fragment in errors[0], errors[0]
    assert "a bug in medtl" not in errors[0]


def test_missing_package_names_the_config_that_builds_it(files, monkeypatch, tmp_path) -> None:
    from medtl.cli import app

    monkeypatch.setenv("MEDTL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(ROOT)
    result = runner.invoke(app, ["finetune", str(files["missing_package"])])
    assert result.stderr.strip().endswith(
        "no model package 'cxr-source' (folder or registered name); build it with "
        "`medtl pretrain configs/pretrain_cxr.yaml`"
    )
    fetch = runner.invoke(app, ["predict", "astra-ct", str(files["scan"])])
    assert "fetch it with `medtl models fetch astra-ct`" in fetch.stderr


def _medtl(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEDTL_HOME": str(home)}
    env.pop("MEDTL_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "medtl.cli", *args],
        capture_output=True, text=True, timeout=120, env=env, check=False, cwd=ROOT,
    )  # fmt: skip


def test_the_real_entry_point_prints_no_traceback(files, tmp_path) -> None:
    for args in (
        ["finetune", str(files["missing_package"])],
        ["finetune", str(files["wrong_key"])],
    ):
        out = _medtl(*args, home=tmp_path / "home")
        assert out.returncode == 2, out.stderr
        assert "Traceback" not in out.stderr
        lines = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1, out.stderr


def test_a_bug_keeps_its_traceback() -> None:
    app = typer.Typer(cls=UserErrorGroup)

    @app.command()
    def broken() -> None:
        json.loads("{")  # a library's ValueError: medtl passed it something wrong

    @app.command()
    def refused() -> None:
        from medtl.evaluation.bootstrap import bootstrap_ci

        bootstrap_ci([0, 1], [0.2, 0.8], confidence=2.0)  # medtl's own ValueError, on purpose

    bug = runner.invoke(app, ["broken"])
    assert isinstance(bug.exception, json.JSONDecodeError)  # propagates, traceback and all
    assert "a bug in medtl" in bug.stderr
    mine = runner.invoke(app, ["refused"])
    assert mine.exit_code == 2
    assert mine.stderr.strip() == "error: confidence must lie in (0, 1)"


def test_describe_error_formats() -> None:
    from pydantic import BaseModel, ConfigDict, ValidationError

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        lr: float

    with pytest.raises(ValidationError) as info:
        Config.model_validate({"lr": "fast", "epochs": 3})
    assert describe_error(info.value) == (
        "invalid Config: lr: Input should be a valid number, unable to parse string as a "
        "number; epochs: unknown setting"
    )
    with pytest.raises(yaml.YAMLError) as bad:
        yaml.safe_load("a: [1,\n")
    assert describe_error(bad.value).startswith("invalid YAML (line 2")
    assert describe_error(FileNotFoundError(2, "No such file or directory", "/d/x")) == (
        "No such file or directory: /d/x"
    )
    assert describe_error(ZeroDivisionError("x")) is None
