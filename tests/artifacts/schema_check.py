"""Validate a JSON file medtl wrote against its committed schema in data_schemas/."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from medtl.schemas import FILES, SCHEMAS

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "data_schemas"


def validate_json_file(path: Path) -> str:
    """Validate ``path`` against the schema its file name maps to; return the schema stem."""
    stem = FILES.get(path.name)
    assert stem is not None, f"{path.name}: no schema in medtl.schemas.FILES"
    assert stem in SCHEMAS, stem
    schema = json.loads((SCHEMA_DIR / f"{stem}.schema.json").read_text(encoding="utf-8"))
    data = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(data)
    return stem
