"""One fine-tuning experiment from a YAML config: data -> model -> strategy -> predictions.

``medtl finetune CONFIG`` calls :func:`run_experiment`, which writes a **run** folder:

```
run_dir/
  experiment.yaml          the resolved config
  run_inputs.json          its identity: config, data and starting-weights hashes
  <strategy>/...           phase folders (config.yaml, metrics.csv, checkpoints/)
  predictions.csv          logits of every val/calibration/test record, with patient ids
  features_{train,val}.safetensors  pooled features (domain guard reference and threshold)
  model.safetensors        the trained weights (best epoch of the last phase)
  summary.json             timings, training results and provenance (starting weights,
                           source, versions, commit, device, precision, threads)
```

A folder that holds results of another config, data or starting weights is refused before
anything is written (:mod:`medtl.transfer.run_folder`), unless ``overwrite`` moves them aside.

Evaluation (calibration, metrics with CIs, operating points) and the model package are
produced from that folder by :mod:`medtl.evaluation.run` and :mod:`medtl.reports`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field

from medtl.artifacts.predictions import (
    PREDICTION_SPLITS,
    PredictionRow,
    read_predictions,
    write_predictions,
)
from medtl.artifacts.run import RunInputs, RunSummary
from medtl.training.config import TrainingConfig
from medtl.training.environment import run_environment
from medtl.transfer.presets import (
    AugmentationSpec,
    ModalityFamily,
    PreprocessingSpec,
    default_augmentation,
    default_preprocessing,
)
from medtl.transfer.provenance import RunProvenance, build_run_summary, model_device
from medtl.transfer.strategies import StrategyConfig, StrategyData, run_strategy

logger = logging.getLogger(__name__)

# read_predictions / write_predictions moved to medtl.artifacts.predictions (re-exported here).
__all__ = [
    "DataConfig",
    "ExperimentConfig",
    "ModelConfig",
    "build_model",
    "default_run_dir",
    "hashed_config",
    "load_config",
    "manifest_hash",
    "read_predictions",
    "resolve_paths",
    "run_experiment",
    "write_predictions",
]


class DataConfig(BaseModel):
    """Which dataset and how to feed it."""

    model_config = ConfigDict(extra="forbid")

    dataset: Path = Field(description="Dataset folder holding manifest.json.")
    modality: ModalityFamily = "generic"
    preset: Literal["merlin"] | None = Field(
        None,
        description="A named preprocessing preset (merlin: RAS, 1.5 x 1.5 x 3 mm, HU "
        "-1000..1000, pad + centre crop to spatial_size, given in X, Y, Z order).",
    )
    spatial_size: list[int] = Field(default_factory=lambda: [224, 224])
    intensity: dict[str, Any] | None = Field(
        None, description="Override of the modality's intensity preset (kind/lower/upper)."
    )
    augmentation: AugmentationSpec | None = Field(
        None, description="Override of the modality's augmentation preset."
    )
    cache: Literal["memory", "disk", "none"] = "memory"
    label_fraction: float = Field(1.0, gt=0, le=1, description="Training patients kept.")
    group_batches_by: str | None = Field(
        None,
        description="Record attribute whose groups share a batch (e.g. twin_pair: a nodule "
        "image and its nodule-free twin). Refused when no training record has the attribute, and "
        "under DDP (single-process training only).",
    )


class ModelConfig(BaseModel):
    """Which backbone and which starting weights."""

    model_config = ConfigDict(extra="forbid")

    backbone: str = "resnet18"
    weights: Path | None = Field(
        None, description="Local weights: a backbone/model package, a checkpoint or a bundle."
    )
    weights_format: str = "auto"
    min_loaded: float = Field(0.9, ge=0, le=1)
    inflate: bool = False
    dropout: float = Field(0.3, ge=0, lt=1)
    hidden_dim: int | None = None
    pool: Literal["avg", "avgmax"] = Field(
        "avg", description="Head pooling; avgmax keeps small-lesion evidence."
    )
    options: dict[str, Any] = Field(default_factory=dict)


class ExperimentConfig(BaseModel):
    """A whole fine-tuning experiment (the YAML file ``medtl finetune`` reads)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    task: str = ""
    source_domain: str | None = None
    source_task: str | None = None
    target_domain: str | None = None
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    calibration: Literal["temperature", "platt", "isotonic", "none"] = "temperature"
    output_dir: Path | None = Field(None, description="Run folder (default MEDTL_HOME/runs/name).")

    def preprocessing(self) -> PreprocessingSpec:
        """The deterministic preprocessing of this experiment."""
        if self.data.preset is not None:
            from medtl.models.foundation import PREPROCESSING_PRESETS

            preset = PREPROCESSING_PRESETS[self.data.preset]()
            spec = preset.model_copy(update={"spatial_size": list(self.data.spatial_size)})
        else:
            spec = default_preprocessing(self.data.modality, self.data.spatial_size)
        if self.data.intensity:
            spec = spec.model_copy(
                update={"intensity": spec.intensity.model_copy(update=self.data.intensity)}
            )
        return spec

    def augmentation(self) -> AugmentationSpec:
        """The training augmentation of this experiment."""
        if self.data.augmentation is not None:
            return self.data.augmentation
        return default_augmentation(self.data.modality, len(self.data.spatial_size))

    def config_hash(self) -> str:
        """Short sha256 of the resolved config (recorded in the model card).

        Settings that change neither what is trained nor its results (the output folder,
        progress bars, loggers) are left out: :data:`PRESENTATION_KEYS`.
        """
        text = json.dumps(hashed_config(self.model_dump(mode="json")), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


#: dotted keys of an experiment config that do not enter its hash (where results go and how
#: progress is shown, not what is computed)
PRESENTATION_KEYS = (
    "output_dir",
    "training.progress",
    "training.loggers",
    "training.log_every_steps",
    "training.run_dir",
    "training.resume",
)


def hashed_config(dump: dict[str, Any]) -> dict[str, Any]:
    """A config dump without its :data:`PRESENTATION_KEYS` (what the config hash covers).

    Args:
        dump: ``ExperimentConfig.model_dump(mode="json")`` or a run's ``experiment.yaml``.

    Returns:
        A copy without those keys.
    """
    out = dict(dump)
    for key in PRESENTATION_KEYS:
        head, _, tail = key.partition(".")
        if not tail:
            out.pop(head, None)
        elif isinstance(out.get(head), dict):
            out[head] = {k: v for k, v in out[head].items() if k != tail}
    return out


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Read and validate an experiment YAML; relative paths resolve against its folder.

    Args:
        path: the YAML file.
        overrides: nested dict merged over the file (e.g. ``{"strategy": {"name": "scratch"}}``).
    """
    path = Path(path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if overrides:
        raw = _merge(raw, overrides)
    return resolve_paths(ExperimentConfig.model_validate(raw), path.resolve().parent)


def resolve_paths(config: ExperimentConfig, base: Path) -> ExperimentConfig:
    """Resolve the dataset and weights paths (``$MEDTL_HOME``, ``~``, relative to ``base``)."""
    data = config.data
    if not data.dataset.is_absolute():
        data = data.model_copy(update={"dataset": _expand(data.dataset, base)})
    model = config.model
    if model.weights is not None and not model.weights.is_absolute():
        model = model.model_copy(update={"weights": _expand(model.weights, base)})
    return config.model_copy(update={"data": data, "model": model})


def _expand(value: Path, base: Path) -> Path:
    text = str(value)
    if text.startswith("$MEDTL_HOME") or text.startswith("${MEDTL_HOME}"):
        from medtl.paths import medtl_home

        rest = text.split("}", 1)[1] if text.startswith("${") else text[len("$MEDTL_HOME") :]
        return medtl_home() / rest.lstrip("/")
    if text.startswith("~"):
        return value.expanduser()
    return (base / value).resolve()


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def default_run_dir(config: ExperimentConfig) -> Path:
    """``output_dir`` or ``MEDTL_HOME/runs/<name>``."""
    if config.output_dir is not None:
        return Path(config.output_dir)
    from medtl.paths import home_subdir

    return home_subdir("runs") / config.name


def build_model(config: ExperimentConfig, num_outputs: int, labels: list[str], origin: Any = None):
    """Create the backbone and import its starting weights (not for scratch).

    The backbone config records the source domain and task the weights state on their own
    card (the config's free text only when they carry none; nothing for scratch).

    Args:
        config: the experiment.
        num_outputs: logits of the head.
        labels: class names.
        origin: :func:`~medtl.transfer.provenance.starting_weights_origin` of the config,
            when already located.

    Returns:
        The model (its ``load_report`` set when weights were imported).
    """
    from medtl.models import create_backbone
    from medtl.models.importers import import_weights
    from medtl.transfer.provenance import source_description, starting_weights_origin

    m = config.model
    if origin is None:
        origin = starting_weights_origin(config)
    source, _ = source_description(config, origin)
    preprocessing = config.preprocessing()
    model = create_backbone(
        m.backbone,
        spatial_dims=preprocessing.spatial_dims,
        in_channels=preprocessing.in_channels,
        num_outputs=num_outputs,
        dropout=m.dropout,
        hidden_dim=m.hidden_dim,
        pool=m.pool,
        options=m.options or None,
        input_size=list(preprocessing.spatial_size),
        labels=labels if len(labels) == num_outputs else [],
        preprocessing=preprocessing,
        source_domain=source.domain,
        source_task=source.task,
    )
    if origin is not None:
        report = import_weights(
            model,
            origin.path,
            format=m.weights_format,
            min_loaded=m.min_loaded,
            inflate=m.inflate,
            load_head=False,
        )
        model.load_report = report
    return model


def _predict_rows(model, datasets, num_outputs: int, training) -> list[PredictionRow]:
    """Logits of every val/calibration/test record (all ranks predict: collectives)."""
    from medtl.training import Trainer
    from medtl.transfer.tasks import loss_for

    predictor = Trainer(model, loss_for(num_outputs), training.model_copy(update={"amp": "none"}))
    manifest = datasets.manifest
    rows: list[PredictionRow] = []
    for split in PREDICTION_SPLITS:
        ds = getattr(datasets, split)
        if ds is None:
            continue
        logits, _ = predictor.predict(ds)
        for j, index in enumerate(datasets.indices[split]):
            record = manifest.records[index]
            values = tuple(float(v) for v in logits[j].reshape(-1).tolist())
            rows.append(PredictionRow(split, int(index), record.patient_id, record.label, values))
    return rows


def _train_loader(config: ExperimentConfig, datasets, batch_size: int, seed: int):
    """The training data: the dataset, or batches grouped by a record attribute."""
    if not config.data.group_batches_by:
        return datasets.train
    from torch.utils.data import DataLoader

    from medtl.data.datasets import GroupedBatchSampler, group_positions

    records = [datasets.manifest.records[i] for i in datasets.indices["train"]]
    sampler = GroupedBatchSampler(
        group_positions(records, config.data.group_batches_by), batch_size, seed=seed
    )
    return DataLoader(datasets.train, batch_sampler=sampler)


def _save_tensors(run_dir: Path, model, datasets) -> None:
    """Pooled features (the domain guard's reference) and the trained weights."""
    from safetensors.torch import save_file

    from medtl.transfer.strategies import extract_features

    for split, ds in (("train", datasets.train_plain), ("val", datasets.val)):
        feats, labels = extract_features(model, ds)
        save_file(
            {"features": feats.contiguous(), "labels": labels.contiguous()},
            str(run_dir / f"features_{split}.safetensors"),
        )
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        str(run_dir / "model.safetensors"),
    )


def run_experiment(
    config: ExperimentConfig,
    run_dir: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> Path:
    """Train one experiment and write predictions for val, calibration and test.

    A folder that holds results of another config, data or starting weights is refused
    before anything is written (:func:`~medtl.transfer.run_folder.guard_run_folder`).

    Args:
        config: the experiment.
        run_dir: the run folder (default :func:`default_run_dir`).
        resume: continue killed phases from their last checkpoints (same config only).
        overwrite: move a folder's old results aside (timestamped sibling) and train anew.

    Returns:
        The run folder.

    Raises:
        medtl.transfer.run_folder.RunFolderConflict: the folder holds another run's results.
        ValueError: a setting cannot apply (e.g. ``data.group_batches_by`` names an attribute
            no training record has).
    """
    from medtl.data.datasets import build_datasets
    from medtl.data.manifest import Manifest
    from medtl.training.distributed import env_dist_info
    from medtl.transfer.provenance import check_grouping, starting_weights_origin
    from medtl.transfer.run_folder import guard_run_folder, write_inputs

    # Under torchrun every rank trains and predicts (collectives); only rank 0 writes files.
    dist = env_dist_info()
    main = dist.is_main
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
    origin = starting_weights_origin(config)
    inputs = RunInputs(
        name=config.name,
        config_hash=config.config_hash(),
        data_hash=manifest_hash(Path(config.data.dataset)),
        weights_sha256=origin.sha256 if origin is not None else None,
    )
    train_records = [r for r in Manifest.load(config.data.dataset).records if r.split == "train"]
    grouping = check_grouping(config, train_records, dist.world_size)
    if main:
        guard_run_folder(run_dir, config, inputs, resume=resume, overwrite=overwrite)
        write_inputs(run_dir, config, inputs)
    run_dir.mkdir(parents=True, exist_ok=True)
    provenance = RunProvenance.start(config, inputs, origin, grouping)
    t0 = time.perf_counter()
    seed = config.training.seed
    datasets = build_datasets(
        config.data.dataset,
        config.preprocessing(),
        config.augmentation(),
        cache=config.data.cache,
        cache_dir=run_dir / "cache" if config.data.cache == "disk" else None,
        label_fraction=config.data.label_fraction,
        seed=seed,
    )
    manifest = datasets.manifest
    n_classes = max(manifest.num_classes, len(manifest.label_names))
    num_outputs = 1 if n_classes <= 2 else n_classes
    t_data = time.perf_counter() - t0
    torch.manual_seed(seed)
    model = build_model(config, num_outputs, list(manifest.label_names), origin)
    training = config.training.model_copy(update={"run_dir": None, "resume": resume})
    result = run_strategy(
        model,
        config.strategy,
        training,
        StrategyData(
            train=_train_loader(config, datasets, training.batch_size, seed),
            val=datasets.val,
            train_plain=datasets.train_plain,
        ),
        run_dir / config.strategy.name,
    )
    rows = _predict_rows(model, datasets, num_outputs, training)
    if not main:
        return run_dir
    write_predictions(run_dir / "predictions.csv", rows, num_outputs)
    _save_tensors(run_dir, model, datasets)
    seconds = {"data": t_data, "total": time.perf_counter() - t0}
    provenance.environment = run_environment(
        model_device(model), config.training.amp, dist.world_size
    )
    summary = build_run_summary(config, result, model, datasets, seconds, provenance)
    summary.write(run_dir / RunSummary.FILE)
    logger.info("experiment %s done in %.1f s: %s", config.name, summary.total_seconds, run_dir)
    return run_dir


def manifest_hash(dataset_dir: Path) -> str:
    """sha256 of a dataset's manifest.json (the data hash recorded in model cards).

    Raises:
        FileNotFoundError: no manifest (the message says what ``data.dataset`` must be).
    """
    from medtl.data.manifest import Manifest, manifest_file

    path = manifest_file(dataset_dir)
    if not path.is_file():
        Manifest.load(dataset_dir)  # raises with the message that says what to give
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
