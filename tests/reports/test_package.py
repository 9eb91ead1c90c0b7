"""A model package built from a run loads, predicts like the run's model, and is registered."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from medtl.artifacts import RunSummary


def test_package_from_run_loads_with_full_card(tiny_run, tmp_path, monkeypatch) -> None:
    from safetensors.torch import load_file

    from medtl.models.package import list_packages, load_package
    from medtl.reports.package import build_package

    monkeypatch.setenv("MEDTL_HOME", str(tmp_path / "home"))
    torch.set_num_threads(1)
    folder = build_package(tiny_run, tmp_path / "pkg", name="squares", version="1.2.0")
    names = {p.name for p in folder.iterdir()}
    assert {"weights.safetensors", "model.json", "report.html"} <= names
    assert {"domain_guard.json", "domain_guard.safetensors"} <= names
    assert 'id="failure-cases"' in (folder / "report.html").read_text()

    model, card = load_package(folder)
    summary = RunSummary.read(tiny_run / "summary.json")
    evaluation = json.loads((tiny_run / "evaluation.json").read_text())
    assert card.ref == "squares@1.2.0"
    assert card.calibration == evaluation["calibrator"]
    points = {p.name: p for p in card.operating_points}
    assert set(points) == set(evaluation["operating_points_chosen"])
    for name, chosen in evaluation["operating_points_chosen"].items():
        assert points[name].threshold == pytest.approx(chosen["threshold"])
        assert points[name].metrics["chosen_on"] == "calibration"
        assert "sensitivity" in points[name].metrics["test"]
    assert card.preprocessing.spatial_size == [32, 32]
    assert card.preprocessing.intensity.kind == "percentile"
    assert card.data_hash == summary.data_hash and card.config_hash == summary.config_hash
    assert card.strategy == "full"
    # the run starts from no weights: the config's source text describes nothing it used
    assert card.source_domain is None and card.source_stated_by == "no starting weights"
    assert any("source_domain" in w for w in card.config_warnings)
    assert card.labels == ["absent", "present"]
    assert card.metrics["auroc"]["estimate"] == pytest.approx(
        evaluation["test"]["auroc"]["estimate"]
    )
    assert any("simulated" in lim for lim in card.limitations)
    assert all("/" not in str(p.get("name", "")) for p in card.training["phases"])

    # the packaged weights are the run's weights
    run_state = load_file(str(tiny_run / "model.safetensors"))
    for key, value in model.state_dict().items():
        assert torch.equal(value, run_state[key]), key

    refs = [p.ref for p in list_packages()]
    assert refs == ["squares@1.2.0"]
    registered = {p.name for p in list_packages()[0].path.iterdir()}
    assert "domain_guard.json" in registered

    with pytest.raises(FileExistsError):
        build_package(tiny_run, folder, register=False)


def test_predictor_reads_the_built_package(tiny_run, tmp_path, monkeypatch) -> None:
    from medtl.data.manifest import Manifest
    from medtl.inference.predictor import Predictor
    from medtl.io import load_scan
    from medtl.reports.package import build_package

    monkeypatch.setenv("MEDTL_HOME", str(tmp_path / "home"))
    torch.set_num_threads(1)
    folder = build_package(tiny_run, tmp_path / "pkg", register=False, report=False)
    assert not (folder / "report.html").exists()
    evaluation = json.loads((tiny_run / "evaluation.json").read_text())
    scores = evaluation["test_scores"]

    exp = yaml.safe_load((tiny_run / "experiment.yaml").read_text())
    manifest = Manifest.load(exp["data"]["dataset"])
    index = scores["index"][0]
    scan = load_scan(f"{exp['data']['dataset']}/{manifest.records[index].image}")
    result = Predictor.from_package(folder).predict(scan)
    # the package's calibrated probability is the one the evaluation computed
    assert result.probability == pytest.approx(scores["prob"][0], abs=1e-4)


def test_package_build_fails_without_its_domain_guard(tiny_run, tmp_path, monkeypatch) -> None:
    """A broken medtl.inference import, or missing pooled features, stop the build: a model
    package must not ship without its domain guard."""
    import shutil
    import sys

    from medtl.reports.package import build_package

    monkeypatch.setenv("MEDTL_HOME", str(tmp_path / "home"))
    torch.set_num_threads(1)
    monkeypatch.setitem(sys.modules, "medtl.inference.domain", None)  # import raises
    with pytest.raises(ImportError):
        build_package(tiny_run, tmp_path / "pkg", register=False, report=False)
    assert not (tmp_path / "pkg" / "model.json").exists()
    monkeypatch.delitem(sys.modules, "medtl.inference.domain")

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("features_*", "package"))
    with pytest.raises(FileNotFoundError, match="domain guard"):
        build_package(run, tmp_path / "pkg2", register=False, report=False)
    assert not (tmp_path / "pkg2" / "model.json").exists()
