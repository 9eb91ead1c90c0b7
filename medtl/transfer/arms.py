"""Several arms on one task along one learning curve (``configs/ct_foundation.yaml``).

A plain learning curve (:mod:`medtl.transfer.learning_curves`) compares one transfer
strategy of one backbone with scratch. A foundation-model study compares several starting
points on the same data, split and seeds: here each **arm** is one of

* ``experiment``: a full :class:`~medtl.transfer.experiment.ExperimentConfig` (the shared
  ``base`` with the arm's ``model`` / ``strategy`` / ``data`` / ``training`` merged over it),
  trained per point by :func:`~medtl.transfer.experiment.run_experiment` (staged astra-ct,
  an MRI-pretrained 3D network, 3D scratch);
* ``features``: a frozen encoder cut at ``layer`` (``layer3`` / ``layer4``, the i3resnet
  ``last_stage`` option); the pooled features of **every** record are extracted once per arm
  and cached (``out_dir/features/<arm>-<key>.safetensors``, keyed by the weights, the
  preprocessing and the manifest), and each point fits a logistic head (scikit-learn, L2) on
  its training subset: the same head as the ``feature_extraction`` strategy's ``logistic``;
* ``histogram``: logistic regression on each patch's HU histogram
  (:func:`medtl.data.histogram_baseline.histogram_features`): how far density alone gets.

Every point is a run folder (``experiment.yaml``, ``summary.json``, ``predictions.csv``) that
:func:`medtl.evaluation.run.evaluate_run` calibrates and evaluates on the same test split, with
the same patient-grouped label subsets (:func:`medtl.data.datasets.subsample_patients`, nested
across fractions) and the same seeds. The summary has the learning curves of every arm
(``learning_curves.json``, arm names as strategies), the sample-efficiency table against the
``baseline`` arm, and one seed-and-patient verdict per arm against it (all three in
``arms.json``, a :class:`~medtl.artifacts.StudyArms`).

Points of ``features`` and ``histogram`` arms are evaluation runs only (predictions, summary,
evaluation; no network weights): ``medtl package`` applies to ``experiment`` arms.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from medtl.transfer.experiment import ExperimentConfig, manifest_hash, resolve_paths

logger = logging.getLogger(__name__)

__all__ = ["ArmSpec", "ArmsConfig", "arm_config", "load_arms_config", "run_arms"]


class ArmSpec(BaseModel):
    """One arm: what it changes over the shared base."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["experiment", "features", "histogram", "top_block"] = Field(
        "experiment",
        description="experiment: the whole network trained; features: cached pooled features "
        "and a logistic head; histogram: HU histograms; top_block: staged fine-tuning of the "
        "last stage on the frozen trunk's cached maps (no augmentation).",
    )
    layer: Literal["layer3", "layer4"] | None = Field(
        None, description="features: the i3resnet stage whose pooled output is the feature."
    )
    description: str = ""
    model: dict[str, Any] = Field(default_factory=dict)
    strategy: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)


