"""Every JSON file of a run folder (run, evaluation, report, model package with its domain
guard) validates against its schema in data_schemas/, and every written artifact reads back."""

from __future__ import annotations

import json
import shutil

import jsonschema
import torch

from tests.artifacts.schema_check import SCHEMA_DIR, validate_json_file


def test_every_json_file_of_a_run_folder_has_a_valid_schema(
    tiny_run, report_data, tmp_path, monkeypatch
) -> None:
    from medtl.artifacts import Evaluation, ModelCard, RunSummary
    from medtl.reports.builder import write_report_json
    from medtl.reports.package import build_package

    monkeypatch.setenv("MEDTL_HOME", str(tmp_path / "home"))
    torch.set_num_threads(1)
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("package", "report*"))
    write_report_json(report_data, run / "report.json")
    build_package(run, register=False, report=False)  # RUN/package, as `medtl package` does
    found = {
        p.relative_to(run).as_posix(): validate_json_file(p) for p in sorted(run.rglob("*.json"))
    }
    assert found == {
        "summary.json": "run_summary",
        "run_inputs.json": "run_inputs",
        "evaluation.json": "evaluation",
        "report.json": "report",
        "package/model.json": "model_card",
        "package/domain_guard.json": "domain_guard",
    }
    for cls, name in ((RunSummary, "summary.json"), (Evaluation, "evaluation.json")):
        assert cls.read(run / name).schema_version == cls.SCHEMA_VERSION
    assert ModelCard.read(run / "package" / "model.json").preprocessing is not None


def test_a_file_breaking_its_schema_is_caught(tiny_run) -> None:
    """The check above can fail: a summary without its required field does not validate."""
    data = json.loads((tiny_run / "summary.json").read_text(encoding="utf-8"))
    del data["train_images"]
    schema = json.loads((SCHEMA_DIR / "run_summary.schema.json").read_text(encoding="utf-8"))
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(data))
    assert any("train_images" in e.message for e in errors)
