"""Manifests that travel: ``data import --out`` elsewhere, ``--absolute-paths``, missing images.

The researcher's path: images under one folder, the manifest written to another, a config
pointing at that manifest, then training reads the images.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from medtl.data.cli import app as data_app
from medtl.data.datasets import build_datasets
from medtl.data.manifest import Manifest, ManifestRecord, MissingImagesError, require_images
from medtl.transfer.experiment import ExperimentConfig

runner = CliRunner()
SPLITS = ["train"] * 6 + ["val"] * 2 + ["test"] * 2


@pytest.fixture
def images(tmp_path: Path) -> tuple[Path, Path]:
    """A root with 10 PNGs of 10 patients and the table that lists them."""
    root = tmp_path / "study" / "images"
    rng = np.random.default_rng(0)
    rows = ["image,label,patient_id,split"]
    for i, split in enumerate(SPLITS):
        (root / "png").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(
            root / "png" / f"{i}.png"
        )
        rows.append(f"png/{i}.png,{i % 2},P{i},{split}")
    table = tmp_path / "study" / "labels.csv"
    table.write_text("\n".join(rows) + "\n")
    return root, table


def _spec():
    cfg = ExperimentConfig.model_validate(
        {"name": "x", "data": {"dataset": "unused", "modality": "cxr", "spatial_size": [16, 16]}}
    )
    return cfg.preprocessing()


def _import(table: Path, root: Path, *extra: str) -> None:
    result = runner.invoke(
        data_app, ["import", str(table), "--root", str(root), "--no-read", *extra]
    )
    assert result.exit_code == 0, result.output


def test_out_elsewhere_writes_paths_relative_to_the_manifest(images, tmp_path) -> None:
    root, table = images
    out = tmp_path / "work" / "manifests" / "mine.json"
    _import(table, root, "--out", str(out))
    manifest = Manifest.load(out)
    assert manifest.records[0].image == "../../study/images/png/0.png"
    data = build_datasets(out, _spec(), cache="none")  # a manifest file, not a folder
    assert data.root == out.parent
    assert data.train_plain[0]["image"].shape[-2:] == (16, 16)
    # the preview reads the same images through the manifest file
    result = runner.invoke(
        data_app, ["preview", str(out), "--out", str(tmp_path / "grid.png"), "--n", "4"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "grid.png").stat().st_size > 1000
    # the same through a folder
    folder_out = tmp_path / "work" / "ds"
    _import(table, root, "--out", str(folder_out))
    assert Manifest.load(folder_out).records[3].image == "../../study/images/png/3.png"
    assert len(build_datasets(folder_out, _spec(), cache="none").val) == 2


def test_default_out_keeps_root_relative_paths(images) -> None:
    root, table = images
    _import(table, root)
    assert [r.image for r in Manifest.load(root).records][:2] == ["png/0.png", "png/1.png"]
    assert require_images(Manifest.load(root), root) == root


def test_absolute_paths_survive_moving_the_manifest(images, tmp_path) -> None:
    root, table = images
    out = tmp_path / "a" / "manifest.json"
    _import(table, root, "--out", str(out), "--absolute-paths")
    first = Manifest.load(out).records[0].image
    assert first == (root / "png" / "0.png").as_posix() and Path(first).is_absolute()
    moved = tmp_path / "elsewhere" / "deeper" / "manifest.json"
    moved.parent.mkdir(parents=True)
    shutil.move(out, moved)
    assert len(build_datasets(moved, _spec(), cache="none").train_plain) == 6


def test_missing_image_names_the_file_and_the_manifest(images, tmp_path) -> None:
    root, table = images
    out = tmp_path / "work" / "manifest.json"
    _import(table, root, "--out", str(out))
    (root / "png" / "4.png").unlink()
    with pytest.raises(MissingImagesError) as info:
        build_datasets(out, _spec(), cache="none")
    message = str(info.value)
    assert str(out) in message and str(root / "png" / "4.png") in message
    assert message.startswith("1 of 10 image(s) listed in")


def test_finetune_on_a_manifest_with_a_missing_image_is_one_line(images, tmp_path) -> None:
    from medtl.cli import app

    root, table = images
    out = tmp_path / "work" / "manifest.json"
    _import(table, root, "--out", str(out))
    (root / "png" / "2.png").unlink()
    config = tmp_path / "work" / "exp.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "mine",
                "data": {"dataset": "manifest.json", "modality": "cxr", "spatial_size": [16, 16]},
                "model": {"backbone": "smallcnn"},
                "strategy": {"name": "scratch", "finetune_epochs": 1},
                "training": {"progress": "never", "amp": "none"},
            }
        )
    )
    result = runner.invoke(app, ["finetune", str(config), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, not an escaped error
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "png/2.png" in lines[0] and str(out) in lines[0]


def test_records_accept_parent_and_absolute_paths() -> None:
    up = ManifestRecord(image="../imgs/0.png", label=0, patient_id="P", split="train")
    absolute = ManifestRecord(image="/data/0.png", label=0, patient_id="P", split="train")
    assert up.image == "../imgs/0.png" and absolute.image == "/data/0.png"
    with pytest.raises(ValueError, match="separator"):
        ManifestRecord(image="imgs\\0.png", label=0, patient_id="P", split="train")
