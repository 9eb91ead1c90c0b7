"""The classic transfer-learning workflows, selectable in config.

Every strategy works through the backbone contract only (``blocks()``, ``pool_features``,
``forward_head``, ``head``, ``reset_head``) and trains with the
:class:`~medtl.training.Trainer`:

* ``feature_extraction``: run the data through the frozen base **once**, cache pooled features
  on disk, train a small head on them (no augmentation). The cheap path.
* ``frozen_base``: base frozen (weights and BatchNorm statistics), a new head trained end to
  end on augmented images.
* ``staged``: train the head to convergence with the base frozen, then unfreeze the last
  ``unfreeze_blocks`` blocks (or all) and continue at a learning rate ``finetune_lr_factor``
  times lower, with BatchNorm kept in inference mode so pretrained statistics survive.
* ``full``: everything trains from the start with discriminative learning rates per block.
* ``scratch``: the same architecture and epoch budget from random weights: the baseline
  every transfer is compared against.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from medtl.transfer.freezing import batchnorm_layers, count_parameters, set_trainable
from medtl.transfer.param_groups import discriminative_groups, head_and_base_groups
from medtl.transfer.tasks import loss_for, metric_for

logger = logging.getLogger(__name__)


class StrategyName(StrEnum):
    """Names accepted by :class:`StrategyConfig`."""

    FEATURE_EXTRACTION = "feature_extraction"
    FROZEN_BASE = "frozen_base"
    STAGED = "staged"
    FULL = "full"
    SCRATCH = "scratch"


class StrategyConfig(BaseModel):
    """How to transfer. Epoch counts are the *budget*; scratch gets the same total."""

    model_config = ConfigDict(extra="forbid")

    name: StrategyName = StrategyName.STAGED
    head_epochs: int = Field(3, ge=1, description="Epochs with the base frozen (head only).")
    finetune_epochs: int = Field(
        5, ge=0, description="Epochs after unfreezing (staged) / extra epochs (full, scratch)."
    )
    head_lr: float = Field(1e-3, gt=0, description="Learning rate of the new head.")
    finetune_lr_factor: float = Field(
        0.03, gt=0, le=1, description="Base LR = head_lr x this after unfreezing (10-100x lower)."
    )
    unfreeze_blocks: int | Literal["all"] = Field(
        2, description="Staged: how many of the last blocks to unfreeze."
    )
    freeze_bn: bool = Field(
        True, description="Keep BatchNorm in inference mode in transferred blocks."
    )
    discriminative_decay: float = Field(
        0.5, gt=0, le=1, description="Full fine-tuning: LR factor per block towards the stem."
    )
    feature_head: Literal["linear", "mlp", "logistic"] = Field(
        "linear", description="Feature extraction: head trained on cached features."
    )
    feature_head_epochs: int = Field(30, ge=1, description="Feature extraction head epochs.")
    feature_cache: bool = Field(True, description="Cache extracted features on disk.")

    @property
    def total_epochs(self) -> int:
        """The epoch budget of the strategy (what scratch gets)."""
        return self.head_epochs + self.finetune_epochs


@dataclass
class StrategyData:
    """Datasets a strategy needs. Samples are ``(image, label)`` or dicts.

    Attributes:
        train: training samples **with** augmentation.
        val: validation samples (deterministic).
        train_plain: training samples without augmentation (feature extraction).
    """

    train: Dataset
    val: Dataset
    train_plain: Dataset | None = None


@dataclass
class StrategyResult:
    """What a strategy returns: the trained model (best weights) and its phases."""

    name: str
    model: nn.Module
    phases: list = field(default_factory=list)  # list[TrainResult]
    seconds: float = 0.0
    trainable_parameters: int = 0
    total_parameters: int = 0
    best_metric: float | None = None


def _load_best(model: nn.Module, result) -> None:  # result: TrainResult
    from medtl.training.checkpoint import load_checkpoint

    if result.best_checkpoint is not None:
        state = load_checkpoint(result.best_checkpoint)
        model.load_state_dict(state["model"])


def _trainer(model, training, *, param_groups=None, bn_modules=(), num_outputs: int):
    from medtl.training import Trainer

    return Trainer(
        model,
        loss_for(num_outputs),
        training,
        param_groups=param_groups,
        val_metric=metric_for(num_outputs),
        frozen_bn_modules=bn_modules,
    )


def _phase_config(training, epochs: int, lr: float, **updates):
    return training.model_copy(update={"max_epochs": epochs, "lr": lr, **updates})


def run_strategy(
    model: nn.Module,
    strategy: StrategyConfig,
    training,  # TrainingConfig
    data: StrategyData,
    run_dir: str | Path,
) -> StrategyResult:
    """Train ``model`` (a backbone with a fresh head) with one strategy.

    Args:
        model: a :class:`~medtl.models.Backbone`; for every strategy except ``scratch`` it
            holds pretrained weights; for ``scratch`` it should be randomly initialised.
        strategy: the strategy config.
        training: a :class:`~medtl.training.TrainingConfig` (``max_epochs`` and ``lr`` are
            set per phase from ``strategy``; ``monitor``/``mode`` decide the best epoch).
        data: the datasets.
        run_dir: the folder of this strategy's run; phases get sub-folders.

    Returns:
        A :class:`StrategyResult` whose model holds the best weights of the last phase.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    num_outputs = int(model.config.num_outputs)
    blocks = list(model.blocks())
    t0 = time.perf_counter()
    phases = []
    name = StrategyName(strategy.name)
    logger.info("strategy %s in %s", name.value, run_dir)

    if name is StrategyName.FEATURE_EXTRACTION:
        phases.append(_feature_extraction(model, strategy, training, data, run_dir, num_outputs))
    elif name in (StrategyName.FROZEN_BASE, StrategyName.STAGED):
        set_trainable(blocks, False)
        set_trainable(model.head, True)
        cfg = _phase_config(training, strategy.head_epochs, strategy.head_lr)
        trainer = _trainer(
            model,
            cfg,
            param_groups=[{"params": list(model.head.parameters()), "lr": strategy.head_lr}],
            bn_modules=batchnorm_layers(nn.ModuleList(blocks)),
            num_outputs=num_outputs,
        )
        result = trainer.fit(data.train, data.val, run_dir=run_dir / "head")
        _load_best(model, result)
        phases.append(result)
        if name is StrategyName.STAGED and strategy.finetune_epochs > 0:
            k = len(blocks) if strategy.unfreeze_blocks == "all" else strategy.unfreeze_blocks
            k = max(0, min(int(k), len(blocks)))
            unfrozen = blocks[len(blocks) - k :]
            set_trainable(unfrozen, True)
            base_lr = strategy.head_lr * strategy.finetune_lr_factor
            groups = head_and_base_groups(model.head, unfrozen, head_lr=base_lr, base_lr=base_lr)
            bn = (
                batchnorm_layers(nn.ModuleList(blocks))
                if strategy.freeze_bn
                else (batchnorm_layers(nn.ModuleList(blocks[: len(blocks) - k])))
            )
            cfg = _phase_config(training, strategy.finetune_epochs, base_lr)
            trainer = _trainer(
                model, cfg, param_groups=groups, bn_modules=bn, num_outputs=num_outputs
            )
            result = trainer.fit(data.train, data.val, run_dir=run_dir / "finetune")
            _load_best(model, result)
            phases.append(result)
    elif name is StrategyName.FULL:
        set_trainable(model, True)
        groups = discriminative_groups(
            model.head, blocks, lr=strategy.head_lr, decay=strategy.discriminative_decay
        )
        bn = batchnorm_layers(nn.ModuleList(blocks)) if strategy.freeze_bn else []
        cfg = _phase_config(training, strategy.total_epochs, strategy.head_lr)
        trainer = _trainer(model, cfg, param_groups=groups, bn_modules=bn, num_outputs=num_outputs)
        result = trainer.fit(data.train, data.val, run_dir=run_dir / "full")
        _load_best(model, result)
        phases.append(result)
    elif name is StrategyName.SCRATCH:
        set_trainable(model, True)
        cfg = _phase_config(training, strategy.total_epochs, strategy.head_lr)
        trainer = _trainer(model, cfg, num_outputs=num_outputs)
        result = trainer.fit(data.train, data.val, run_dir=run_dir / "scratch")
        _load_best(model, result)
        phases.append(result)
    else:  # pragma: no cover - StrategyName is exhaustive
        raise ValueError(f"unknown strategy {name}")

    trainable, total = count_parameters(model)
    set_trainable(model, True)
    return StrategyResult(
        name=name.value,
        model=model,
        phases=phases,
        seconds=time.perf_counter() - t0,
        trainable_parameters=trainable,
        total_parameters=total,
        best_metric=phases[-1].best_metric if phases else None,
    )


