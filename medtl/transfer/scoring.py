"""Transferability before fine-tuning: rank candidate backbones for a target dataset.

One forward pass of each candidate over (a sample of) the target training data gives pooled
features and, when the candidate is a package with a source classifier, source-class
probabilities. From them: LogME and H-score (features), LEEP and NCE (source classifier).
When fine-tuned results exist, Kendall's tau says how well the ranking predicted them.

Candidates (:func:`parse_candidate`, what ``medtl score --candidate`` takes): a package
folder, a registered package (``astra-ct``), a checkpoint, each optionally cut at a named
stage (``astra-ct:layer3``: the pooled output of ``layer3`` of the encoder), or a randomly
initialised network (``random`` for the config's backbone, ``random:resnet10`` for another).
Encoders without a source classifier (astra-ct) and random networks get LogME and H-score
only; LEEP and NCE rank the candidates that have one. The achieved test AUROC to check the
ranking against can be a ``{name: AUROC}`` file or a study's ``learning_curves.json`` (the
mean over seeds at its largest label fraction, candidates named as the arms).
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


#: stages a candidate may be cut at
LAYERS = ("layer1", "layer2", "layer3", "layer4")


@dataclass
class Candidate:
    """A backbone to score: a model/backbone package, or a checkpoint for ``backbone``.

    Attributes:
        name: how the candidate is reported (and matched to fine-tuned results).
        weights: package folder, registered package name or checkpoint; ``None``: random.
        backbone: backbone of a checkpoint or a random network (default: the config's).
        layer: pool this named stage instead of the last (``i3resnet152``).
    """

    name: str
    weights: Path | None
    backbone: str | None = None
    layer: str | None = None


def parse_candidate(text: str) -> Candidate:
    """``[NAME=]SPEC`` -> :class:`Candidate`.

    ``SPEC`` is ``PATH_OR_PACKAGE[:LAYER]``, ``random[:BACKBONE]``, or empty (random, the
    config's backbone). Without ``NAME=`` the name is the spec itself.

    Example:
        >>> parse_candidate("a4=astra-ct:layer4").layer
        'layer4'
        >>> parse_candidate("random:resnet10").backbone
        'resnet10'
    """
    name, sep, spec = text.partition("=")
    if not sep:
        name, spec = text, text
    if not name:
        raise ValueError(f"candidate {text!r} has no name")
    head, colon, tail = spec.rpartition(":")
    if spec == "" or spec == "random":
        return Candidate(name=name, weights=None)
    if colon and head == "random":
        return Candidate(name=name, weights=None, backbone=tail)
    if colon and tail in LAYERS:
        return Candidate(name=name, weights=Path(head), layer=tail)
    return Candidate(name=name, weights=Path(spec))


def _resolve_weights(weights: Path | None) -> Path | None:
    """A path as given, or a registered package's folder when no such path exists."""
    if weights is None or Path(weights).exists():
        return weights
    from medtl.models.package import resolve_package

    return resolve_package(str(weights))


def _load_candidate(candidate: Candidate, config, seed: int) -> tuple[torch.nn.Module, bool]:
    """Return ``(model, has_source_head)``; a random network is drawn from ``seed``."""
    from medtl.models.package import CARD_FILE, load_package

    weights = _resolve_weights(candidate.weights)
    if weights is not None and Path(weights).is_dir() and (Path(weights) / CARD_FILE).is_file():
        model, card = load_package(weights)
        # an encoder-only package (astra-ct: no labels, one placeholder output) has none
        return model, bool(card.labels) or model.config.num_outputs > 1
    from medtl.transfer.experiment import build_model

    # weights None is a random network, even when the config names starting weights; the
    # config's backbone options belong to its backbone only
    other = candidate.backbone not in (None, config.model.backbone)
    model_cfg = config.model.model_copy(
        update={
            "backbone": candidate.backbone or config.model.backbone,
            "weights": weights,
            **({"options": {}} if other else {}),
        }
    )
    cfg = config.model_copy(update={"model": model_cfg})
    strategy = cfg.strategy.model_copy(update={"name": "frozen_base"})
    # A random candidate is a draw: seeded, so the same command gives the same scores; the
    # caller's global random state is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(cfg.model_copy(update={"strategy": strategy}), 1, [])
    return model, False


def score_backbones(
    config,  # ExperimentConfig: target data and preprocessing
    candidates: list[Candidate],
    *,
    max_samples: int = 512,
    finetuned: dict[str, float] | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """Score every candidate on the target training split.

    Args:
        config: an :class:`~medtl.transfer.experiment.ExperimentConfig` (dataset, preprocessing).
        candidates: the backbones to compare.
        max_samples: training images used (a seeded, label-stratified sample).
        finetuned: optional ``{candidate name: fine-tuned test metric}``.
        seed: draws the random candidates' initial weights (default: the config's
            ``training.seed``), so a repeated call gives the same scores.

    Returns:
        ``{"scores": {name: {...}}, "ranking": {metric: [names...]}, "kendall_tau": {...}}``,
        and with ``finetuned`` also ``"finetuned_match"`` (:func:`match_finetuned`).
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
        model, has_source_head = _load_candidate(
            candidate, config, config.training.seed if seed is None else seed
        )
        # fp32 on CPUs: bf16 autocast of 3D convolutions ran slower there (bench/results.md)
        amp = "auto" if torch.cuda.is_available() else "none"
        feats, labels = extract_features(model, train, layer=candidate.layer, amp=amp)
        x, y = feats.numpy().astype(np.float64), labels.numpy().astype(int)
        row = {"logme": float(logme(x, y)), "h_score": float(h_score(x, y))}
        if has_source_head and candidate.layer is None:
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
    ranking = rank_candidates(scores)
    result: dict[str, Any] = {"scores": scores, "ranking": ranking, "kendall_tau": {}}
    if finetuned is not None:
        result["finetuned_match"] = match_finetuned(list(scores), finetuned)
        for metric, ranked in ranking.items():
            names = [n for n in ranked if n in finetuned]
            if len(names) >= 2:
                tau = kendall_tau([scores[n][metric] for n in names], [finetuned[n] for n in names])
                result["kendall_tau"][metric] = asdict(tau)
    return result


def match_finetuned(candidates: list[str], finetuned: dict[str, float]) -> dict[str, list[str]]:
    """Which candidates have a fine-tuned result (matched by name), and which do not.

    A name that matches nothing drops out of Kendall's tau silently otherwise, so every
    unmatched name is logged as a warning, with the names the results do carry.

    Args:
        candidates: candidate names (``medtl score -c NAME=SPEC``).
        finetuned: ``{name: fine-tuned metric}`` (e.g. arms of a ``learning_curves.json``).

    Returns:
        ``{"matched": [...], "candidates_without_result": [...],
        "results_without_candidate": [...]}``.
    """
    match = {
        "matched": [n for n in candidates if n in finetuned],
        "candidates_without_result": [n for n in candidates if n not in finetuned],
        "results_without_candidate": [n for n in finetuned if n not in candidates],
    }
    missing = match["candidates_without_result"]
    if missing:
        known = ", ".join(match["results_without_candidate"]) or "none besides the matched"
        logger.warning(
            "fine-tuned results: no result named %s (results are named: %s); name each "
            "candidate as its result, -c NAME=SPEC",
            ", ".join(repr(n) for n in missing),
            known,
        )
    if len(match["matched"]) < 2:
        logger.warning(
            "fine-tuned results: %d candidate(s) matched; Kendall's tau needs at least 2, so "
            "the ranking is not checked",
            len(match["matched"]),
        )
    return match


def rank_candidates(scores: dict[str, dict[str, float]]) -> dict[str, list[str]]:
    """Best first, per score; each score ranks only the candidates that have it (LEEP and
    NCE: those with a source classifier head, e.g. a supervised MRI source next to a
    headless foundation encoder)."""
    ranking: dict[str, list[str]] = {}
    for metric in ("logme", "h_score", "leep", "nce"):
        have = [n for n, s in scores.items() if metric in s]
        if have:
            ranking[metric] = sorted(have, key=lambda n, m=metric: -scores[n][m])
    return ranking


def target_config(path: str | Path) -> Any:
    """The experiment config whose data and preprocessing the candidates are scored on.

    Args:
        path: an experiment YAML, or a multi-arm study YAML (``arms:``; its baseline arm's
            config: same data and preprocessing as every arm).

    Returns:
        An :class:`~medtl.transfer.experiment.ExperimentConfig`.
    """
    import yaml

    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if isinstance(raw, dict) and "arms" in raw:
        from medtl.transfer.arms import arm_config, load_arms_config

        study = load_arms_config(path)
        return arm_config(study, study.baseline)
    from medtl.transfer.experiment import load_config

    return load_config(path)


def achieved_metric(path: str | Path, fraction: float | None = None) -> dict[str, float]:
    """Fine-tuned results to check a ranking against.

    Args:
        path: a ``{name: test AUROC}`` JSON file, or a ``learning_curves.json`` (the arms'
            or strategies' mean test AUROC over seeds at ``fraction``).
        fraction: the label fraction (default: the largest in the file).

    Returns:
        ``{name: test AUROC}``.
    """
    import json

    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    if not (isinstance(raw, dict) and "points" in raw):
        return {str(k): float(v) for k, v in raw.items()}
    from medtl.artifacts.curves import LearningCurves

    points = LearningCurves.read(path).points
    top = max(p.fraction for p in points) if fraction is None else float(fraction)
    by_arm: dict[str, list[float]] = {}
    for p in points:
        if abs(p.fraction - top) < 1e-9 and p.auroc is not None and np.isfinite(p.auroc):
            by_arm.setdefault(p.strategy, []).append(float(p.auroc))
    return {arm: float(np.mean(v)) for arm, v in by_arm.items()}


def write_scores(result: dict[str, Any], path: str | Path) -> Path:
    """Validate and write a :func:`score_backbones` result
    (:class:`~medtl.artifacts.scores.TransferabilityScores`, what the report's
    ``--transferability`` reads)."""
    return TransferabilityScores.parse(result, str(path)).write(path)
