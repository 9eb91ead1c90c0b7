"""A random candidate is seeded: ``medtl score -c random`` gives the same scores every call."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from medtl.transfer.scoring import Candidate, score_backbones
from tests.transfer.conftest import square_config


def test_random_candidate_scores_repeat(square_dataset) -> None:
    config = square_config(square_dataset, strategy="frozen_base")
    first = score_backbones(config, [Candidate("random", None)], max_samples=24)
    second = score_backbones(config, [Candidate("random", None)], max_samples=24)
    assert first["scores"] == second["scores"]
    # the seed is the config's: another seed draws another network
    other = config.model_copy(update={"training": config.training.model_copy(update={"seed": 1})})
    third = score_backbones(other, [Candidate("random", None)], max_samples=24)
    assert third["scores"]["random"]["logme"] != first["scores"]["random"]["logme"]
    # an explicit seed overrides the config's
    fourth = score_backbones(other, [Candidate("random", None)], max_samples=24, seed=0)
    assert fourth["scores"] == first["scores"]


def test_cli_random_candidate_repeats(square_dataset, tmp_path) -> None:
    import yaml

    from medtl.cli import app

    config = square_config(square_dataset, strategy="frozen_base")
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    runs = []
    for k in range(2):
        out = tmp_path / f"scores{k}.json"
        args = ["score", str(path), "-c", "random=random", "--max-samples", "24"]
        result = CliRunner().invoke(app, [*args, "--out", str(out)])
        assert result.exit_code == 0, result.output
        runs.append(json.loads(out.read_text())["scores"])
    assert runs[0] == runs[1]
    out = tmp_path / "seeded.json"
    result = CliRunner().invoke(app, [*args, "--seed", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["scores"] != runs[0]
