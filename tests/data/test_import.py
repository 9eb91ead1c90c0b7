"""User manifest import (every problem at once), preview grid and the ``medtl data`` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medtl.data.cli import app
from medtl.data.importer import import_manifest
from medtl.data.manifest import Manifest, ManifestRecord
from medtl.data.preview import pick_records, preview_grid
from medtl.data.splits import check_splits
from tests.io.dicom_factory import PATIENT_NAME, dx_image, write

runner = CliRunner()


def _png(path: Path, seed: int = 0, size: int = 32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(path)


@pytest.fixture
def user_data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for i in range(8):
        _png(root / "img" / f"{i}.png", i)
    write(dx_image(np.full((40, 40), 1000, dtype=np.uint16)), root / "img" / "dx.dcm")
    (root / "img" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


BROKEN = """image,label,patient_id,split
img/0.png,0,P1,train
img/1.png,1,P1,test
img/missing.png,0,P2,train
img/bad.png,1,P3,val
img/2.png,cat,P4,train
img/3.png,0,,train
img/4.png,1,P5,holdout_set
img/0.png,0,P6,train
../outside.png,0,P7,test
img/5.png,3,P8,train
img/dx.dcm,1,P9,test
"""


def test_broken_csv_reports_every_problem_at_once(user_data: Path) -> None:
    csv = user_data / "broken.csv"
    csv.write_text(BROKEN)
    report = import_manifest(csv, user_data, label_names=["no_nodule", "nodule"])
    found = sorted((p.row, p.column) for p in report.errors)
    assert found == [
        (1, "patient_id"),  # P1 in train and test (rows 1 and 2)
        (3, "image"),  # missing file
        (4, "image"),  # unreadable scan
        (5, "label"),  # not a number or class name
        (6, "patient_id"),  # empty
        (7, "split"),  # unknown split
        (8, "image"),  # duplicate of row 1
        (9, "image"),  # leaves the root
        (10, "label"),  # out of range for 2 classes
    ]
    messages = " | ".join(str(p) for p in report.errors)
    assert "file not found: img/missing.png" in messages
    assert "duplicate of row 1" in messages
    assert "P1" not in messages  # rows are named, never patient IDs
    assert PATIENT_NAME not in messages
    assert report.manifest is None and report.written is None
    assert not (user_data / "manifest.json").exists()
    assert report.counts["test"] == {"nodule": 2}  # the valid rows, by split


def test_clean_csv_without_splits_gets_grouped_splits(user_data: Path) -> None:
    rows = ["image,label,patient_id,sex"]
    for i in range(8):
        rows.append(f"img/{i}.png,{'nodule' if i % 2 else 'no_nodule'},P{i // 2},{'FM'[i % 2]}")
    rows.append("img/dx.dcm,nodule,P9,F")
    csv = user_data / "clean.csv"
    csv.write_text("\n".join(rows) + "\n")
    report = import_manifest(csv, user_data, label_names=["no_nodule", "nodule"], task="nodule")
    assert report.ok, [str(p) for p in report.problems]
    assert report.splits_assigned
    m = Manifest.load(report.written)
    assert report.written == user_data / "manifest.json"
    assert check_splits(m).ok
    assert len(m.patients()) == 5 and len({r.split for r in m.records}) == 4
    assert [r.label for r in m.records] == [0, 1] * 4 + [1]
    assert m.records[0].attributes == {"sex": "F"}
    assert sum(sum(c.values()) for c in report.counts.values()) == 9


def test_json_records_and_partial_splits(user_data: Path) -> None:
    items = [
        {"image": "img/0.png", "label": 0, "patient_id": "A", "split": "train"},
        {"image": "img/1.png", "label": 1, "patient_id": "B"},
    ]
    path = user_data / "m.json"
    path.write_text(json.dumps(items))
    report = import_manifest(path, user_data, read_images=False)
    assert [(p.column, p.row) for p in report.errors] == [("split", 0)]
    assert "give a split for every row or for none" in report.errors[0].message


def test_missing_required_column(user_data: Path) -> None:
    csv = user_data / "nocol.csv"
    csv.write_text("image,label\nimg/0.png,0\n")
    report = import_manifest(csv, user_data)
    assert [p.column for p in report.errors] == ["patient_id"]


def test_cli_import_exit_codes(user_data: Path) -> None:
    csv = user_data / "broken.csv"
    csv.write_text(BROKEN)
    result = runner.invoke(app, ["import", str(csv), "--root", str(user_data)])
    assert result.exit_code == 1
    assert "file not found" in result.output
    good = user_data / "good.csv"
    good.write_text(
        "image,label,patient_id\n" + "".join(f"img/{i}.png,{i % 2},P{i}\n" for i in range(8))
    )
    result = runner.invoke(app, ["import", str(good), "--root", str(user_data), "--labels", "a,b"])
    assert result.exit_code == 0, result.output
    assert Manifest.load(user_data).label_names == ["a", "b"]


def test_preview_draws_nodule_boxes(tmp_path: Path) -> None:
    records = []
    for i in range(4):
        _png(tmp_path / f"{i}.png", i, size=64)
        box = (10.0, 12.0, 40.0, 44.0) if i % 2 else None
        records.append(
            ManifestRecord(
                image=f"{i}.png", label=i % 2, patient_id=f"P{i}", split="test",
                modality="DX", nodule_box_xyxy=box,
            )
        )  # fmt: skip
    m = Manifest(name="toy", task="nodule", label_names=["none", "nodule"], records=records)
    m.save(tmp_path)
    out = preview_grid(tmp_path, tmp_path / "grid.png", n=4, cols=2)
    grid = np.asarray(Image.open(out).convert("RGB")).astype(int)
    red = (grid[..., 0] > 200) & (grid[..., 1] < 80) & (grid[..., 2] < 80)
    assert red.sum() > 100  # the boxes are drawn in red on grey images
    # without boxes nothing is red
    plain = m.model_copy(
        update={"records": [r.model_copy(update={"nodule_box_xyxy": None}) for r in records]}
    )
    out2 = preview_grid(tmp_path, tmp_path / "plain.png", n=4, cols=2, manifest=plain)
    grid2 = np.asarray(Image.open(out2).convert("RGB")).astype(int)
    assert ((grid2[..., 0] > 200) & (grid2[..., 1] < 80) & (grid2[..., 2] < 80)).sum() == 0


def test_pick_records_balances_labels() -> None:
    records = [
        ManifestRecord(image=f"{i}.png", label=int(i >= 18), patient_id=str(i), split="train")
        for i in range(20)
    ]
    m = Manifest(name="x", records=records)
    picked = pick_records(m, 4, seed=0)
    assert sorted(r.label for r in picked) == [0, 0, 1, 1]
    assert picked == pick_records(m, 4, seed=0)


def test_cli_preview_of_a_ct_build(tiny_ct2: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["preview", str(tiny_ct2), "--out", str(tmp_path / "g.png"), "--n", "6"]
    )
    assert result.exit_code == 0, result.output
    img = Image.open(tmp_path / "g.png")
    assert img.size[0] > 300 and img.size[1] > 300
    result = runner.invoke(app, ["preview", str(tmp_path), "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "no manifest.json" in result.output


def test_cli_fetch_uses_the_cache(sources_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDTL_HOME", str(sources_home))
    result = runner.invoke(app, ["fetch", "mri_mni152"])
    assert result.exit_code == 0, result.output
    assert "nilearn==0.14.1 (BSD-3-Clause) verified" in result.output
    result = runner.invoke(app, ["fetch", "nope"])
    assert result.exit_code == 2 and "unknown source" in result.output


def test_cli_build_demo_ct_tiny(
    sources_home: Path, tiny_ct2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDTL_HOME", str(sources_home))
    args = ["build-demo", "--size", "tiny", "--only", "ct", "--ndim", "2", "--out", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["datasets"]["ct_structure_2d"] == 76  # 4 lung lobes x (9 + 3 + 3 + 4)
    baseline = json.loads((tmp_path / "ct_structure_2d" / "histogram_baseline.json").read_text())
    assert baseline["n_test"] == 16
    # same seed, same dataset: records and bytes equal the fixture's build through the API
    built, first = Manifest.load(tmp_path / "ct_structure_2d"), Manifest.load(tiny_ct2)
    assert [r.model_dump() for r in built.records] == [r.model_dump() for r in first.records]
    for r in first.records:
        assert (tiny_ct2 / r.image).read_bytes() == (
            tmp_path / "ct_structure_2d" / r.image
        ).read_bytes()
    result = runner.invoke(app, ["build-demo", "--only", "pet"])
    assert result.exit_code == 2 and "unknown part" in result.output
    result = runner.invoke(app, ["build-demo", "--only", "cxr", "--difficulty", "trivial"])
    assert result.exit_code == 2 and "unknown difficulty" in result.output


def test_cli_build_demo_cxr_with_a_difficulty_preset(
    sources_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDTL_HOME", str(sources_home))
    args = ["build-demo", "--size", "tiny", "--only", "cxr", "--difficulty", "hard"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    built = Manifest.load(tmp_path / "cxr_nodule")
    assert "Difficulty preset 'hard'" in built.description
    sizes = [float(r.nodule_diameter_mm) for r in built.records if r.label == 1]
    assert sizes and all(4.0 <= d <= 15.0 for d in sizes)  # the hard preset's range
