"""A tiny binary image dataset written as real 16-bit PNG files with a manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtl.data.manifest import Manifest, ManifestRecord


def write_square_dataset(root: Path, n_patients: int = 40, per_patient: int = 2) -> Path:
    """Positives carry a bright square; splits are by patient (24/6/6/4 of 40)."""
    rng = np.random.default_rng(0)
    records = []
    splits = ["train"] * 24 + ["val"] * 6 + ["calibration"] * 6 + ["test"] * 4
    splits = (splits * ((n_patients + 39) // 40))[:n_patients]
    for p in range(n_patients):
        for k in range(per_patient):
            label = (p + k) % 2
            img = rng.normal(1000, 80, (32, 32))
            if label:
                size = int(rng.integers(5, 10))
                y0, x0 = rng.integers(2, 32 - size - 2, 2)
                img[y0 : y0 + size, x0 : x0 + size] += 500
            rel = f"images/p{p:03d}_{k}.png"
            (root / "images").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(img, 0, 65535).astype(np.uint16)).save(root / rel)
            records.append(
                ManifestRecord(
                    image=rel,
                    label=label,
                    patient_id=f"P{p:03d}",
                    split=splits[p],
                    modality="OT",
                    task="square",
                    nodule_diameter_mm=float(size) if label else None,
                    attributes={"site": "A" if p % 2 else "B"},
                )
            )
    Manifest(
        name="squares",
        task="square",
        label_names=["absent", "present"],
        simulated=True,
        description="synthetic squares for tests",
        records=records,
    ).save(root)
    return root


@pytest.fixture(scope="session")
def square_dataset(tmp_path_factory) -> Path:
    return write_square_dataset(tmp_path_factory.mktemp("squares"))


def square_config(dataset: Path, strategy: str = "scratch", **extra):
    """An experiment config on the square dataset (smallcnn, 32 px, a few epochs)."""
    from medtl.transfer.experiment import ExperimentConfig

    return ExperimentConfig.model_validate(
        {
            "name": "squares-test",
            "data": {"dataset": str(dataset), "modality": "cxr", "spatial_size": [32, 32]},
            "model": {"backbone": "smallcnn"},
            "strategy": {"name": strategy, "head_epochs": 3, "finetune_epochs": 3, "head_lr": 0.01},
            "training": {
                "batch_size": 16,
                "amp": "none",
                "progress": "never",
                "monitor": "auroc",
                "mode": "max",
                "seed": 0,
            },
            **extra,
        }
    )


@pytest.fixture(scope="session")
def square_run(tmp_path_factory, square_dataset) -> Path:
    """A finished, evaluated scratch run on the square dataset (shared by several tests)."""
    from medtl.evaluation.run import evaluate_run
    from medtl.transfer.experiment import run_experiment

    run = run_experiment(square_config(square_dataset), tmp_path_factory.mktemp("run") / "run")
    evaluate_run(run, n_resamples=200)
    return run
