"""``medtl models`` sub-app."""

from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from medtl.models import ModelCard, create_backbone, save_package, save_weights
from medtl.models.cli import app

torch.set_num_threads(1)
runner = CliRunner()


def test_backbones_lists_names() -> None:
    result = runner.invoke(app, ["backbones"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.output.splitlines()]
    assert names == sorted(names) and "resnet18" in names and "smallcnn" in names


def test_import_weights_reports_and_saves(tmp_path) -> None:
    src = create_backbone("smallcnn", spatial_dims=2, num_outputs=2)
    path = save_weights(src, tmp_path / "w.safetensors")
    out = tmp_path / "copy.safetensors"
    args = ["import-weights", "smallcnn", str(path), "--num-outputs", "2", "--json"]
    result = runner.invoke(app, [*args, "--save", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[: result.output.rindex("}") + 1])
    assert report["loaded_fraction"] == 1.0 and report["format"] == "native"
    assert out.is_file()
    bad = runner.invoke(app, ["import-weights", "resnet18", str(path)])
    assert bad.exit_code == 2
    assert "smallcnn" in bad.output


def test_register_packages_show(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MEDTL_HOME", str(tmp_path / "home"))
    model = create_backbone("smallcnn", spatial_dims=2)
    pkg = save_package(model, ModelCard(name="demo", version="0.2.0"), tmp_path / "pkg")
    assert runner.invoke(app, ["register", str(pkg)]).output.strip() == "demo@0.2.0"
    again = runner.invoke(app, ["register", str(pkg)])
    assert again.exit_code == 2 and "already registered" in again.output
    listing = runner.invoke(app, ["packages"])
    assert listing.output.split()[:2] == ["demo@0.2.0", "smallcnn"]
    shown = runner.invoke(app, ["show", "demo"])
    assert json.loads(shown.output)["architecture"]["name"] == "smallcnn"
    assert runner.invoke(app, ["show", "nothing"]).exit_code == 2
