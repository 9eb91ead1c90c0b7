"""Undefined bootstrap replicates are reported once per metric, by name."""

from __future__ import annotations

import logging

import numpy as np

from medtl.evaluation.bootstrap import (
    bootstrap_ci,
    bootstrap_threshold_metrics,
    metrics_with_ci,
    summarise_replicates,
)

LOGGER = "medtl.evaluation.bootstrap"


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def _few_predicted_negatives() -> tuple[np.ndarray, np.ndarray]:
    """24 images, only two scored low: many replicates draw neither, so NPV is undefined."""
    y = np.array([1] * 12 + [0] * 12)
    s = np.linspace(0.5, 0.99, 24)
    s[12], s[0] = 0.05, 0.1  # one negative and one positive below any sensible threshold
    return y, s


def test_threshold_metrics_name_the_metric_once(caplog) -> None:
    y, s = _few_predicted_negatives()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        cis = bootstrap_threshold_metrics(y, s, 0.3, n_resamples=400, seed=1)
    undefined = 400 - cis["npv"].n_valid
    assert undefined > 0 and cis["sensitivity"].n_valid == 400
    lines = _lines(caplog)
    assert lines == [
        f"bootstrap: NPV undefined on {undefined} of 400 replicates; its CI uses the rest"
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == LOGGER)


def test_metrics_with_ci_warns_once_per_metric_over_operating_points(caplog) -> None:
    y, s = _few_predicted_negatives()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        result = metrics_with_ci(y, s, n_resamples=300, seed=2)
    npv_short = [
        300 - p["ci"]["npv"]["n_valid"]
        for p in result["operating_points"].values()
        if p["ci"] and p["ci"]["npv"]["n_valid"] < 300
    ]
    assert len(npv_short) >= 2  # NPV is undefined at several operating points ...
    npv_lines = [line for line in _lines(caplog) if "NPV" in line]
    assert len(npv_lines) == 1  # ... and said once
    assert f"at {len(npv_short)} of" in npv_lines[0]
    assert all("undefined on" in line for line in _lines(caplog))
    metrics = [line.split()[1] for line in _lines(caplog)]
    assert len(metrics) == len(set(metrics))


def test_auroc_and_named_replicates(caplog) -> None:
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0])
    s = np.linspace(0, 1, 8)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        ci = bootstrap_ci(y, s, "auroc", n_resamples=200, stratified=False, seed=0)
        summarise_replicates(0.1, [0.1, np.nan, 0.2], n_resamples=3, name="ECE after")
    assert ci.n_valid < 200
    assert _lines(caplog) == [
        f"bootstrap: AUROC undefined on {200 - ci.n_valid} of 200 replicates; its CI uses the rest",
        "bootstrap: ECE after undefined on 1 of 3 replicates; its CI uses the rest",
    ]
