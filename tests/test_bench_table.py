"""The benchmark table says whether each target is met (bench/run_all.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

RUN_ALL = Path(__file__).resolve().parents[1] / "bench" / "run_all.py"


@pytest.fixture(scope="module")
def run_all():
    spec = importlib.util.spec_from_file_location("bench_run_all", RUN_ALL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"ratio": 0.96, "target": 0.95}, "yes"),
        ({"ratio": 0.86, "target": 0.95}, "no"),
        ({"ratio": 1.4, "target": "ratio < 2", "ours": 0.5}, "yes"),
        ({"ratio": 2.4, "target": "ratio < 2", "ours": 0.5}, "no"),
        ({"ratio": 1.4, "target": "ours < 1.5 s; ratio < 2", "ours": 1.7}, "no"),
        ({"ratio": 1.4, "target": "ours < 1.5 s; ratio < 2", "ours": 0.7}, "yes"),
        ({"ratio": 4.9, "target": ">= 1.0"}, "yes"),
        ({"ratio": 0.2, "target": "share of total"}, ""),
        ({"ratio": None, "target": 2}, ""),
    ],
)
def test_target_met(run_all, row, expected):
    assert run_all.target_met(row) == expected


def test_markdown_has_met_column(run_all):
    result = {
        "machine": {
            "date": "d", "cpu": "c", "cores": "2", "gpu": "none", "torch": "t", "monai": "m",
        },
        "rows": [
            {"name": "a", "ours": 1.0, "baseline": 2.0, "ratio": 0.5, "target": 0.95,
             "unit": "x", "status": "ok"},
        ],
    }  # fmt: skip
    table = run_all.to_markdown(result)
    assert "| met |" in table
    assert "| a | 1 | 2 | 0.5 | 0.95 | no | x | ok |" in table


def test_rerun_keeps_the_hand_written_sections(run_all, tmp_path):
    md = tmp_path / "results.md"
    md.write_text("old table\n\n## PACS round trip\n| a | b |\n\n## Foundation\ntext\n")
    kept = run_all.kept_sections(md)
    assert kept.startswith("\n## PACS round trip") and kept.endswith("## Foundation\ntext\n")
    assert "old table" not in kept
    assert run_all.kept_sections(tmp_path / "absent.md") == ""
    md.write_text("only a table\n")
    assert run_all.kept_sections(md) == ""
