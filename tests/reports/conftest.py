"""One real tiny run (smallcnn on 32x32 PNG squares), trained once per test session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from tests.transfer.conftest import write_square_dataset

NEGATIVE_COMPARISON = {
    "auroc_transfer": 0.71,
    "auroc_scratch": 0.86,
    "delta_auroc": -0.15,
    "delong_p_value": 0.004,
    "ci_low": -0.24,
    "ci_high": -0.06,
    "confidence": 0.95,
    "alpha": 0.05,
    "verdict": "negative transfer",
    "decided_by": "patient bootstrap",
    "n_images": 8,
    "n_patients": 4,
    "sentence": "Negative transfer: AUROC 0.710 (transfer) vs 0.860 (scratch).",
}

LEARNING_CURVES = [
    {"strategy": s, "fraction": f, "seed": seed, "auroc": a + 0.01 * seed}
    for s, base in (("scratch", 0.6), ("full", 0.7))
    for f, a in ((0.1, base), (0.5, base + 0.1), (1.0, base + 0.15))
    for seed in (0, 1)
]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A trained and evaluated run folder (``full`` strategy, 2 epochs)."""
    from medtl.evaluation.run import evaluate_run
    from medtl.transfer.experiment import load_config, run_experiment

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("reports")
    dataset = write_square_dataset(root / "squares")
    cfg = {
        "name": "squares-report",
        "task": "square yes/no",
        "source_domain": "synthetic squares (test)",
        "data": {"dataset": str(dataset), "modality": "cxr", "spatial_size": [32, 32]},
        "model": {"backbone": "smallcnn"},
        "strategy": {"name": "full", "head_epochs": 1, "finetune_epochs": 1, "head_lr": 0.01},
        "training": {
            "batch_size": 16,
            "amp": "none",
            "progress": "never",
            "monitor": "auroc",
            "mode": "max",
            "seed": 0,
        },
    }
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = run_experiment(load_config(path), root / "run")
    evaluate_run(run, n_resamples=100)
    return run


@pytest.fixture(scope="session")
def report_data(tiny_run: Path, tmp_path_factory):
    """The report content of the tiny run, with a negative verdict and learning curves."""
    from medtl.reports.builder import build_report_data

    torch.set_num_threads(1)
    tf = tmp_path_factory.mktemp("inputs") / "transferability.json"
    tf.write_text(json.dumps({"smallcnn": {"logme": -0.61, "h_score": 0.8}, "other": {}}))
    return build_report_data(
        tiny_run,
        comparison=NEGATIVE_COMPARISON,
        learning_curves=LEARNING_CURVES,
        transferability=tf,
        baselines=[{"name": "Constant", "auroc": 0.5, "accuracy": 0.5, "n_test": 8}],
        failure_cases=2,
    )


@pytest.fixture(scope="session")
def report_html(report_data) -> str:
    from medtl.reports.html import render_html

    return render_html(report_data)
