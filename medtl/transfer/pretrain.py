"""Source-domain pretraining: backbones for transfer when no downloaded weights exist.

``medtl pretrain CONFIG`` trains a backbone on a source dataset in stages, in the order
given:

* **restoration** (self-supervised, Models Genesis): an encoder-decoder restores images from
  corrupted copies (:mod:`medtl.transfer.genesis`); needs no labels;
* **lesion** (self-supervised): the backbone learns to tell whether a synthetic focal
  opacity was pasted into the image (:mod:`medtl.transfer.lesion_pretext`); needs no labels;
* **supervised**: the backbone learns the source task's labels (e.g. MRI tissue classes).

The output is a **backbone package** (``weights.safetensors`` + ``model.json`` recording the
source domain, task, data and config hashes, and the pretraining losses/metrics) that
experiments name in ``model.weights``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from medtl.training.config import TrainingConfig
from medtl.transfer.experiment import DataConfig, manifest_hash

logger = logging.getLogger(__name__)

Stage = Literal["restoration", "lesion", "supervised"]


class PretrainConfig(BaseModel):
    """A pretraining job (the YAML ``medtl pretrain`` reads)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    version: str = "1.0.0"
    description: str = ""
    source_domain: str = ""
    source_task: str = ""
    data: DataConfig
    backbone: str = "resnet18"
    options: dict[str, Any] = Field(default_factory=dict)
    stages: list[Stage] = Field(default_factory=lambda: ["restoration", "supervised"])
    restoration_epochs: int = Field(5, ge=1)
    lesion_epochs: int = Field(5, ge=1)
    lesion_radius: tuple[float, float] = Field(
        (0.025, 0.07), description="Lesion pretext: blob radius range, fraction of the side."
    )
    lesion_contrast: tuple[float, float] = Field(
        (0.04, 0.25), description="Lesion pretext: peak added intensity on [0, 1] images."
    )
    supervised_epochs: int = Field(5, ge=1)
    pool: Literal["avg", "avgmax"] = Field(
        "avg", description="Head pooling of the pretraining heads (avgmax for small lesions)."
    )
    lr: float = Field(1e-3, gt=0)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    output_dir: Path | None = None

    def config_hash(self) -> str:
        """Short sha256 of the resolved config."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_pretrain_config(path: str | Path) -> PretrainConfig:
    """Read a pretraining YAML (relative dataset paths resolve against its folder)."""
    from medtl.transfer.experiment import _expand

    path = Path(path)
    cfg = PretrainConfig.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    if not cfg.data.dataset.is_absolute():
        data = cfg.data.model_copy(update={"dataset": _expand(cfg.data.dataset, path.parent)})
        cfg = cfg.model_copy(update={"data": data})
    return cfg


class RestorationNet(nn.Module):
    """Backbone encoder + a light decoder that upsamples the feature map to the input size."""

    def __init__(self, backbone: nn.Module, out_channels: int = 1, width: int = 64) -> None:
        super().__init__()
        self.backbone = backbone
        dims = backbone.config.spatial_dims
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.mode = "bilinear" if dims == 2 else "trilinear"
        self.reduce = nn.Sequential(conv(backbone.feature_dim, width, 1), nn.ReLU(inplace=True))
        self.refine = nn.Sequential(
            conv(width, width // 2, 3, padding=1),
            nn.ReLU(inplace=True),
            conv(width // 2, out_channels, 3, padding=1),
        )
        self.steps = nn.ModuleList(
            nn.Sequential(conv(width, width, 3, padding=1), nn.ReLU(inplace=True)) for _ in range(3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        h = self.reduce(self.backbone.forward_features(x))
        for step in self.steps:  # progressive x2 upsampling, then the exact size
            target = [min(s * 2, t) for s, t in zip(h.shape[2:], size, strict=True)]
            h = step(nn.functional.interpolate(h, size=target, mode=self.mode))
        h = nn.functional.interpolate(h, size=size, mode=self.mode)
        return torch.sigmoid(self.refine(h))


class GenesisPairs(torch.utils.data.Dataset):
    """``(corrupted, original)`` pairs from a dataset of preprocessed images in [0, 1].

    The corruption of sample ``i`` at its ``k``-th access uses the generator seeded by
    ``(seed, i, k)``, so runs replay exactly.
    """

    def __init__(self, base: Any, seed: int = 0) -> None:
        self.base = base
        self.seed = seed
        self._access = np.zeros(len(base), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        from medtl.transfer.genesis import corrupt

        item = self.base[index]
        image = item["image"] if isinstance(item, dict) else item[0]
        x = torch.as_tensor(image).float().clamp(0, 1).numpy()
        rng = np.random.default_rng((self.seed, int(index), int(self._access[index])))
        self._access[index] += 1
        return torch.from_numpy(corrupt(x, rng)), torch.from_numpy(x)


def run_pretraining(config: PretrainConfig, out_dir: str | Path | None = None) -> Path:
    """Pretrain a source backbone and write a backbone package.

    Args:
        config: the pretraining job.
        out_dir: run folder (default ``output_dir`` or ``MEDTL_HOME/pretrain/<name>``); the
            package is written to ``out_dir/package`` and registered.

    Returns:
        The package folder.
    """
    from medtl.data.datasets import build_datasets
    from medtl.transfer.presets import default_augmentation, default_preprocessing

    out_dir = _run_folder(config, out_dir)
    t0 = time.perf_counter()
    pre = default_preprocessing(config.data.modality, config.data.spatial_size)
    aug = config.data.augmentation or default_augmentation(
        config.data.modality, len(config.data.spatial_size)
    )
    data = build_datasets(
        config.data.dataset, pre, aug, cache=config.data.cache, seed=config.training.seed
    )
    model, num_outputs = _source_model(config, pre, data.manifest)
    metrics: dict[str, Any] = {}
    for stage in config.stages:
        if stage == "restoration":
            metrics.update(_restoration_stage(model, config, data, out_dir / "restoration"))
        elif stage == "lesion":
            metrics.update(_lesion_stage(model, config, data, out_dir / "lesion"))
        else:
            if int(model.config.num_outputs) != num_outputs:  # after the lesion pretext's head
                model.reset_head(num_outputs)
            metrics.update(_supervised_stage(model, config, data, out_dir / "supervised"))
    metrics["seconds"] = time.perf_counter() - t0
    return _write_package(model, config, data, metrics, out_dir)


def _run_folder(config: PretrainConfig, out_dir: str | Path | None) -> Path:
    """The run folder (argument, then ``output_dir``, then ``MEDTL_HOME/pretrain/<name>``)."""
    if out_dir is None:
        if config.output_dir is not None:
            out_dir = config.output_dir
        else:
            from medtl.paths import home_subdir

            out_dir = home_subdir("pretrain") / config.name
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _source_model(config: PretrainConfig, pre: Any, manifest: Any) -> tuple[Any, int]:
    """The seeded backbone with the source task's head; returns it and its output count."""
    from medtl.models import create_backbone

    n_classes = max(manifest.num_classes, len(manifest.label_names))
    num_outputs = 1 if n_classes <= 2 else n_classes
    torch.manual_seed(config.training.seed)
    model = create_backbone(
        config.backbone,
        spatial_dims=pre.spatial_dims,
        in_channels=pre.in_channels,
        num_outputs=num_outputs,
        options=config.options or None,
        input_size=list(pre.spatial_size),
        labels=list(manifest.label_names) if len(manifest.label_names) == num_outputs else [],
        preprocessing=pre.model_dump(mode="json"),
        source_domain=config.source_domain,
        source_task=config.source_task,
        pool=config.pool,
    )
    return model, num_outputs


