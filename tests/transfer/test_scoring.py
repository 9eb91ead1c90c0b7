"""Transferability scores rank a backbone trained on the task above a random one."""

from __future__ import annotations

from medtl.transfer.scoring import Candidate, score_backbones
from tests.transfer.conftest import square_config


def test_trained_backbone_ranks_above_random(square_dataset, square_run, tmp_path) -> None:
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
    # `medtl score --out` writes what the report's --transferability reads (same schema)
    from medtl.artifacts import TransferabilityScores
    from medtl.transfer.scoring import write_scores
    from tests.artifacts.schema_check import validate_json_file

    path = write_scores(result, tmp_path / "transferability.json")
    assert validate_json_file(path) == "transferability"
    scores = TransferabilityScores.read(path)
    assert scores.ranking["logme"][0] == "trained" and scores.kendall_tau["logme"].tau == 1.0


def test_report_reads_scores_files_of_both_formats(tmp_path) -> None:
    """The hand-written ``{backbone: {score: value}}`` of earlier releases still loads."""
    import json

    from medtl.artifacts import TransferabilityScores

    (tmp_path / "old.json").write_text(json.dumps({"resnet18": {"logme": -0.5}}))
    old = TransferabilityScores.read(tmp_path / "old.json")
    assert old.scores == {"resnet18": {"logme": -0.5}} and old.ranking == {}


def test_scores_only_some_candidates_have_rank_those_candidates() -> None:
    from medtl.transfer.scoring import rank_candidates

    scores = {
        "astra": {"logme": 1.2, "h_score": 0.8},  # a headless encoder: no LEEP/NCE
        "mri3d": {"logme": 0.4, "h_score": 0.9, "leep": -1.1, "nce": -0.9},
        "random": {"logme": -0.7, "h_score": 0.1},
    }
    ranking = rank_candidates(scores)
    assert ranking["logme"] == ["astra", "mri3d", "random"]
    assert ranking["h_score"] == ["mri3d", "astra", "random"]
    assert ranking["leep"] == ["mri3d"] and ranking["nce"] == ["mri3d"]
    assert rank_candidates({"a": {"logme": 1.0}}) == {"logme": ["a"]}
