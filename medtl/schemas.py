"""JSON Schemas of every file medtl reads or writes, generated from its pydantic models.

``python -m medtl.schemas --write data_schemas`` regenerates ``data_schemas/``; a test checks
the committed files are in sync with the models.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: schema file stem -> "module:attribute" of a pydantic model or a function returning a schema.
#: ``FILES`` maps the JSON files medtl writes to their schema stem.
SCHEMAS: dict[str, str] = {
    "manifest": "medtl.data.manifest:Manifest",
    "model_card": "medtl.artifacts.card:ModelCard",
    "run_summary": "medtl.artifacts.run:RunSummary",
    "run_inputs": "medtl.artifacts.run:RunInputs",
    "evaluation": "medtl.artifacts.evaluation:Evaluation",
    "learning_curves": "medtl.artifacts.curves:LearningCurves",
    "sample_efficiency": "medtl.artifacts.curves:SampleEfficiencyFile",
    "comparison": "medtl.artifacts.curves:Comparison",
    "transferability": "medtl.artifacts.scores:TransferabilityScores",
    "prediction_details": "medtl.artifacts.details:PredictionDetails",
    "preprocessing": "medtl.artifacts.preprocessing:PreprocessingSpec",
    "domain_guard": "medtl.artifacts.guard:DomainGuardFile",
    "experiment_config": "medtl.transfer.experiment:ExperimentConfig",
    "training_config": "medtl.training.config:TrainingConfig",
    "review_export": "medtl.review.schemas:review_export_schema",
    "review_import": "medtl.review.importer:review_import_schema",
    "report": "medtl.reports.schema:report_schema",
    "pretrain_config": "medtl.transfer.pretrain:PretrainConfig",
    "study_config": "medtl.transfer.arms:ArmsConfig",
    "histogram_baseline": "medtl.artifacts.baseline:HistogramBaseline",
    "study_arms": "medtl.artifacts.study:StudyArms",
    "demo_summary": "medtl.artifacts.demo:DemoSummary",
}


#: JSON file name (in run folders, learning-curve folders, study folders, dataset folders and
#: packages) -> schema stem. The demo's ``MEDTL_HOME/demo/<size>/summary.json`` shares its
#: name with a run's: its schema is ``demo_summary``.
FILES: dict[str, str] = {
    "summary.json": "run_summary",
    "run_inputs.json": "run_inputs",
    "evaluation.json": "evaluation",
    "learning_curves.json": "learning_curves",
    "sample_efficiency.json": "sample_efficiency",
    "verdict.json": "comparison",
    "transferability.json": "transferability",
    "model.json": "model_card",
    "report.json": "report",
    "manifest.json": "manifest",
    "domain_guard.json": "domain_guard",
    "histogram_baseline.json": "histogram_baseline",
    "arms.json": "study_arms",
}


def schema_for(target: str) -> dict[str, Any]:
    """Return the JSON Schema of ``"module:attribute"`` (a pydantic model class)."""
    module_name, attr = target.split(":")
    obj = getattr(importlib.import_module(module_name), attr)
    schema = obj.model_json_schema() if hasattr(obj, "model_json_schema") else obj()
    schema.setdefault("$schema", "https://json-schema.org/draft/2020-12/schema")
    return schema


def render(schema: dict[str, Any]) -> str:
    """Serialise a schema exactly as it is committed (sorted keys, 2-space indent)."""
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(out_dir: Path) -> list[Path]:
    """Write every schema in :data:`SCHEMAS` to ``out_dir/<name>.schema.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, target in SCHEMAS.items():
        path = out_dir / f"{name}.schema.json"
        path.write_text(render(schema_for(target)), encoding="utf-8")
        written.append(path)
        logger.info("wrote %s", path)
    return written


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: ``python -m medtl.schemas --write DIR``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", type=Path, default=Path("data_schemas"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write_schemas(args.write)


if __name__ == "__main__":  # pragma: no cover
    main()