def _restoration_stage(
    model: Any, config: PretrainConfig, data: Any, run_dir: Path
) -> dict[str, Any]:
    """Models Genesis: train an encoder-decoder to restore corrupted images."""
    from medtl.training import Trainer
    from medtl.training.checkpoint import load_checkpoint

    net = RestorationNet(model)
    cfg = config.training.model_copy(
        update={
            "max_epochs": config.restoration_epochs,
            "lr": config.lr,
            "monitor": "val_loss",
            "mode": "min",
            "run_dir": None,
        }
    )
    result = Trainer(net, nn.MSELoss(), cfg).fit(
        GenesisPairs(data.train_plain, seed=config.training.seed),
        GenesisPairs(data.val, seed=config.training.seed + 1),
        run_dir=run_dir,
    )
    if result.best_checkpoint is not None:
        net.load_state_dict(load_checkpoint(result.best_checkpoint)["model"])
    return {"restoration_val_mse": result.best_metric, "restoration_epochs": result.epochs_run}


def _supervised_stage(
    model: Any, config: PretrainConfig, data: Any, run_dir: Path
) -> dict[str, Any]:
    """Train the backbone on the source task's labels (the scratch strategy, head phase)."""
    from medtl.transfer.strategies import StrategyConfig, StrategyData, run_strategy

    strategy = StrategyConfig(
        name="scratch",
        head_epochs=config.supervised_epochs,
        finetune_epochs=0,
        head_lr=config.lr,
    )
    cfg = config.training.model_copy(update={"run_dir": None})
    result = run_strategy(
        model,
        strategy,
        cfg,
        StrategyData(train=data.train, val=data.val, train_plain=data.train_plain),
        run_dir,
    )
    return {
        "supervised_best_" + cfg.monitor: result.best_metric,
        "supervised_epochs": result.phases[0].epochs_run,
    }


