"""Transferability scores: how well a pretrained backbone should transfer, before fine-tuning.

All scores are "higher is better" and are computed from a forward pass of the *target*
training data through the *source* model:

- :func:`logme` (You et al., ICML 2021): log of the maximum marginal evidence of a Bayesian
  linear model on the features, per class (one-vs-rest 0/1 targets), averaged over classes.
  Implemented exactly as the reference (github.com/thuml/LogME, ``LogME.py``, the ICML
  fixed-point version): SVD of ``F^T F``, at most 11 fixed-point updates of ``alpha`` and
  ``beta`` stopped when ``alpha/beta`` changes by less than 1%, evidence divided by ``N``.
- :func:`h_score` (Bao et al., ICIP 2019): ``tr(cov(f)^-1 cov(E[f | y]))``. The feature
  covariance is shrunk (Ledoit-Wolf by default, as proposed by Ibrahim et al., ICLR 2023) so the
  inverse is stable when ``D`` is large relative to ``N``; ``shrinkage=0`` gives the original
  score (with a pseudo-inverse).
- :func:`leep` (Nguyen et al., ICML 2020): log expected empirical prediction from the source
  model's soft predictions over its own label set.
- :func:`nce` (Tran et al., ICCV 2019): negative conditional entropy ``-H(Y | Z)`` of target
  labels given hard source labels.

:func:`rank_backbones` orders candidates by a score and :func:`kendall_tau` measures how well
that order predicted the fine-tuned results.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import kendalltau
from sklearn.covariance import ledoit_wolf, shrunk_covariance

__all__ = [
    "RankCorrelation",
    "h_score",
    "kendall_tau",
    "leep",
    "logme",
    "nce",
    "rank_backbones",
]

logger = logging.getLogger(__name__)


def _features_labels(features: ArrayLike, labels: ArrayLike) -> tuple[NDArray, NDArray]:
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {f.shape}")
    y = _class_index(labels, f.shape[0])
    if not np.isfinite(f).all():
        raise ValueError("features must be finite")
    return f, y


def _class_index(labels: ArrayLike, n: int) -> NDArray[np.int64]:
    """Map arbitrary labels to 0..K-1 (sorted order), checking length and class count."""
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"labels must be 1D of length {n}, got shape {y.shape}")
    classes, idx = np.unique(y, return_inverse=True)
    if classes.size < 2:
        raise ValueError("transferability needs at least two target classes")
    return idx.reshape(-1).astype(np.int64)


def _each_evidence(
    y_: NDArray, f: NDArray, fh: NDArray, v: NDArray, s: NDArray, vh: NDArray, n: int, d: int
) -> float:
    """Maximum evidence for one 0/1 target (reference ``each_evidence``)."""
    epsilon = 1e-5
    alpha = 1.0
    beta = 1.0
    lam = alpha / beta
    tmp = vh @ (f @ y_)
    alpha_de = beta_de = 0.0
    for _ in range(11):  # the reference: converges in 2-3 steps, at most 10
        gamma = (s / (s + lam)).sum()
        m = v @ (tmp * beta / (alpha + beta * s))
        alpha_de = float((m * m).sum())
        alpha = gamma / (alpha_de + epsilon)
        beta_de = float(((y_ - fh @ m) ** 2).sum())
        beta = (n - gamma) / (beta_de + epsilon)
        new_lam = alpha / beta
        if abs(new_lam - lam) / lam < 0.01:
            break
        lam = new_lam
    evidence = (
        d / 2.0 * math.log(alpha)
        + n / 2.0 * math.log(beta)
        - 0.5 * float(np.sum(np.log(alpha + beta * s)))
        - beta / 2.0 * (beta_de + epsilon)
        - alpha / 2.0 * (alpha_de + epsilon)
        - n / 2.0 * math.log(2 * math.pi)
    )
    return evidence / n


def logme(features: ArrayLike, labels: ArrayLike) -> float:
    """LogME score of features for a classification target (higher = more transferable).

    Labels are mapped to 0..K-1 in sorted order (the reference uses ``K = max(y) + 1``; the two
    agree for labels already in 0..K-1). Binary tasks average the evidence of both classes,
    as the reference does.

    Args:
        features: ``(N, D)`` features of the target training images from the source model.
        labels: ``(N,)`` target labels.

    Returns:
        Mean per-class log maximum evidence per sample.

    Example:
        >>> logme(np.random.randn(100, 8), np.random.randint(0, 2, 100))  # doctest: +SKIP
        -0.7...
    """
    fh, y = _features_labels(features, labels)
    if not np.any(fh):
        raise ValueError("LogME is undefined for all-zero features")
    f = fh.T
    d, n = f.shape
    v, s, vh = np.linalg.svd(f @ fh, full_matrices=True)
    evidences = [
        _each_evidence((y == k).astype(np.float64), f, fh, v, s, vh, n, d)
        for k in range(int(y.max()) + 1)
    ]
    return float(np.mean(evidences))


def h_score(features: ArrayLike, labels: ArrayLike, shrinkage: float | None = None) -> float:
    """H-score of features for a classification target (higher = more transferable).

    ``tr(cov(f)^-1 cov(g))`` where ``g`` replaces each feature vector by its class mean.

    Args:
        features: ``(N, D)`` features.
        labels: ``(N,)`` target labels.
        shrinkage: ``None`` shrinks ``cov(f)`` towards a scaled identity with the Ledoit-Wolf
            coefficient (the default, stable for large ``D``); a float in [0, 1] uses that
            fixed coefficient; ``0`` is the original H-score (pseudo-inverse, can blow up when
            ``D`` approaches ``N``).

    Returns:
        The H-score.
    """
    f, y = _features_labels(features, labels)
    f = f - f.mean(axis=0, keepdims=True)
    if shrinkage is None:
        cov_f, coef = ledoit_wolf(f, assume_centered=True)
        logger.debug("h_score: Ledoit-Wolf shrinkage %.4f", coef)
    else:
        if not 0.0 <= shrinkage <= 1.0:
            raise ValueError("shrinkage must lie in [0, 1]")
        cov_f = f.T @ f / f.shape[0]
        if shrinkage > 0:
            cov_f = shrunk_covariance(cov_f, shrinkage)
    g = np.zeros_like(f)
    for k in range(int(y.max()) + 1):
        g[y == k] = f[y == k].mean(axis=0)
    cov_g = g.T @ g / f.shape[0]
    if shrinkage == 0:
        inv = np.linalg.pinv(cov_f, rcond=1e-15)
    else:
        try:
            inv = np.linalg.inv(cov_f)
        except np.linalg.LinAlgError:  # e.g. constant features: shrinkage target is 0 too
            inv = np.linalg.pinv(cov_f)
    return float(np.trace(inv @ cov_g))


def leep(source_probs: ArrayLike, labels: ArrayLike) -> float:
    """LEEP score (higher = more transferable; at most 0).

    Args:
        source_probs: ``(N, Z)`` source-model probabilities over its own ``Z`` source labels,
            for the target images (rows sum to 1).
        labels: ``(N,)`` target labels.

    Returns:
        ``mean_i log sum_z P(y_i | z) theta_z(x_i)`` with the empirical conditional
        ``P(y | z)`` from the joint ``P(y, z) = mean_i theta_z(x_i) [y_i = y]``.
    """
    theta = np.asarray(source_probs, dtype=np.float64)
    if theta.ndim != 2:
        raise ValueError(f"source_probs must be (N, Z), got shape {theta.shape}")
    if theta.min() < 0 or not np.allclose(theta.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("source_probs rows must be probability vectors")
    y = _class_index(labels, theta.shape[0])
    n = theta.shape[0]
    onehot = np.eye(int(y.max()) + 1)[y]  # (N, K)
    joint = onehot.T @ theta / n  # (K, Z)
    marginal_z = joint.sum(axis=0, keepdims=True)
    cond = np.divide(joint, marginal_z, out=np.zeros_like(joint), where=marginal_z > 0)
    eep = np.sum(theta * cond[y], axis=1)  # expected empirical prediction of the true label
    return float(np.mean(np.log(np.maximum(eep, 1e-300))))


def nce(source_labels: ArrayLike, labels: ArrayLike) -> float:
    """Negative conditional entropy ``-H(Y | Z)`` (higher = more transferable; at most 0).

    Args:
        source_labels: ``(N,)`` hard source labels ``Z`` assigned to the target images
            (e.g. the source model's argmax).
        labels: ``(N,)`` target labels ``Y``.

    Returns:
        ``sum_{y,z} P(y, z) log P(y | z)`` in nats from the empirical joint.
    """
    z = np.asarray(source_labels)
    if z.ndim != 1:
        raise ValueError(f"source_labels must be 1D hard labels, got shape {z.shape}")
    y = _class_index(labels, z.shape[0])
    _, zi = np.unique(z, return_inverse=True)
    zi = zi.reshape(-1)
    joint = np.zeros((int(y.max()) + 1, int(zi.max()) + 1))
    np.add.at(joint, (y, zi), 1.0)
    joint /= joint.sum()
    pz = joint.sum(axis=0, keepdims=True)
    nz = joint > 0
    return float(np.sum(joint[nz] * np.log((joint / pz)[nz])))


def rank_backbones(scores: Mapping[str, float]) -> list[tuple[str, float]]:
    """Order backbones by transferability score, best first.

    Args:
        scores: backbone name -> score (higher = better), e.g. from :func:`logme`.

    Returns:
        ``[(name, score), ...]`` sorted by descending score, ties broken by name; NaN scores
        go last.
    """
    return sorted(
        scores.items(),
        key=lambda kv: (math.isnan(kv[1]), -kv[1] if not math.isnan(kv[1]) else 0.0, kv[0]),
    )


@dataclass(frozen=True)
class RankCorrelation:
    """Kendall's tau-b between predicted and observed rankings.

    Attributes:
        tau: Kendall's tau-b in [-1, 1] (1 = the prediction ordered backbones perfectly).
        p_value: two-sided p-value of tau = 0 (scipy; exact for small samples without ties).
        n: number of backbones compared.
    """

    tau: float
    p_value: float
    n: int


def kendall_tau(
    predicted_scores: Mapping[str, float] | Sequence[float],
    finetuned_scores: Mapping[str, float] | Sequence[float],
) -> RankCorrelation:
    """How well transferability scores predicted fine-tuned results (``scipy.stats.kendalltau``).

    Args:
        predicted_scores: transferability score per backbone (mapping by name, or a sequence).
        finetuned_scores: fine-tuned metric (e.g. test AUROC) per backbone, same names or
            same order.

    Returns:
        A :class:`RankCorrelation`.
    """
    if isinstance(predicted_scores, Mapping) != isinstance(finetuned_scores, Mapping):
        raise TypeError("pass two mappings (matched by name) or two sequences (same order)")
    if isinstance(predicted_scores, Mapping) and isinstance(finetuned_scores, Mapping):
        if set(predicted_scores) != set(finetuned_scores):
            raise ValueError("predicted and fine-tuned scores name different backbones")
        names = sorted(predicted_scores)
        a = [float(predicted_scores[k]) for k in names]
        b = [float(finetuned_scores[k]) for k in names]
    else:
        a = [float(v) for v in predicted_scores]  # type: ignore[union-attr]
        b = [float(v) for v in finetuned_scores]  # type: ignore[union-attr]
        if len(a) != len(b):
            raise ValueError("predicted and fine-tuned score lists differ in length")
    if len(a) < 2:
        raise ValueError("Kendall's tau needs at least two backbones")
    res = kendalltau(a, b)
    return RankCorrelation(tau=float(res.statistic), p_value=float(res.pvalue), n=len(a))
