"""The training engine: :class:`Trainer` fits any ``nn.Module`` under a :class:`TrainingConfig`.

One code path serves one CPU, one GPU and ``torchrun`` jobs: the device, autocast dtype,
process group, samplers and rank-0-only side effects all follow from the config and the
environment. Each epoch (run by :mod:`medtl.training.loop`) ends with validation (outputs
gathered from every rank in dataset order), a monitored value for early stopping and
``best.ckpt``, an atomic ``last.ckpt`` and a row in ``metrics.csv``.

Example::

    trainer = Trainer(model, nn.CrossEntropyLoss(), TrainingConfig(max_epochs=5, monitor="auroc",
                      mode="max"), val_metric=lambda logits, y: {"auroc": auroc(logits, y)})
    result = trainer.fit(train_ds, val_ds, run_dir=Path("runs/head"))
    # a second phase: unfreeze and continue with discriminative learning rates
    result2 = trainer.fit(train_ds, val_ds, run_dir=Path("runs/full"),
                          param_groups=[{"params": backbone_params, "lr": 1e-5},
                                        {"params": head_params, "lr": 1e-3}])
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from medtl.training import checkpoint as ckpt
from medtl.training.batch_sync import BatchContext, GlobalBatchLayers
from medtl.training.callbacks import Callback, default_callbacks
from medtl.training.config import TrainingConfig
from medtl.training.data import as_tensor, make_dataloader
from medtl.training.distributed import (
    DistInfo,
    barrier,
    broadcast_object,
    gather_interleaved,
    init_distributed,
)
from medtl.training.loop import FitLoop
from medtl.training.precision import (
    autocast,
    eval_mode,
    make_grad_scaler,
    resolve_amp,
    select_device,
    to_memory_format,
)
from medtl.training.result import TrainResult
from medtl.training.sampling import GlobalBatchSampler
from medtl.training.schedule import make_optimizer, make_scheduler
from medtl.training.seed import seed_everything

logger = logging.getLogger(__name__)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MetricFn = Callable[[torch.Tensor, torch.Tensor], "float | Mapping[str, float]"]
DataArg = Dataset | DataLoader


class Trainer:
    """Fit a model with device/AMP/DDP handling, checkpoints, early stopping and logging.

    Args:
        model: the network; it stays the caller's object (DDP/compile wrap a view of it).
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` (mean over the batch).
        config: a :class:`TrainingConfig` (defaults when None).
        param_groups: optimiser groups (``[{"params": [...], "lr": 1e-4}, ...]``); parameters
            left out are not trained. Default: every parameter with ``requires_grad``.
        val_metric: ``val_metric(logits, targets)`` on the gathered validation outputs,
            returning a float (logged as ``metric_name``) or a dict of named floats.
        metric_name: the key of a float ``val_metric``.
        frozen_bn_modules: modules put back in eval mode after every ``model.train()`` (frozen
            BatchNorm keeps its running statistics).
        on_train_mode: called with the model after every ``model.train()``.
        callbacks: extra :class:`Callback` objects (the config's ``loggers`` are added).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        config: TrainingConfig | None = None,
        *,
        param_groups: Sequence[dict[str, Any]] | None = None,
        val_metric: MetricFn | None = None,
        metric_name: str = "val_metric",
        frozen_bn_modules: Iterable[nn.Module] = (),
        on_train_mode: Callable[[nn.Module], None] | None = None,
        callbacks: Iterable[Callback] = (),
    ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.config = config if config is not None else TrainingConfig()
        self.param_groups = list(param_groups) if param_groups is not None else None
        self.val_metric = val_metric
        self.metric_name = metric_name
        self.frozen_bn_modules = list(frozen_bn_modules)
        self.on_train_mode = on_train_mode
        self.user_callbacks = list(callbacks)
        self.dist = DistInfo()
        self.device = torch.device("cpu")
        self.amp_dtype: torch.dtype | None = None
        self.run_dir: Path | None = None
        self.history: list[dict[str, float]] = []
        self.global_step = 0
        self._net: nn.Module = model
        self._ready = False
        #: the micro-batch being trained, read by the global-batch layers during a fit
        self.batch_context = BatchContext(seed=self.config.seed)
        self._layers: GlobalBatchLayers | None = None

    # ----------------------------------------------------------------- setup
    def setup(self) -> None:
        """Choose the device, join the process group, move the model (idempotent)."""
        cfg = self.config
        local = os.environ.get("LOCAL_RANK")
        self.device = select_device(cfg.device, local_rank=int(local) if local else None)
        self.dist = init_distributed(cfg.dist_backend, self.device.type)
        self.amp_dtype = resolve_amp(cfg.amp, self.device)
        self.model.to(self.device)
        if cfg.channels_last:
            self._model_channels_last()
        self._ready = True

    def _model_channels_last(self) -> None:
        if any(isinstance(m, nn.Conv3d) for m in self.model.modules()):
            self.model.to(memory_format=torch.channels_last_3d)
        elif any(isinstance(m, nn.Conv2d) for m in self.model.modules()):
            self.model.to(memory_format=torch.channels_last)

    def _wrap(self) -> nn.Module:
        net: nn.Module = self.model
        if self.dist.backend is not None:  # a torchrun job, even with one process
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            net = DDP(
                net, device_ids=ids, find_unused_parameters=self.config.find_unused_parameters
            )
        if self.config.compile:
            net = torch.compile(net)
        return net

    def _loader(self, data: DataArg | None, train: bool) -> DataLoader | None:
        if data is None:
            return None
        if isinstance(data, DataLoader):
            split = isinstance(data.sampler, DistributedSampler) or isinstance(
                data.batch_sampler, GlobalBatchSampler
            )
            if self.dist.is_distributed and not split:
                logger.warning(
                    "a DataLoader without DistributedSampler under DDP: every rank sees all data"
                )
            return data
        return make_dataloader(
            data,
            self.config,
            train=train,
            distributed=self.dist.is_distributed,
            device_type=self.device.type,
        )

    def _resolve_run_dir(self, run_dir: str | Path | None) -> Path:
        chosen = run_dir if run_dir is not None else self.config.run_dir
        if chosen is None:
            from medtl.paths import home_subdir

            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            chosen = broadcast_object(str(home_subdir("runs") / stamp))
        path = Path(chosen)
        if self.dist.is_main:
            (path / "checkpoints").mkdir(parents=True, exist_ok=True)
        barrier()
        return path

    @property
    def net(self) -> nn.Module:
        """The network being trained: the model, or its DDP/compile wrapper during a fit."""
        return self._net

    def train_mode(self) -> None:
        """``model.train()``, then frozen BatchNorm back to eval and the ``on_train_mode`` hook."""
        self.model.train()
        for module in self.frozen_bn_modules:
            (self._layers.live(module) if self._layers is not None else module).eval()
        if self.on_train_mode is not None:
            self.on_train_mode(self.model)

    # ----------------------------------------------------------------- batches
    def split_batch(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(images, labels or None)`` of a batch, on the device (channels-last if set)."""
        if isinstance(batch, Mapping):
            x = batch[self.config.image_key]
            y = batch.get(self.config.label_key)
        elif isinstance(batch, list | tuple):
            x, y = batch[0], (batch[1] if len(batch) > 1 else None)
        else:
            x, y = batch, None
        x = as_tensor(x).to(self.device, non_blocking=True)
        if self.config.channels_last:
            x = to_memory_format(x)
        if y is not None:
            y = as_tensor(y).to(self.device, non_blocking=True)
        return x, y

    # ----------------------------------------------------------------- fit
    def fit(
        self,
        train_data: DataArg,
        val_data: DataArg | None = None,
        *,
        run_dir: str | Path | None = None,
        param_groups: Sequence[dict[str, Any]] | None = None,
    ) -> TrainResult:
        """Train for up to ``max_epochs`` (resuming from ``last.ckpt`` when configured).

        Args:
            train_data: a dataset (a seeded loader is built) or a ready ``DataLoader``.
            val_data: validation dataset or loader; without it ``monitor`` must be
                ``train_loss``.
            run_dir: run folder (overrides ``config.run_dir``); use one per phase.
            param_groups: optimiser groups for this call (overrides the constructor's).

        Returns:
            A :class:`TrainResult`.
        """
        cfg = self.config
        self.setup()
        seed_everything(cfg.seed, cfg.deterministic)
        self.run_dir = self._resolve_run_dir(run_dir)
        train_loader = self._loader(train_data, train=True)
        val_loader = self._loader(val_data, train=False)
        assert train_loader is not None
        groups = param_groups if param_groups is not None else self.param_groups
        optimizer = make_optimizer(self.model, cfg, groups)
        steps_per_epoch = math.ceil(len(train_loader) / cfg.grad_accum_steps)
        scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
        scaler = make_grad_scaler(self.device, self.amp_dtype)
        self._layers = self._global_batch_layers(train_loader)
        try:
            self._net = self._wrap()
            loop = FitLoop(
                trainer=self,
                train_loader=train_loader,
                val_loader=val_loader,
                optimizer=optimizer,
                scheduler=scheduler,
                scaler=scaler,
                callbacks=default_callbacks(cfg.loggers) + self.user_callbacks,
                run_dir=self.run_dir,
            )
            return loop.run()
        finally:
            # Drop the DDP/compile wrapper: a DDP reducer that outlives destroy_process_group
            # aborts the process at interpreter exit (gloo, seen under load).
            self._net = self.model
            self.batch_context.micro = None
            if self._layers is not None:
                self._layers.restore()
                self._layers = None

    def _global_batch_layers(self, loader: DataLoader) -> GlobalBatchLayers | None:
        """Swap in BatchNorm over the whole batch (DDP) and per-sample dropout masks.

        Only for loaders with a :class:`GlobalBatchSampler`: its micro-batches say which
        rows of the global batch each process holds. Then N processes and one process train
        the same model (``medtl.training.batch_sync``).
        """
        if not isinstance(loader.batch_sampler, GlobalBatchSampler):
            return None
        self.batch_context = BatchContext(seed=self.config.seed)
        return GlobalBatchLayers(
            self.model,
            self.batch_context,
            sync_batchnorm=self.dist.is_distributed,
            step_dropout=True,
        )

    def load_weights(self, path: str | Path) -> dict[str, Any]:
        """Load the model weights of a checkpoint (e.g. ``result.best_checkpoint``).

        Args:
            path: a ``last.ckpt``/``best.ckpt`` written by :meth:`fit`.

        Returns:
            The checkpoint's ``progress`` dict (epoch, global step...).
        """
        state = ckpt.load_checkpoint(path, map_location="cpu")
        self.model.load_state_dict(state["model"])
        return dict(state["progress"])

    # ----------------------------------------------------------------- evaluation
    def validate(self, loader: DataLoader) -> dict[str, float]:
        """Validation values of one epoch: ``val_loss`` and the ``val_metric`` values."""
        logits, targets = self.predict(loader)
        out: dict[str, float] = {}
        if targets.numel():
            with torch.no_grad():
                out["val_loss"] = float(
                    self.loss_fn(logits.to(self.device), targets.to(self.device))
                )
        if self.val_metric is not None:
            metric = self.val_metric(logits, targets)
            if isinstance(metric, Mapping):
                out.update({str(k): float(v) for k, v in metric.items()})
            else:
                out[self.metric_name] = float(metric)
        return out

    def predict(self, data: DataArg) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the model in eval mode over ``data`` and gather outputs from every rank.

        Args:
            data: a dataset (an ordered loader is built) or a ``DataLoader``. Under DDP an
                unshuffled ``DistributedSampler`` is expected; rows come back in dataset order
                with sampler padding removed.

        Returns:
            ``(logits, targets)`` as float32/original-dtype CPU tensors on every rank;
            ``targets`` is empty when the samples carry no labels.
        """
        if not self._ready:
            self.setup()
        loader = self._loader(data, train=False)
        assert loader is not None
        outs: list[torch.Tensor] = []
        ys: list[torch.Tensor] = []
        # The bare module, not the DDP wrapper: evaluation needs no gradient sync.
        net = self.model
        with eval_mode(self.model), torch.inference_mode():
            for batch in loader:
                x, y = self.split_batch(batch)
                with autocast(self.device, self.amp_dtype):
                    out = net(x)
                outs.append(out.float())
                if y is not None:
                    ys.append(y)
        logits = torch.cat(outs) if outs else torch.empty(0)
        targets = torch.cat(ys) if ys else torch.empty(0)
        if self.dist.is_distributed and isinstance(loader.sampler, DistributedSampler):
            total = len(loader.dataset)  # type: ignore[arg-type]
            logits = gather_interleaved(logits, total)
            if targets.numel():
                targets = gather_interleaved(targets, total)
        return logits.cpu(), targets.cpu()
