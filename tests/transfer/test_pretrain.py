"""Models Genesis corruptions and source pretraining into an importable backbone package."""

from __future__ import annotations

import json

import numpy as np

from medtl.transfer.genesis import corrupt, inpaint, local_pixel_shuffle, nonlinear_intensity
from medtl.transfer.pretrain import PretrainConfig, run_pretraining
from tests.transfer.conftest import square_config


def test_genesis_corruptions_are_replayable_and_bounded() -> None:
    x = np.random.default_rng(0).random((1, 16, 16)).astype(np.float32)
    a = corrupt(x, np.random.default_rng(5))
    b = corrupt(x, np.random.default_rng(5))
    assert np.array_equal(a, b) and a.dtype == np.float32 and a.shape == x.shape
    assert a.min() >= 0.0 and a.max() <= 1.0
    shuffled = local_pixel_shuffle(x, np.random.default_rng(1), n_blocks=20)
    assert np.allclose(np.sort(shuffled.ravel()), np.sort(x.ravel()))  # a permutation
    assert not np.array_equal(shuffled, x)
    mapped = nonlinear_intensity(np.linspace(0, 1, 50, dtype=np.float32), np.random.default_rng(2))
    assert np.all(np.diff(mapped) >= -1e-6) or np.all(np.diff(mapped) <= 1e-6)  # monotone
    painted = inpaint(x, np.random.default_rng(3))
    assert (painted != x).mean() > 0.01
    vol = np.random.default_rng(0).random((1, 8, 8, 8)).astype(np.float32)
    assert corrupt(vol, np.random.default_rng(0)).shape == vol.shape


def test_pretrain_package_imports_into_transfer(tmp_path, square_dataset, monkeypatch) -> None:
    monkeypatch.setenv("MEDTL_HOME", str(tmp_path / "home"))
    cfg = PretrainConfig.model_validate(
        {
            "name": "squares-src",
            "source_domain": "synthetic squares",
            "source_task": "square present",
            "data": {"dataset": str(square_dataset), "modality": "cxr", "spatial_size": [32, 32]},
            "backbone": "smallcnn",
            "restoration_epochs": 2,
            "supervised_epochs": 2,
            "lr": 0.01,
            "training": {
                "batch_size": 16,
                "amp": "none",
                "progress": "never",
                "monitor": "auroc",
                "mode": "max",
            },
        }
    )
    package = run_pretraining(cfg, tmp_path / "pre")
    card = json.loads((package / "model.json").read_text())
    assert card["source_domain"] == "synthetic squares"
    assert card["metrics"]["restoration_val_mse"] < 0.25
    assert card["data_hash"] and card["config_hash"]
    env = card["environment"]  # the pretraining run's own provenance
    assert env["device"] == "cpu" and env["threads"] >= 1 and "torch" in env["versions"]
    rows = (tmp_path / "pre" / "restoration" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3  # header + 2 epochs
    from medtl.models.package import list_packages

    assert [p.name for p in list_packages()] == ["squares-src"]
    from medtl.transfer.experiment import build_model

    exp = square_config(square_dataset, strategy="frozen_base")
    exp = exp.model_copy(update={"model": exp.model.model_copy(update={"weights": package})})
    model = build_model(exp, 1, [])
    assert model.load_report.loaded_fraction == 1.0
    # the source a run records is the one the package's card states
    assert model.config.source_domain == "synthetic squares"
