"""``medtl score --finetuned``: candidate names that match no fine-tuned result are said."""

from __future__ import annotations

import json
import logging

import yaml
from typer.testing import CliRunner

from medtl.transfer.scoring import Candidate, match_finetuned, score_backbones
from tests.transfer.conftest import square_config


def test_unmatched_names_are_warned_and_returned(square_dataset, caplog) -> None:
    config = square_config(square_dataset, strategy="frozen_base")
    with caplog.at_level(logging.WARNING, logger="medtl.transfer.scoring"):
        result = score_backbones(
            config,
            [Candidate("rand_a", None), Candidate("rand_b", None)],
            max_samples=16,
            finetuned={"full_finetune": 0.8, "scratch": 0.6},
        )
    assert result["kendall_tau"] == {}
    assert result["finetuned_match"] == {
        "matched": [],
        "candidates_without_result": ["rand_a", "rand_b"],
        "results_without_candidate": ["full_finetune", "scratch"],
    }
    text = caplog.text
    assert "'rand_a', 'rand_b'" in text and "full_finetune, scratch" in text
    assert "Kendall's tau needs at least 2" in text


def test_partial_match_names_only_the_missing() -> None:
    match = match_finetuned(["scratch", "full", "astra"], {"scratch": 0.6, "full": 0.7})
    assert match["matched"] == ["scratch", "full"]
    assert match["candidates_without_result"] == ["astra"]
    assert match["results_without_candidate"] == []


def test_cli_warns_and_writes_the_match(square_dataset, tmp_path) -> None:
    from medtl.cli import app

    config = square_config(square_dataset, strategy="frozen_base")
    cfg_path = tmp_path / "exp.yaml"
    cfg_path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    finetuned = tmp_path / "auroc.json"
    finetuned.write_text(json.dumps({"transfer": 0.8, "scratch": 0.6}))
    out = tmp_path / "scores.json"
    args = ["score", str(cfg_path), "-c", "scratch=random", "-c", "mri=random:smallcnn"]
    args += ["--finetuned", str(finetuned), "--out", str(out), "--max-samples", "16"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "no result named 'mri'" in result.stderr and "transfer" in result.stderr
    written = json.loads(out.read_text())
    assert written["kendall_tau"] == {}
    assert written["finetuned_match"]["candidates_without_result"] == ["mri"]
    assert written["finetuned_match"]["results_without_candidate"] == ["transfer"]