# --------------------------------------------------------------------- feature extraction
def _dataset_key(model: nn.Module, dataset: Dataset) -> str:
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        if key.startswith("head."):
            continue
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(str(len(dataset)).encode())  # type: ignore[arg-type]
    return digest.hexdigest()[:16]


def pooled_stage(model: nn.Module, x: torch.Tensor, layer: str | None = None) -> torch.Tensor:
    """Pooled features of ``x``: the head's pooling, or the global mean of a named stage.

    Args:
        model: a backbone; ``layer`` needs ``forward_stages`` (``i3resnet152``) unless it
            names the model's last stage.
        x: the input batch.
        layer: stage name (``layer3``, ``layer4``); ``None``: :meth:`pool_features`.

    Returns:
        ``(B, D)`` features.
    """
    if layer is None or layer == getattr(model, "last_stage", None):
        return model.pool_features(x)
    if not hasattr(model, "forward_stages"):
        raise ValueError(f"{model.config.name} has no named stages; cannot pool {layer!r}")
    fmap = model.forward_stages(x, (layer,))[layer]
    return fmap.flatten(2).mean(dim=2)


@torch.inference_mode()
def extract_features(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 32,
    device: str | None = None,
    layer: str | None = None,
    amp: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features and labels of every sample, in dataset order (frozen base, eval mode).

    Args:
        model: the backbone.
        dataset: samples ``(image, label)`` or dicts.
        batch_size: samples per forward pass.
        device: torch device (default: the best available).
        layer: a named stage to pool instead of the last (:func:`pooled_stage`).
        amp: mixed precision (``auto``: bf16 where the trainer would use it; ``none``: fp32).

    Returns:
        ``(features (N, D) float32, labels (N,))``.
    """
    from medtl.training.precision import autocast, resolve_amp, select_device

    dev = select_device(device or "auto")
    amp = resolve_amp(amp, dev)
    was_training = model.training
    model.eval().to(dev)
    feats, labels = [], []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for batch in loader:
        if isinstance(batch, dict):
            x, y = batch["image"], batch.get("label")
        else:
            x, y = batch[0], batch[1]
        with autocast(dev, amp):
            f = pooled_stage(model, torch.as_tensor(x).to(dev), layer)
        feats.append(f.float().cpu())
        labels.append(torch.as_tensor(y).reshape(-1))
    model.train(was_training)
    return torch.cat(feats), torch.cat(labels)


def cached_features(
    model: nn.Module, dataset: Dataset, cache_dir: Path, split: str, use_cache: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`extract_features` with an on-disk safetensors cache keyed by weights and data."""
    from safetensors.torch import load_file, save_file

    key = _dataset_key(model, dataset)
    path = cache_dir / f"{split}-{key}.safetensors"
    if use_cache and path.is_file():
        tensors = load_file(str(path))
        logger.info("features for %s from cache %s", split, path.name)
        return tensors["features"], tensors["labels"]
    feats, labels = extract_features(model, dataset)
    if use_cache:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({"features": feats.contiguous(), "labels": labels.contiguous()}, str(tmp))
        tmp.replace(path)
    return feats, labels


def _feature_extraction(model, strategy, training, data, run_dir, num_outputs):
    set_trainable(model, False)
    plain = data.train_plain if data.train_plain is not None else data.train
    cache = run_dir / "features"
    xtr, ytr = cached_features(model, plain, cache, "train", strategy.feature_cache)
    xva, yva = cached_features(model, data.val, cache, "val", strategy.feature_cache)
    if strategy.feature_head == "mlp":
        model.reset_head(num_outputs, hidden_dim=max(32, model.feature_dim // 4))
    set_trainable(model.head, True)
    if strategy.feature_head == "logistic":
        return _fit_logistic_head(model, xtr, ytr, num_outputs, run_dir)
    cfg = _phase_config(
        training,
        strategy.feature_head_epochs,
        strategy.head_lr,
        channels_last=False,
        amp="none",
        num_workers=0,
    )
    trainer = _trainer(
        model.head,
        cfg,
        param_groups=[{"params": list(model.head.parameters()), "lr": strategy.head_lr}],
        num_outputs=num_outputs,
    )
    result = trainer.fit(
        TensorDataset(xtr, ytr), TensorDataset(xva, yva), run_dir=run_dir / "feature_head"
    )
    _load_best(model.head, result)
    return result


def _fit_logistic_head(model, x, y, num_outputs, run_dir):
    """Logistic regression (scikit-learn, L2) whose coefficients become the linear head."""
    from sklearn.linear_model import LogisticRegression

    from medtl.training.engine import TrainResult

    clf = LogisticRegression(C=1.0, max_iter=2000)
    clf.fit(x.numpy(), y.numpy().astype(int))
    head = model.head
    if head.hidden is not None:
        raise ValueError("the logistic feature head needs a head without a hidden layer")
    with torch.no_grad():
        coef = torch.as_tensor(clf.coef_, dtype=head.fc.weight.dtype)
        bias = torch.as_tensor(clf.intercept_, dtype=head.fc.bias.dtype)
        if num_outputs == 1:
            head.fc.weight.copy_(coef.reshape(1, -1))
            head.fc.bias.copy_(bias.reshape(1))
        else:
            head.fc.weight.copy_(coef)
            head.fc.bias.copy_(bias)
    return TrainResult(
        best_metric=None,
        best_epoch=None,
        monitor="none",
        epochs_run=1,
        stopped_early=False,
        run_dir=run_dir,
    )
