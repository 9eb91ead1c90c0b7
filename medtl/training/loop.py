"""One call of :meth:`~medtl.training.engine.Trainer.fit`: the epoch loop.

:class:`FitLoop` owns what lives for one fit (loaders, optimiser, scheduler, GradScaler,
callbacks, early stopping) and runs the epochs: resume from ``last.ckpt``, train with
gradient accumulation, validate, write ``last.ckpt``/``best.ckpt`` atomically on rank 0,
log, and stop early. The :class:`~medtl.training.engine.Trainer` keeps the device, the
wrapped network and the run's history, which callbacks read.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml
from torch.utils.data import DataLoader

from medtl.training import checkpoint as ckpt
from medtl.training.callbacks import (
    METRICS_CSV,
    Callback,
    progress_bar,
    progress_enabled,
    write_metrics_csv,
)
from medtl.training.data import set_loader_epoch
from medtl.training.distributed import all_reduce_sum, barrier, broadcast_object
from medtl.training.precision import autocast
from medtl.training.result import EarlyStopping, TrainResult
from medtl.training.sampling import micro_batch_plan
from medtl.training.seed import set_rng_state

if TYPE_CHECKING:  # pragma: no cover
    from medtl.training.engine import Trainer

logger = logging.getLogger(__name__)


@dataclass
class FitLoop:
    """The state of one fit and its epoch loop (built by ``Trainer.fit``)."""

    trainer: Trainer
    train_loader: DataLoader
    val_loader: DataLoader | None
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    callbacks: Sequence[Callback]
    run_dir: Path

    def __post_init__(self) -> None:
        cfg = self.trainer.config
        self.stopper = EarlyStopping(cfg.mode, cfg.patience, cfg.min_delta)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.last_path = self.ckpt_dir / ckpt.LAST
        self.step_hooks = [
            cb for cb in self.callbacks if type(cb).on_step_end is not Callback.on_step_end
        ]

    def run(self) -> TrainResult:
        """Train for up to ``max_epochs`` epochs (or until early stopping); return the result."""
        trainer, cfg = self.trainer, self.trainer.config
        trainer.history, trainer.global_step = [], 0
        epoch = self._resume()
        self._write_run_files()
        for cb in self.callbacks:
            cb.on_fit_start(trainer)
        elapsed0 = float(trainer.history[-1]["elapsed"]) if trainer.history else 0.0
        t_run = time.perf_counter()
        show = progress_enabled(cfg.progress, trainer.dist.is_main)
        while epoch < cfg.max_epochs and not self.stopper.stopped:
            for cb in self.callbacks:
                cb.on_epoch_start(trainer, epoch)
            row = self._epoch(epoch, show)
            row["elapsed"] = elapsed0 + time.perf_counter() - t_run
            improved = self._monitor(row, epoch)
            trainer.history.append(row)
            epoch += 1
            self._save(epoch, improved)
            barrier()
            for cb in self.callbacks:
                cb.on_epoch_end(trainer, epoch - 1, row)
            self._log(epoch, row)
        result = self._result()
        for cb in self.callbacks:
            cb.on_fit_end(trainer, result)
        return result

    # ----------------------------------------------------------------- resume and files
    def _resume(self) -> int:
        """Restore ``last.ckpt`` when the config asks to resume; return the first epoch."""
        trainer, cfg = self.trainer, self.trainer.config
        if not cfg.resume:
            return 0
        if not self.last_path.is_file():
            logger.info("resume requested but %s does not exist; starting fresh", self.last_path)
            return 0
        state = ckpt.load_checkpoint(self.last_path, map_location="cpu")
        trainer.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        progress = state["progress"]
        trainer.global_step = int(progress["global_step"])
        self.stopper.load_state_dict(state["early_stopping"])
        trainer.history = [dict(row) for row in state["history"]]
        start = int(progress["epoch"])
        if trainer.dist.is_main:
            logger.info("resumed from %s at epoch %d", self.last_path, start)
        return start

    def _write_run_files(self) -> None:
        trainer, cfg = self.trainer, self.trainer.config
        if not trainer.dist.is_main:
            return
        for stale in ckpt.stale_temp_files(self.ckpt_dir):  # left by a write that was killed
            stale.unlink(missing_ok=True)
        (self.run_dir / "config.yaml").write_text(
            yaml.safe_dump(cfg.resolved(), sort_keys=True), encoding="utf-8"
        )
        if "csv" in cfg.loggers and trainer.history:
            write_metrics_csv(self.run_dir / METRICS_CSV, trainer.history)

    # ----------------------------------------------------------------- one epoch
    def _epoch(self, epoch: int, show: bool) -> dict[str, float]:
        """Train and validate one epoch; return its row (without ``elapsed``)."""
        trainer = self.trainer
        set_loader_epoch(self.train_loader, epoch)
        t0 = time.perf_counter()
        train_loss, seen, lr = self._train_epoch(epoch, show)
        seconds = time.perf_counter() - t0
        row: dict[str, float] = {
            "epoch": epoch + 1,
            "step": trainer.global_step,
            "train_loss": train_loss,
        }
        if self.val_loader is not None:
            row.update(trainer.validate(self.val_loader))
        row.update(lr=lr, throughput=seen / seconds if seconds > 0 else float("nan"))
        return row

    def _train_epoch(self, epoch: int, show: bool) -> tuple[float, int, float]:
        """One pass over the training data; returns (mean loss, samples seen, last lr)."""
        trainer, cfg = self.trainer, self.trainer.config
        optimizer, loader = self.optimizer, self.train_loader
        trainer.train_mode()
        optimizer.zero_grad(set_to_none=True)
        plan = micro_batch_plan(loader)
        loss_sum = torch.zeros((), dtype=torch.float64, device=trainer.device)
        count = 0
        lr = float(optimizer.param_groups[0]["lr"])
        net = trainer.net
        context = trainer.batch_context
        context.epoch = epoch
        bar = progress_bar(loader, len(loader), f"epoch {epoch + 1}", show)
        try:
            for i, batch in enumerate(bar):
                x, y = trainer.split_batch(batch)
                if plan is not None:
                    micro = context.micro = plan[i]
                    weight, last_in_group = micro.weight, micro.last_in_step
                    real = 0 if micro.filler else x.shape[0]
                else:
                    weight, last_in_group = self._accumulation(i, len(loader))
                    real = x.shape[0]
                sync = contextlib.nullcontext()
                if not last_in_group and hasattr(net, "no_sync"):
                    sync = net.no_sync()
                with sync:
                    with autocast(trainer.device, trainer.amp_dtype):
                        loss = trainer.loss_fn(net(x), y)
                    self.scaler.scale(loss * weight).backward()
                loss_sum += loss.detach().double() * real
                count += real
                if last_in_group:
                    lr = self._step(loss)
                    if show and trainer.global_step % cfg.log_every_steps == 0:
                        bar.set_postfix(loss=f"{float(loss.detach()):.4g}", lr=f"{lr:.3g}")
        finally:
            context.micro = None
        totals = all_reduce_sum(torch.stack([loss_sum, loss_sum.new_tensor(float(count))]))
        seen = int(totals[1].item())
        return float(totals[0].item() / max(1, seen)), seen, lr

    def _accumulation(self, i: int, n_micro: int) -> tuple[float, bool]:
        """Loss weight and step flag of micro-batch ``i`` of a loader without a plan:
        groups of ``grad_accum_steps`` consecutive micro-batches, each weighted 1/group."""
        accum = self.trainer.config.grad_accum_steps
        group_start = i - i % accum
        group_size = min(accum, n_micro - group_start)
        return 1.0 / group_size, i + 1 == group_start + group_size

    def _step(self, loss: torch.Tensor) -> float:
        """One optimiser step (clipping, scaler, scheduler, step hooks); returns its lr."""
        trainer, cfg, optimizer = self.trainer, self.trainer.config, self.optimizer
        if cfg.grad_clip_norm is not None:
            self.scaler.unscale_(optimizer)
            params = [p for g in optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip_norm)
        lr = float(optimizer.param_groups[0]["lr"])
        self.scaler.step(optimizer)
        self.scaler.update()
        optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        trainer.global_step += 1
        if self.step_hooks:  # float() syncs a GPU: only when someone listens
            step_loss = float(loss.detach())
            for cb in self.step_hooks:
                cb.on_step_end(trainer, trainer.global_step, step_loss)
        return lr

    # ----------------------------------------------------------------- end of an epoch
    def _monitor(self, row: dict[str, float], epoch: int) -> bool:
        """Update early stopping with the monitored value; True when it improved."""
        cfg = self.trainer.config
        if cfg.monitor not in row:
            raise KeyError(f"monitor {cfg.monitor!r} is not among the epoch values {sorted(row)}")
        improved = self.stopper.update(float(row[cfg.monitor]), epoch + 1)
        # every rank computed the same value; rank 0's decision is authoritative anyway
        self.stopper.stopped = bool(broadcast_object(self.stopper.stopped))
        return improved

    def _save(self, epoch: int, improved: bool) -> None:
        """Rank 0 writes ``last.ckpt`` (as configured) and ``best.ckpt`` on improvement."""
        trainer, cfg = self.trainer, self.trainer.config
        if not trainer.dist.is_main:
            return
        state = ckpt.training_state(
            trainer.model, self.optimizer, self.scheduler, self.scaler,
            progress={
                "epoch": epoch,
                "global_step": trainer.global_step,
                "sampler_seed": cfg.seed,
                "world_size": trainer.dist.world_size,
            },
            early_stopping=self.stopper.state_dict(),
            history=trainer.history,
            config=cfg.resolved(),
        )  # fmt: skip
        if cfg.save_every_epoch or epoch == cfg.max_epochs or self.stopper.stopped:
            ckpt.save_checkpoint(state, self.last_path)
        if improved and cfg.save_best:
            ckpt.save_checkpoint(state, self.ckpt_dir / ckpt.BEST)

    def _log(self, epoch: int, row: dict[str, float]) -> None:
        trainer, cfg = self.trainer, self.trainer.config
        if not trainer.dist.is_main:  # rank 0 speaks for the job
            return
        values = " ".join(f"{k}={v:.4g}" for k, v in row.items() if k not in ("epoch", "step"))
        logger.info("epoch %d/%d %s", epoch, cfg.max_epochs, values)
        if self.stopper.stopped:
            logger.info(
                "early stopping: %s did not improve for %d epochs",
                cfg.monitor,
                self.stopper.bad_epochs,
            )

    def _result(self) -> TrainResult:
        trainer, cfg = self.trainer, self.trainer.config
        best_path = self.ckpt_dir / ckpt.BEST
        return TrainResult(
            best_metric=self.stopper.best,
            best_epoch=self.stopper.best_epoch,
            monitor=cfg.monitor,
            epochs_run=len(trainer.history),
            stopped_early=self.stopper.stopped,
            history=list(trainer.history),
            run_dir=self.run_dir,
            last_checkpoint=self.last_path,
            best_checkpoint=best_path if best_path.is_file() else None,
            metrics_csv=self.run_dir / METRICS_CSV if "csv" in cfg.loggers else None,
        )
