"""The synthetic focal-opacity pretext: local blobs, replayable draws, a learnable stage."""

from __future__ import annotations

import json

import numpy as np
import torch

from medtl.transfer.lesion_pretext import BlobSpec, LesionPairs, pair_groups, paste_blob
from medtl.transfer.pretrain import PretrainConfig, run_pretraining


def test_blob_is_local_bright_and_bounded() -> None:
    image = np.full((1, 64, 64), 0.3, dtype=np.float32)
    spec = BlobSpec(radius=(0.1, 0.1), contrast=(0.2, 0.2), lobulation=0.0)
    out = paste_blob(image, np.random.default_rng(0), spec)
    diff = out - image
    assert diff.min() >= 0.0  # an opacity only adds density
    assert abs(float(diff.max()) - 0.2) < 0.01  # the dome peaks at the contrast
    changed = np.argwhere(diff[0] > 0)
    # everything changed lies inside the 6.4 px radius around one centre
    centre = changed.mean(axis=0)
    assert np.sqrt(((changed - centre) ** 2).sum(axis=1)).max() <= 6.5
    assert 50 < len(changed) < 140  # about pi * 6.4^2 = 129 pixels
    assert out.max() <= 1.0


def test_twins_differ_only_by_the_blob_and_replay() -> None:
    base = [{"image": torch.full((1, 32, 32), 0.5), "label": 7} for _ in range(50)]
    a, b = LesionPairs(base, seed=3), LesionPairs(base, seed=3)
    assert len(a) == 100 and pair_groups(50)[4] == [8, 9]
    first = [a[i] for i in range(100)]
    again = [b[i] for i in range(100)]
    for x, y in zip(first, again, strict=True):
        assert x["label"] == y["label"] and torch.equal(x["image"], y["image"])
    # the images' own label (7) is never used: even positions clean, odd ones with a blob
    assert [s["label"] for s in first] == [0, 1] * 50
    for clean, blob in zip(first[::2], first[1::2], strict=True):
        assert torch.equal(clean["image"], base[0]["image"])
        assert (blob["image"] > 0.5).any() and (blob["image"] >= 0.5).all()
    # a new blob every epoch for training, the same one for validation
    assert not torch.equal(a[1]["image"], first[1]["image"])
    fixed = LesionPairs(base, seed=3, fixed=True)
    assert torch.equal(fixed[1]["image"], fixed[1]["image"])


def test_lesion_stage_learns_and_records_its_metric(tmp_path, square_dataset, monkeypatch):
    monkeypatch.setenv("MEDTL_HOME", str(tmp_path / "home"))
    cfg = PretrainConfig.model_validate(
        {
            "name": "squares-lesion",
            "source_task": "synthetic focal opacity (self-supervised)",
            "data": {"dataset": str(square_dataset), "modality": "cxr", "spatial_size": [32, 32]},
            "backbone": "smallcnn",
            "stages": ["lesion"],
            "lesion_epochs": 4,
            "lesion_radius": [0.1, 0.2],
            "lesion_contrast": [0.3, 0.5],
            "pool": "avgmax",
            "lr": 0.01,
            "training": {"batch_size": 16, "amp": "none", "progress": "never"},
        }
    )
    package = run_pretraining(cfg, tmp_path / "pre")
    card = json.loads((package / "model.json").read_text())
    assert card["strategy"] == "pretrain: lesion"
    assert card["metrics"]["lesion_epochs"] == 4
    assert card["metrics"]["lesion_val_auroc"] > 0.6
    model = json.loads((package / "model.json").read_text())
    assert "lesion" in json.dumps(model["training"])
