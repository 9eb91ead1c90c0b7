"""Transferability before fine-tuning: rank candidate backbones for a target dataset.

One forward pass of each candidate over (a sample of) the target training data gives pooled
features and, when the candidate is a package with a source classifier, source-class
probabilities. From them: LogME and H-score (features), LEEP and NCE (source classifier).
When fine-tuned results exist, Kendall's tau says how well the ranking predicted them.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medtl.artifacts.scores import TransferabilityScores

logger = logging.getLogger(__name__)


@dataclass
class Candidate:
    """A backbone to score: a model/backbone package, or a checkpoint for ``backbone``."""

    name: str
    weights: Path | None
    backbone: str | None = None


def _load_candidate(candidate: Candidate, config) -> tuple[torch.nn.Module, bool]:
    """Return ``(model, has_source_head)``."""
    from medtl.models.package import CARD_FILE, load_package

    weights = candidate.weights
    if weights is not None and Path(weights).is_dir() and (Path(weights) / CARD_FILE).is_file():
        model, card = load_package(weights)
        return model, bool(card.labels) or model.config.num_outputs > 1
    from medtl.transfer.experiment import build_model

    cfg = config
    if candidate.backbone or weights is not None:
        model_cfg = config.model.model_copy(
            update={
                "backbone": candidate.backbone or config.model.backbone,
                "weights": weights,
            }
        )
        cfg = config.model_copy(update={"model": model_cfg})
    strategy = cfg.strategy.model_copy(update={"name": "frozen_base"})
    model = build_model(cfg.model_copy(update={"strategy": strategy}), 1, [])
    return model, False


def score_backbones(
    config,  # ExperimentConfig: target data and preprocessing
    candidates: list[Candidate],
    *,
    max_samples: int = 512,
    finetuned: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Score every candidate on the target training split.

    Args:
        config: an :class:`~medtl.transfer.experiment.ExperimentConfig` (dataset, preprocessing).
        candidates: the backbones to compare.
        max_samples: training images used (a seeded, label-stratified sample).
        finetuned: optional ``{candidate name: fine-tuned test metric}``.

    Returns:
        ``{"scores": {name: {...}}, "ranking": {metric: [names...]}, "kendall_tau": {...}}``.
    """
    from torch.utils.data import Subset

    from medtl.data.datasets import build_datasets
    from medtl.evaluation.transferability import h_score, kendall_tau, leep, logme, nce
    from medtl.transfer.strategies import extract_features

    data = build_datasets(config.data.dataset, config.preprocessing(), None, cache="none")
    train = data.train_plain
    if len(train) > max_samples:
        rng = np.random.default_rng(0)
        train = Subset(train, sorted(rng.choice(len(train), max_samples, replace=False).tolist()))
    scores: dict[str, dict[str, float]] = {}
    for candidate in candidates:
        model, has_source_head = _load_candidate(candidate, config)
        feats, labels = extract_features(model, train)
        x, y = feats.numpy().astype(np.float64), labels.numpy().astype(int)
        row = {"logme": float(logme(x, y)), "h_score": float(h_score(x, y))}
        if has_source_head:
            model.eval()
            with torch.no_grad():
                logits = model.forward_head(feats).float()
            if logits.shape[1] == 1:
                p = torch.sigmoid(logits)
                probs = torch.cat([1 - p, p], dim=1).numpy()
            else:
                probs = torch.softmax(logits, dim=1).numpy()
            row["leep"] = float(leep(probs, y))
            row["nce"] = float(nce(probs.argmax(1), y))
        scores[candidate.name] = row
        logger.info("%s: %s", candidate.name, row)
    ranking = {
        metric: [n for n, _ in sorted(scores.items(), key=lambda kv: -kv[1][metric])]
        for metric in ("logme", "h_score", "leep", "nce")
        if all(metric in s for s in scores.values())
    }
    taus: dict[str, Any] = {}
    if finetuned:
        names = [n for n in scores if n in finetuned]
        if len(names) >= 2:
            for metric in ranking:
                tau = kendall_tau([scores[n][metric] for n in names], [finetuned[n] for n in names])
                taus[metric] = asdict(tau)
    return {"scores": scores, "ranking": ranking, "kendall_tau": taus}


def write_scores(result: dict[str, Any], path: str | Path) -> Path:
    """Validate and write a :func:`score_backbones` result
    (:class:`~medtl.artifacts.scores.TransferabilityScores`, what the report's
    ``--transferability`` reads)."""
    return TransferabilityScores.parse(result, str(path)).write(path)
