"""Transferability scores and ranking agreement."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import softmax
from scipy.stats import multivariate_normal

from medtl.evaluation.transferability import (
    h_score,
    kendall_tau,
    leep,
    logme,
    nce,
    rank_backbones,
)


def features(rng, n=300, d=16, signal=1.5):
    y = rng.integers(0, 3, n)
    centres = rng.normal(0, 1, (3, d))
    informative = centres[y] * signal + rng.normal(0, 1, (n, d))
    noise = rng.normal(0, 1, (n, d))
    return y, informative, noise


def test_logme_and_h_score_rank_informative_features_above_noise():
    rng = np.random.default_rng(0)
    y, good, noise = features(rng)
    weak = 0.3 * good + noise  # partly informative
    assert logme(good, y) > logme(weak, y) > logme(noise, y)
    assert h_score(good, y) > h_score(weak, y) > h_score(noise, y)
    assert h_score(good, y, shrinkage=0.0) > h_score(noise, y, shrinkage=0.0)
    assert h_score(good, y, shrinkage=0.1) > h_score(noise, y, shrinkage=0.1)


def test_logme_maximises_the_bayesian_linear_evidence():
    """LogME's fixed point should match a direct numerical maximisation of the evidence."""
    rng = np.random.default_rng(1)
    n, d = 60, 4
    f = rng.normal(size=(n, d))
    y = (f[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(int)

    def log_evidence(params, t):
        alpha, beta = np.exp(params)
        cov = np.eye(n) / beta + f @ f.T / alpha  # y ~ N(0, 1/beta I + F F^T / alpha)
        return multivariate_normal(np.zeros(n), cov).logpdf(t)

    best = []
    for k in (0, 1):
        t = (y == k).astype(float)
        res = minimize(lambda p, t=t: -log_evidence(p, t), x0=[0.0, 0.0], method="Nelder-Mead")
        best.append(-res.fun / n)
    assert logme(f, y) == pytest.approx(np.mean(best), abs=1e-4)


def test_labels_need_not_be_contiguous_and_shapes_are_checked():
    rng = np.random.default_rng(2)
    y, good, _ = features(rng, n=120)
    assert logme(good, y) == pytest.approx(logme(good, np.array(["a", "b", "c"])[y]))
    with pytest.raises(ValueError, match="two target classes"):
        logme(good, np.zeros(120))
    with pytest.raises(ValueError, match="length"):
        h_score(good, y[:10])
    with pytest.raises(ValueError, match="all-zero"):
        logme(np.zeros((120, 4)), y)
    assert h_score(np.zeros((120, 4)), y) == 0.0  # no signal, and no crash


def test_nce_hand_value_and_leep_equals_nce_for_hard_predictions():
    z = np.array([0, 0, 1, 1])
    y = np.array([0, 0, 1, 0])
    # z=0 determines y; z=1 is a coin flip: H(Y|Z) = 0.5 * ln 2
    assert nce(z, y) == pytest.approx(-0.5 * math.log(2))
    assert leep(np.eye(2)[z], y) == pytest.approx(nce(z, y))


def test_leep_and_nce_higher_for_predictive_source_labelling():
    rng = np.random.default_rng(3)
    n, n_source = 500, 10
    y = rng.integers(0, 2, n)
    # predictive source: source classes 0-4 mostly for target 0, 5-9 for target 1
    z_good = np.where(rng.random(n) < 0.9, y * 5 + rng.integers(0, 5, n), rng.integers(0, 10, n))
    z_rand = rng.integers(0, n_source, n)
    assert nce(z_good, y) > nce(z_rand, y) + 0.2
    logits_good = 3.0 * np.eye(n_source)[z_good] + rng.normal(0, 0.5, (n, n_source))
    logits_rand = 3.0 * np.eye(n_source)[z_rand] + rng.normal(0, 0.5, (n, n_source))
    assert leep(softmax(logits_good, 1), y) > leep(softmax(logits_rand, 1), y) + 0.1
    assert leep(softmax(logits_rand, 1), y) <= 0
    with pytest.raises(ValueError, match="probability vectors"):
        leep(np.ones((n, 2)), y)


def test_rank_backbones_and_kendall_tau():
    scores = {"resnet18": -0.4, "densenet121": -0.2, "smallcnn": float("nan"), "effnet": -0.2}
    ranked = rank_backbones(scores)
    assert [name for name, _ in ranked] == ["densenet121", "effnet", "resnet18", "smallcnn"]
    predicted = {"a": 0.1, "b": 0.5, "c": 0.3, "d": 0.9}
    finetuned = {"a": 0.70, "b": 0.80, "c": 0.75, "d": 0.90}
    rc = kendall_tau(predicted, finetuned)
    assert rc.tau == pytest.approx(1.0) and rc.n == 4
    reversed_ = {k: -v for k, v in finetuned.items()}
    assert kendall_tau(predicted, reversed_).tau == pytest.approx(-1.0)
    # one swapped pair of 6: tau = (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 2, 4, 3]).tau == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="different backbones"):
        kendall_tau(predicted, {"a": 1.0, "b": 2.0})
    with pytest.raises(TypeError):
        kendall_tau(predicted, [1.0, 2.0, 3.0, 4.0])
