"""The transfer verdict accounts for training seeds: one lucky seed is not a finding.

The learning-curve point runs are real run folders (``predictions.csv``, ``summary.json``,
``experiment.yaml``, a dataset manifest) evaluated by ``evaluate_run``; the learning curves
then read them as finished points, exactly as after training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medtl.artifacts import Comparison, LearningCurves, RunSummary, write_predictions
from medtl.data.manifest import Manifest, ManifestRecord
from medtl.evaluation.compare import compare_seed_runs
from medtl.evaluation.run import evaluate_run
from medtl.evaluation.seed_verdict import seed_patient_verdict
from medtl.transfer.experiment import ExperimentConfig
from medtl.transfer.learning_curves import (
    point_config,
    point_dir,
    run_learning_curves,
    seed_schedule,
)
from medtl.transfer.run_folder import expected_inputs, write_inputs

N_TEST, N_CAL = 40, 20  # patients, two images each (one negative, one positive)


def _dataset(root: Path) -> Path:
    records = []
    for split, n in (("calibration", N_CAL), ("test", N_TEST)):
        for p in range(n):
            for label in (0, 1):
                pid = f"{split[:3]}{p:03d}"
                records.append(
                    ManifestRecord(
                        image=f"images/{pid}_{label}.png",
                        label=label,
                        patient_id=pid,
                        split=split,  # type: ignore[arg-type]
                        task="finding",
                    )
                )
    Manifest(name="seeds", task="finding", label_names=["absent", "present"],
             records=records).save(root)  # fmt: skip
    return root


def _write_run(run: Path, dataset: Path, strategy: str, seed: int, signal: float) -> None:
    """A finished point run whose logits separate the classes by ``signal`` (plus noise)."""
    manifest = Manifest.load(dataset)
    rng = np.random.default_rng([seed, 17 if strategy == "scratch" else 29])
    rows = []
    for index, r in enumerate(manifest.records):
        logit = signal * (2 * r.label - 1) + rng.normal(0.0, 1.0)
        rows.append(
            {"split": r.split, "index": index, "patient_id": r.patient_id, "label": r.label,
             "logit": logit}
        )  # fmt: skip
    run.mkdir(parents=True)
    write_predictions(run / "predictions.csv", rows, num_outputs=1)
    # the point's config and identity, as training records them: the curves reuse the point
    point = point_config(_config(dataset), strategy, 1.0, seed)
    inputs = expected_inputs(point)
    write_inputs(run, point, inputs)
    RunSummary(name=run.name, strategy=strategy, num_outputs=1, train_images=100,
               train_patients=50, data_seconds=0.0, train_seconds=1.0,
               total_seconds=1.0, config_hash=inputs.config_hash,
               data_hash=inputs.data_hash).write(run / RunSummary.FILE)  # fmt: skip
    evaluate_run(run, n_resamples=200, seed=seed)


def _config(dataset: Path) -> ExperimentConfig:
    return ExperimentConfig.model_validate(
        {
            "name": "seeds",
            "data": {"dataset": str(dataset), "modality": "cxr", "spatial_size": [32, 32]},
            "model": {"backbone": "smallcnn"},
            "strategy": {"name": "full"},
        }
    )


def _curves(tmp_path: Path, transfer_signals: list[float]) -> tuple[Path, dict]:
    dataset = _dataset(tmp_path / "data")
    out = tmp_path / "curves"
    scratch_signals = [1.0, 1.0, 1.0]
    for seed, (t, s) in enumerate(zip(transfer_signals, scratch_signals, strict=True)):
        _write_run(point_dir(out, "full", 1.0, seed), dataset, "full", seed, t)
        _write_run(point_dir(out, "scratch", 1.0, seed), dataset, "scratch", seed, s)
    # every point has finished: the curves read the runs, train nothing, and decide
    result = run_learning_curves(
        _config(dataset), out, fractions=(1.0,), seeds=3, n_resamples=500, progress=False
    )
    return out, result


def test_one_lucky_seed_is_significant_alone_but_not_over_seeds(tmp_path) -> None:
    # transfer seed 0 separates the classes far better than scratch; seeds 1 and 2 worse
    out, result = _curves(tmp_path, [2.5, 0.3, 0.6])
    alone = compare_seed_runs(
        [point_dir(out, "full", 1.0, 0)], [point_dir(out, "scratch", 1.0, 0)], n_resamples=500
    )
    assert alone["verdict"] == "positive transfer"
    assert alone["n_seeds_transfer"] == 1 and "does not include training-seed" in alone["method"]

    verdict = Comparison.read(out / Comparison.FILE)
    assert verdict.verdict == "no significant difference"
    assert verdict.decided_by == "seed-and-patient bootstrap"
    assert verdict.n_seeds_transfer == verdict.n_seeds_scratch == 3
    assert verdict.seeds_transfer == [0, 1, 2]
    assert verdict.ci_low < 0 < verdict.ci_high
    per_seed = verdict.per_seed_transfer
    assert per_seed[0] > 0.9 > max(per_seed[1:]) and verdict.sd_transfer > 0.1
    assert verdict.auroc_transfer == pytest.approx(np.mean(per_seed))
    assert "hierarchical" in verdict.method and "3 seeds" in verdict.sentence
    assert result["verdict"]["verdict"] == "no significant difference"
    # the curves carry mean and spread per arm
    cell = LearningCurves.read(out / LearningCurves.FILE).cell("full", 1.0)
    assert cell is not None and cell.n_seeds == 3
    assert cell.min == pytest.approx(min(per_seed)) and cell.max == pytest.approx(max(per_seed))
    assert cell.sd == pytest.approx(np.std(per_seed, ddof=1))


def test_a_consistent_difference_over_seeds_is_significant(tmp_path) -> None:
    out, _ = _curves(tmp_path, [2.5, 2.4, 2.6])
    verdict = Comparison.read(out / Comparison.FILE)
    assert verdict.verdict == "positive transfer"
    assert verdict.ci_low > 0
    assert verdict.n_seeds_transfer == 3


def test_seed_bootstrap_pairs_patients_and_matches_patient_bootstrap_for_one_seed() -> None:
    rng = np.random.default_rng(3)
    y = np.tile([0, 1], 30)
    pid = np.repeat(np.arange(30), 2)
    a = y * 1.5 + rng.normal(0, 1, y.size)
    b = y * 1.0 + rng.normal(0, 1, y.size)
    one = seed_patient_verdict(y, [a], [b], pid, n_resamples=300)
    # the same seed twice in an arm adds no seed variance: same interval as one copy
    twice = seed_patient_verdict(y, [a, a], [b, b], pid, n_resamples=300)
    assert one["ci_low"] == pytest.approx(twice["ci_low"])
    assert one["ci_high"] == pytest.approx(twice["ci_high"])
    assert twice["sd_transfer"] == 0.0
    # multi-class runs use macro AUROC on the same scheme
    labels = np.tile([0, 1, 2], 20)
    pids = np.repeat(np.arange(20), 3)
    probs = [np.eye(3)[labels] * 0.5 + rng.uniform(0, 0.5, (60, 3)) for _ in range(2)]
    probs = [p / p.sum(1, keepdims=True) for p in probs]
    out = seed_patient_verdict(labels, probs, probs[::-1], pids, n_resamples=100)
    assert "macro AUROC" in out["sentence"] and out["n_seeds_scratch"] == 2
    # the vectorised macro AUROC replicates are scikit-learn's macro AUROC on each resample
    from medtl.evaluation.bootstrap import macro_auroc_replicates, resample_indices
    from medtl.evaluation.metrics import macro_auroc

    fast = macro_auroc_replicates(labels, probs[0], pids, 40, 5)
    slow = [
        macro_auroc(labels[i], probs[0][i])
        for i in resample_indices(labels, patient_ids=pids, n_resamples=40, seed=5)
    ]
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)


def test_seed_schedule_gives_more_seeds_to_small_fractions() -> None:
    assert seed_schedule((0.1, 0.25, 1.0), 3, top_seeds=2) == {
        0.1: [0, 1, 2],
        0.25: [0, 1, 2],
        1.0: [0, 1],
    }
    assert seed_schedule((0.5,), [4, 7], top_seeds=3) == {0.5: [4, 7, 8]}
    assert seed_schedule((1.0,), 1) == {1.0: [0]}
    with pytest.raises(ValueError):
        seed_schedule((1.0,), 0)