class ArmsConfig(BaseModel):
    """The multi-arm study (the YAML file)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    base: dict[str, Any] = Field(description="ExperimentConfig fields shared by every arm.")
    arms: dict[str, ArmSpec]
    baseline: str = Field("scratch", description="The arm every other is compared against.")
    fractions: list[float] = Field(default_factory=lambda: [0.05, 0.10, 0.25, 1.0])
    seeds: int = Field(3, ge=1, description="Seeds per point up to 25 % of labels.")
    top_seeds: int | None = Field(None, description="Seeds per point above 25 % of labels.")
    base_dir: Path | None = Field(
        None, description="Folder relative paths resolve against (the YAML's, when loaded)."
    )


def load_arms_config(path: str | Path) -> ArmsConfig:
    """Read and validate a multi-arm YAML (every arm's config is validated too)."""
    path = Path(path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    raw.setdefault("base_dir", str(path.resolve().parent))
    config = ArmsConfig.model_validate(raw)
    if config.baseline not in config.arms:
        raise ValueError(f"baseline arm {config.baseline!r} is not among the arms")
    for arm in config.arms:
        arm_config(config, arm)
    return config


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def arm_config(config: ArmsConfig, arm: str) -> ExperimentConfig:
    """The experiment config of one arm (paths resolved against the YAML's folder)."""
    spec = config.arms[arm]
    raw = _merge(config.base, {"name": f"{config.name}-{arm}"})
    for key in ("model", "strategy", "data", "training"):
        raw = _merge(raw, {key: getattr(spec, key)})
    if spec.kind == "features":
        layer = spec.layer or "layer4"
        raw = _merge(raw, {"model": {"options": {"last_stage": layer}}})
        raw = _merge(raw, {"strategy": {"name": "feature_extraction", "feature_head": "logistic"}})
    if spec.description:
        raw["description"] = spec.description
    experiment = ExperimentConfig.model_validate(raw)
    return resolve_paths(experiment, Path(config.base_dir or "."))


# ------------------------------------------------------------------------------ points
def _train_subset(manifest: Any, train: list[int], fraction: float, seed: int) -> list[int]:
    from medtl.data.datasets import subsample_patients

    kept = subsample_patients([(i, manifest.records[i]) for i in train], fraction, seed)
    return [i for i, _ in kept]


def _write_point(
    run: Path,
    cfg: ExperimentConfig,
    manifest: Any,
    splits: dict[str, list[int]],
    logits: dict[int, np.ndarray],
    info: dict[str, Any],
) -> None:
    """A run folder for a point trained outside the Trainer (features, histogram)."""
    from medtl.artifacts.predictions import PREDICTION_SPLITS, PredictionRow, write_predictions
    from medtl.artifacts.run import RunSummary
    from medtl.transfer.provenance import point_provenance
    from medtl.transfer.run_folder import expected_inputs, write_inputs

    uses_weights = info["strategy"] != "histogram"
    inputs = expected_inputs(cfg, uses_weights=uses_weights)
    write_inputs(run, cfg, inputs)  # experiment.yaml and run_inputs.json
    rows = []
    for split in PREDICTION_SPLITS:
        for i in splits.get(split, []):
            r = manifest.records[i]
            values = tuple(float(v) for v in np.atleast_1d(logits[i]))
            rows.append(PredictionRow(split, int(i), r.patient_id, int(r.label), values))
    num_outputs = len(rows[0].logits)
    write_predictions(run / "predictions.csv", rows, num_outputs)
    train = info["train"]
    RunSummary(
        name=cfg.name,
        strategy=info["strategy"],
        num_outputs=num_outputs,
        label_names=list(manifest.label_names),
        label_fraction=cfg.data.label_fraction,
        train_images=len(train),
        train_patients=len({manifest.records[i].patient_id for i in train}),
        data_seconds=info.get("data_seconds", 0.0),
        train_seconds=info["seconds"],
        total_seconds=info["seconds"] + info.get("data_seconds", 0.0),
        config_hash=inputs.config_hash,
        data_hash=inputs.data_hash,
        **point_provenance(cfg, uses_weights, info.get("device", "cpu")),
    ).write(run / RunSummary.FILE)


def _logistic_logits(x_train, y_train, x_all: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Fit an L2 logistic head (standardised inputs) and return every record's logits."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000))
    clf.fit(x_train, y_train)
    keys = list(x_all)
    scores = clf.decision_function(np.stack([x_all[k] for k in keys]))
    if len(clf.classes_) != len(np.unique(y_train)) or scores.ndim not in (1, 2):
        raise ValueError("logistic head: unexpected class layout")
    return {k: np.atleast_1d(scores[j]) for j, k in enumerate(keys)}


def _all_splits(manifest: Any) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, r in enumerate(manifest.records):
        out.setdefault(r.split, []).append(i)
    return out


def _feature_key(cfg: ExperimentConfig, model: Any) -> str:
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        if not key.startswith("head."):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(cfg.preprocessing().model_dump_json().encode())
    digest.update(manifest_hash(Path(cfg.data.dataset)).encode())
    return digest.hexdigest()[:16]


def arm_model(cfg: ExperimentConfig) -> tuple[Any, Any]:
    """The manifest and the arm's model with its starting weights (1 logit for 2 classes)."""
    from medtl.data.manifest import Manifest
    from medtl.transfer.experiment import build_model

    manifest = Manifest.load(cfg.data.dataset)
    n_classes = max(manifest.num_classes, len(manifest.label_names))
    outputs = 1 if n_classes <= 2 else n_classes
    return manifest, build_model(cfg, outputs, list(manifest.label_names))


def plain_splits(cfg: ExperimentConfig):
    """``(record indices, dataset)`` of every split, without augmentation, in split order."""
    from medtl.data.datasets import build_datasets

    datasets = build_datasets(cfg.data.dataset, cfg.preprocessing(), cfg.augmentation(),
                              cache="none", label_fraction=1.0, seed=0)  # fmt: skip
    for split in ("train", "val", "calibration", "test"):
        ds = datasets.train_plain if split == "train" else getattr(datasets, split)
        if ds is not None:
            yield datasets.indices[split], ds


def load_cached(path: Path, field: str) -> dict[int, np.ndarray] | None:
    """``{record index: array}`` from a per-record safetensors cache, or None if absent."""
    from safetensors.numpy import load_file

    if not path.is_file():
        return None
    data = load_file(str(path))
    return {int(i): f for i, f in zip(data["index"], data[field], strict=True)}


def save_cached(path: Path, field: str, index: list[int], arrays: np.ndarray) -> dict:
    """Write a per-record cache atomically; returns ``{record index: array}``."""
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"index": np.asarray(index, np.int64), field: arrays}, str(tmp))
    tmp.replace(path)
    return {int(i): f for i, f in zip(index, arrays, strict=True)}


def arm_features(cfg: ExperimentConfig, cache_dir: Path, arm: str) -> dict[int, np.ndarray]:
    """Pooled features of every manifest record for a ``features`` arm (cached on disk).

    Returns:
        ``{record index: (D,) float32}``.
    """
    import torch

    from medtl.transfer.strategies import extract_features

    _, model = arm_model(cfg)
    path = cache_dir / f"{arm}-{_feature_key(cfg, model)}.safetensors"
    cached = load_cached(path, "features")
    if cached is not None:
        return cached
    t0 = time.perf_counter()
    index, feats = [], []
    for ids, ds in plain_splits(cfg):
        # fp32 on CPUs: bf16 autocast of these 3D convolutions ran slower than fp32 on an
        # AVX512-BF16 CPU (0.83x idle, 0.15-0.56x under load: bench/results.md), and fp32
        # is the reference anyway
        amp = cfg.training.amp if torch.cuda.is_available() else "none"
        f, _ = extract_features(model, ds, batch_size=8, amp=amp)
        index += ids
        feats.append(f.numpy())
    out = save_cached(path, "features", index, np.concatenate(feats))
    logger.info("%s: features of %d records in %.0f s", arm, len(index), time.perf_counter() - t0)
    return out


def _features_point(cfg, manifest, features, run: Path, fraction: float, seed: int) -> None:
    splits = _all_splits(manifest)
    train = _train_subset(manifest, splits["train"], fraction, seed)
    t0 = time.perf_counter()
    y = np.array([manifest.records[i].label for i in train])
    others = {i: features[i] for s in ("val", "calibration", "test") for i in splits.get(s, [])}
    logits = _logistic_logits(np.stack([features[i] for i in train]), y, others)
    info = {"train": train, "strategy": "feature_extraction", "seconds": time.perf_counter() - t0}
    _write_point(run, cfg, manifest, splits, logits, info)


def _histogram_point(cfg, manifest, run: Path, fraction: float, seed: int) -> None:
    from medtl.data.histogram_baseline import CT_BINS, histogram_features
    from medtl.data.manifest import manifest_file, resolve_image
    from medtl.data.patches import read_patch

    root = manifest_file(cfg.data.dataset).parent  # image paths resolve from the manifest
    splits = _all_splits(manifest)
    train = _train_subset(manifest, splits["train"], fraction, seed)
    t0 = time.perf_counter()
    wanted = train + [i for s in ("val", "calibration", "test") for i in splits.get(s, [])]
    arrays = [read_patch(resolve_image(root, manifest.records[i].image))[0] for i in wanted]
    hist = histogram_features(arrays, CT_BINS)
    rows = dict(zip(wanted, hist, strict=True))
    y = np.array([manifest.records[i].label for i in train])
    others = {i: rows[i] for i in wanted[len(train) :]}
    logits = _logistic_logits(np.stack([rows[i] for i in train]), y, others)
    info = {"train": train, "strategy": "histogram", "seconds": time.perf_counter() - t0}
    _write_point(run, cfg, manifest, splits, logits, info)


# ------------------------------------------------------------------------------ study
def same_subsets(config: ArmsConfig, fractions: list[float]) -> list[tuple[float, float, int]]:
    """Label fractions that select the same training patients (seed 0), as
    ``(smaller, larger, patients)``: with few patients, 5 % and 10 % can both round to one,
    and their two points are then one point drawn twice."""
    from medtl.data.manifest import Manifest

    manifest = Manifest.load(arm_config(config, config.baseline).data.dataset)
    train = _all_splits(manifest).get("train", [])
    ordered = sorted(set(fractions))
    subsets = [frozenset(_train_subset(manifest, train, f, 0)) for f in ordered]
    out = []
    for k in range(1, len(ordered)):
        if subsets[k] == subsets[k - 1]:
            patients = {manifest.records[i].patient_id for i in subsets[k]}
            out.append((ordered[k - 1], ordered[k], len(patients)))
    return out


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _run_arm(config: ArmsConfig, arm: str, out_dir: Path, todo: list, n_resamples: int,
             resume: bool = False) -> None:  # fmt: skip
    from medtl.data.manifest import Manifest
    from medtl.evaluation.run import evaluate_run
    from medtl.transfer.experiment import run_experiment
    from medtl.transfer.learning_curves import point_config, point_dir

    cfg = arm_config(config, arm)
    kind = config.arms[arm].kind
    if not todo:
        return
    manifest = Manifest.load(cfg.data.dataset)
    features = arm_features(cfg, out_dir / "features", arm) if kind == "features" else None
    if kind == "top_block":
        from medtl.transfer.arms_top import top_block_point, trunk_maps

        maps = trunk_maps(cfg, out_dir / "features", arm)
    for fraction, seed in todo:
        run = point_dir(out_dir, arm, fraction, seed)
        point = point_config(cfg, str(cfg.strategy.name), fraction, seed)
        logger.info("arm %s: %.0f %% of labels, seed %d", arm, 100 * fraction, seed)
        if kind == "experiment":
            run_experiment(point, run, resume=resume and (run / "run_inputs.json").is_file())
        elif kind == "features":
            _features_point(point, manifest, features, run, fraction, seed)
        elif kind == "top_block":
            top_block_point(point, manifest, maps, run, fraction, seed)
        else:
            _histogram_point(point, manifest, run, fraction, seed)
        evaluate_run(run, n_resamples=n_resamples, seed=seed)


def run_arms(
    config: ArmsConfig,
    out_dir: str | Path,
    *,
    arms: list[str] | None = None,
    fractions: list[float] | None = None,
    seeds: int | None = None,
    top_seeds: int | None = None,
    n_resamples: int = 1000,
    resume: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run every arm at every (fraction, seed) point, then the curves and verdicts.

    Finished points are reused only when their recorded config, data and weights hashes
    match (:func:`~medtl.transfer.run_folder.plan_points`); points of another run are
    refused, or moved aside with ``overwrite``; ``resume`` continues unfinished experiment
    points from their checkpoints.

    Args:
        config: the study.
        out_dir: where point runs (``<arm>_f<fraction>_s<seed>``) and summaries go.
        arms: a subset of arms to run (the baseline is always run).
        fractions / seeds / top_seeds: override the config's schedule.
        n_resamples: bootstrap resamples per evaluation and verdict.
        resume: continue unfinished experiment points of the same config.
        overwrite: move points of another config, data or weights aside.

    Returns:
        ``{"points": [...], "sample_efficiency": {...}, "verdicts": {arm: {...}},
        "reuse": "3 points reused, 1 recomputed"}``; each
        verdict is also written to ``out_dir/verdicts/<arm>/verdict.json``, and every arm's
        curve (mean over seeds, 95% band) is drawn in ``out_dir/learning_curves.png``.
    """
    from dataclasses import asdict

    from medtl.artifacts.curves import (
        Comparison,
        CurvePoint,
        LearningCurves,
        SampleEfficiencyFile,
    )
    from medtl.artifacts.evaluation import Evaluation
    from medtl.artifacts.run import RunSummary
    from medtl.artifacts.study import StudyArms
    from medtl.evaluation.compare import compare_seed_runs
    from medtl.evaluation.plots import plot_learning_curves
    from medtl.evaluation.transfer_analysis import LearningCurvePoint, sample_efficiency_table
    from medtl.transfer.learning_curves import point_dir, seed_schedule
    from medtl.transfer.run_folder import dump_hash, plan_study_points

    out_dir = Path(out_dir)
    names = list(arms or config.arms)
    if config.baseline not in names:
        names.append(config.baseline)
    schedule = seed_schedule(
        fractions or config.fractions, seeds or config.seeds, top_seeds or config.top_seeds
    )
    plan = plan_study_points(config, names, out_dir, schedule, overwrite=overwrite)
    logger.info("study %s in %s: %s", config.name, out_dir, plan.sentence())
    out_dir.mkdir(parents=True, exist_ok=True)
    for small, large, n in same_subsets(config, list(schedule)):
        logger.warning("label fractions %g and %g select the same %d training patient(s): "
                       "one point, drawn twice", small, large, n)  # fmt: skip
    for arm in names:
        todo = [(f, s) for a, f, s in plan.recompute if a == arm]
        _run_arm(config, arm, out_dir, todo, n_resamples, resume)
    points = []
    for arm in names:
        for fraction, arm_seeds in schedule.items():
            for seed in arm_seeds:
                run = point_dir(out_dir, arm, fraction, seed)
                test = Evaluation.read(run / Evaluation.FILE).test
                summary = RunSummary.read(run / RunSummary.FILE)
                points.append(LearningCurvePoint(
                    strategy=arm, fraction=float(fraction), seed=int(seed),
                    auroc=_nan(test.auroc.estimate),
                    auprc=test.auprc.estimate if test.auprc is not None else None,
                    n_train=summary.train_images,
                    extra={"train_seconds": summary.train_seconds},
                ))  # fmt: skip
    LearningCurves.from_points(CurvePoint.model_validate(asdict(p)) for p in points).write(
        out_dir / LearningCurves.FILE
    )
    table = sample_efficiency_table(points, scratch_strategy=config.baseline)
    efficiency = table.to_dict()
    title = f"{config.name}: every arm against {config.baseline}"
    plot_learning_curves(
        table, scratch_strategy=config.baseline, title=title, path=out_dir / "learning_curves.png"
    )
    top = max(schedule)
    verdicts = {
        arm: compare_seed_runs(
            [point_dir(out_dir, arm, top, s) for s in schedule[top]],
            [point_dir(out_dir, config.baseline, top, s) for s in schedule[top]],
            seeds_transfer=schedule[top],
            seeds_scratch=schedule[top],
            n_resamples=n_resamples,
        )
        for arm in names
        if arm != config.baseline
    }
    for arm, verdict in verdicts.items():  # typed, one file per arm: the reports read them
        Comparison.model_validate(verdict).write(out_dir / "verdicts" / arm / Comparison.FILE)
    out = {"points": [asdict(p) for p in points], "sample_efficiency": efficiency,
           "verdicts": verdicts, "reuse": plan.sentence()}  # fmt: skip
    StudyArms(
        points=[CurvePoint.model_validate(p) for p in out["points"]],
        sample_efficiency=SampleEfficiencyFile.parse(efficiency, "sample efficiency"),
        verdicts={arm: Comparison.model_validate(v) for arm, v in verdicts.items()},
        config_hash=dump_hash(config, exclude={"base_dir"}),
        data_hash=manifest_hash(Path(arm_config(config, config.baseline).data.dataset)),
    ).write(out_dir / StudyArms.FILE)  # validated on the way out
    return out