def _write_package(
    model: Any, config: PretrainConfig, data: Any, metrics: dict[str, Any], out_dir: Path
) -> Path:
    """Write and register the backbone package, and the resolved config beside it."""
    from medtl.models.package import ModelCard, register_package, save_package
    from medtl.training.environment import run_environment
    from medtl.transfer.provenance import model_device

    card = ModelCard(
        name=config.name,
        version=config.version,
        source_domain=config.source_domain or None,
        source_task=config.source_task or None,
        strategy="pretrain: " + " + ".join(config.stages),
        data_hash=manifest_hash(Path(config.data.dataset)),
        config_hash=config.config_hash(),
        metrics=metrics,
        intended_use=(
            "Source backbone for transfer learning (medtl finetune: model.weights). Not a "
            "diagnostic model."
        ),
        limitations=[config.description] if config.description else [],
        training={
            "stages": list(config.stages),
            "dataset": str(config.data.dataset),
            "images": len(data.indices["train"]),
        },
        # versions, commit, device, precision, threads of the pretraining run
        environment=run_environment(model_device(model), config.training.amp),
    )
    package = save_package(model, card, out_dir / "package", overwrite=True)
    (out_dir / "pretrain.yaml").write_text(
        yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), encoding="utf-8"
    )
    ref = register_package(package, overwrite=True)
    logger.info("pretrained %s in %.0f s: %s", ref, metrics["seconds"], package)
    return package


def _lesion_stage(model: Any, config: PretrainConfig, data: Any, run_dir: Path) -> dict[str, Any]:
    """Train the synthetic focal-opacity pretext (binary head; the images' labels unused)."""
    from torch.utils.data import DataLoader

    from medtl.data.datasets import GroupedBatchSampler
    from medtl.transfer.lesion_pretext import BlobSpec, LesionPairs, pair_groups
    from medtl.transfer.strategies import StrategyConfig, StrategyData, run_strategy

    if int(model.config.num_outputs) != 1:
        model.reset_head(1)
    seed = config.training.seed
    spec = BlobSpec(radius=config.lesion_radius, contrast=config.lesion_contrast)
    train = LesionPairs(data.train_plain, seed=seed, spec=spec)
    sampler = GroupedBatchSampler(
        pair_groups(len(data.train_plain)), config.training.batch_size, seed=seed
    )
    strategy = StrategyConfig(
        name="scratch", head_epochs=config.lesion_epochs, finetune_epochs=0, head_lr=config.lr
    )
    cfg = config.training.model_copy(update={"run_dir": None, "monitor": "auroc", "mode": "max"})
    result = run_strategy(
        model,
        strategy,
        cfg,
        StrategyData(
            train=DataLoader(train, batch_sampler=sampler),
            val=LesionPairs(data.val, seed=seed + 1, spec=spec, fixed=True),
        ),
        run_dir,
    )
    return {"lesion_val_auroc": result.best_metric, "lesion_epochs": result.phases[0].epochs_run}
