"""The importer reports damaged scans as unreadable and lets bugs fail loudly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtl.data.importer import import_manifest
from medtl.io import raster


def _data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8)).save(
            root / "img" / f"{i}.png"
        )
    (root / "img" / "cut.png").write_bytes((root / "img" / "0.png").read_bytes()[:60])
    rows = ["image,label,patient_id"] + [f"img/{i}.png,{i % 2},P{i}" for i in range(4)]
    (root / "m.csv").write_text("\n".join([*rows, "img/cut.png,1,P9"]) + "\n")
    return root


def test_damaged_scan_is_reported_as_unreadable(tmp_path: Path) -> None:
    root = _data(tmp_path)
    report = import_manifest(root / "m.csv", root)
    assert [(p.row, p.column) for p in report.errors] == [(5, "image")]
    assert "unreadable scan img/cut.png" in report.errors[0].message
    assert report.manifest is None


def test_a_bug_in_the_loader_is_not_reported_as_an_unreadable_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _data(tmp_path)

    def broken(*args, **kwargs):
        raise TypeError("a bug in medtl's raster loader")

    monkeypatch.setattr(raster, "load_raster", broken)
    with pytest.raises(TypeError, match="bug in medtl"):
        import_manifest(root / "m.csv", root)
