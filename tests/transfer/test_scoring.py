"""Transferability scores rank a backbone trained on the task above a random one."""

from __future__ import annotations

from medtl.transfer.scoring import Candidate, score_backbones
from tests.transfer.conftest import square_config


def test_trained_backbone_ranks_above_random(square_dataset, square_run) -> None:
    config = square_config(square_dataset, strategy="frozen_base")
    result = score_backbones(
        config,
        [
            Candidate("random", None),
            Candidate("trained", square_run / "model.safetensors"),
        ],
        finetuned={"random": 0.6, "trained": 0.95},
    )
    assert result["ranking"]["logme"][0] == "trained"
    # H-score needs many more samples than feature dimensions (48 images here); the
    # estimator itself is checked on informative vs noise features in tests/evaluation.
    assert all(abs(s["h_score"]) < float("inf") for s in result["scores"].values())
    assert result["kendall_tau"]["logme"]["tau"] == 1.0
