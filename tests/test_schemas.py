"""The committed data_schemas/ files are exactly what the pydantic models generate."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtl.schemas import SCHEMAS, render, schema_for

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "data_schemas"


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_schema_file_in_sync(name: str) -> None:
    path = SCHEMA_DIR / f"{name}.schema.json"
    assert path.exists(), f"missing {path}; run: python -m medtl.schemas --write data_schemas"
    assert path.read_text(encoding="utf-8") == render(schema_for(SCHEMAS[name])), (
        f"{path.name} is stale; run: python -m medtl.schemas --write data_schemas"
    )


def test_every_schema_file_is_generated() -> None:
    stems = {p.name.removesuffix(".schema.json") for p in SCHEMA_DIR.glob("*.schema.json")}
    assert stems == set(SCHEMAS), "data_schemas/ holds files no model generates (or misses some)"
