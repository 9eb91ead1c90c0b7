"""A package trained on PNGs imported with ``--modality DX`` takes PNG inputs as DX."""

from __future__ import annotations

import numpy as np
import torch
import yaml
from PIL import Image

from medtl.data.importer import import_manifest
from medtl.data.manifest import Manifest
from tests.transfer.conftest import write_square_dataset


def _run_on_declared_pngs(root, modality: str | None):
    """Import the square PNGs as a user would (CSV + --modality), train, evaluate."""
    from medtl.evaluation.run import evaluate_run
    from medtl.transfer.experiment import load_config, run_experiment

    images = write_square_dataset(root / "images")
    rows = ["image,label,patient_id,split"]
    rows += [f"{r.image},{r.label},{r.patient_id},{r.split}" for r in Manifest.load(images).records]
    table = root / "labels.csv"
    table.write_text("\n".join(rows) + "\n")
    report = import_manifest(
        table, images, modality=modality, label_names=["absent", "present"],
        read_images=False, out=root / "ds" / "manifest.json",
    )  # fmt: skip
    assert report.ok, [str(p) for p in report.problems]
    cfg = {
        "name": "declared",
        "data": {"dataset": "ds", "modality": "cxr", "spatial_size": [32, 32]},
        "model": {"backbone": "smallcnn"},
        "strategy": {"name": "scratch", "finetune_epochs": 1},
        "training": {"batch_size": 16, "amp": "none", "progress": "never", "seed": 0},
    }
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = run_experiment(load_config(path), root / "run")
    evaluate_run(run, n_resamples=50)
    return run


def _png(path):
    rng = np.random.default_rng(5)
    Image.fromarray(rng.normal(1000, 80, (32, 32)).clip(0, 65535).astype(np.uint16)).save(path)
    return path


def test_png_trained_package_takes_png_inputs_as_declared(tmp_path, monkeypatch) -> None:
    from medtl.data.modality import declared_modality
    from medtl.inference.predictor import Predictor
    from medtl.reports.package import build_package

    monkeypatch.setenv("MEDTL_HOME", str(tmp_path / "home"))
    torch.set_num_threads(1)
    run = _run_on_declared_pngs(tmp_path / "dx", "DX")
    dataset = tmp_path / "dx" / "ds"
    assert declared_modality(Manifest.load(dataset), dataset) == "DX"
    package = build_package(run, tmp_path / "pkg", register=False)
    png = _png(tmp_path / "new.png")
    result = Predictor.from_package(package).predict(png)
    assert result.scan.modality == "OT"  # the file itself still says nothing ...
    assert result.domain.checks["modality"] == "ok"  # ... and is taken as DX, like training
    assert not any("modality" in reason for reason in result.domain.reasons)
    assert result.probabilities is not None


def test_undeclared_or_dicom_training_keeps_the_caution(tmp_path) -> None:
    from medtl.data.modality import declared_modality

    images = write_square_dataset(tmp_path / "sq")  # records say OT: nothing was declared
    assert declared_modality(Manifest.load(images), images) is None
    manifest = Manifest.load(images)
    dicom_like = manifest.model_copy(
        update={"records": [r.model_copy(update={"modality": "DX"}) for r in manifest.records]}
    )
    assert declared_modality(dicom_like, images) == "DX"  # PNG files, declared DX
    for record in dicom_like.records:  # the same records pointing at DICOM files say nothing
        (images / record.image).write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    assert declared_modality(dicom_like, images) is None
