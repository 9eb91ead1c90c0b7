"""Training configuration: one pydantic model, resolved and saved into every run folder.

The same :class:`TrainingConfig` runs on one CPU or on eight GPUs under ``torchrun``:
``batch_size`` is the *effective* batch per optimiser step, summed over all processes and
accumulation micro-steps, so changing the hardware does not change the optimisation.
Each process loads ``batch_size / (world_size * grad_accum_steps)`` samples per micro-step
(:meth:`TrainingConfig.micro_batch_size`).

Example::

    cfg = TrainingConfig(max_epochs=20, batch_size=32, lr=3e-4, amp="auto",
                         warmup_epochs=1, schedule="cosine", monitor="auroc", mode="max")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Device = Literal["auto", "cuda", "mps", "cpu"]
Amp = Literal["auto", "none", "bf16", "fp16"]
Schedule = Literal["constant", "cosine", "step"]
Optimizer = Literal["adamw", "adam", "sgd"]
Mode = Literal["min", "max"]
Progress = Literal["auto", "always", "never"]
LoggerName = Literal["csv", "tensorboard", "mlflow"]


class TrainingConfig(BaseModel):
    """Everything the :class:`~medtl.training.engine.Trainer` needs besides model and data.

    Attributes are grouped: schedule of the run, optimiser, hardware, data loading,
    checkpoints and logging. Defaults give a deterministic single-process CPU run.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # run length and stopping
    max_epochs: int = Field(10, ge=1, description="Upper bound on epochs.")
    monitor: str = Field(
        "val_loss",
        description="Metric for best checkpoint and early stopping: 'val_loss', 'train_loss' "
        "or a key returned by val_metric.",
    )
    mode: Mode = Field("min", description="'min' or 'max': the direction of improvement.")
    patience: int | None = Field(
        None, ge=1, description="Epochs without improvement before stopping; None disables."
    )
    min_delta: float = Field(0.0, ge=0.0, description="Smallest change that counts as better.")

    # optimiser and schedule
    optimizer: Optimizer = "adamw"
    lr: float = Field(1e-3, gt=0.0, description="Base learning rate (param groups may override).")
    weight_decay: float = Field(0.0, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, description="SGD momentum.")
    schedule: Schedule = Field("constant", description="Shape after warm-up.")
    warmup_epochs: float = Field(0.0, ge=0.0, description="Linear warm-up length in epochs.")
    warmup_steps: int | None = Field(
        None, ge=0, description="Warm-up length in optimiser steps (overrides warmup_epochs)."
    )
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0, description="Cosine floor, as lr fraction.")
    step_epochs: float = Field(10.0, gt=0.0, description="'step' schedule: decay period (epochs).")
    step_gamma: float = Field(0.1, gt=0.0, description="'step' schedule: decay factor.")
    batch_size: int = Field(
        16, ge=1, description="Effective batch per optimiser step, over all processes."
    )
    grad_accum_steps: int = Field(1, ge=1, description="Micro-steps per optimiser step.")
    grad_clip_norm: float | None = Field(None, gt=0.0, description="Max global grad L2 norm.")

    # hardware
    device: Device = "auto"
    amp: Amp = Field(
        "auto",
        description="'auto': bf16 on CUDA when supported (else fp16 + GradScaler), bf16 on CPUs "
        "with native bf16 (AVX512-BF16/AMX), otherwise fp32.",
    )
    channels_last: bool = Field(False, description="channels_last(_3d) memory format.")
    compile: bool = Field(False, description="Wrap the model in torch.compile.")
    find_unused_parameters: bool = Field(False, description="Passed to DDP.")
    dist_backend: Literal["auto", "nccl", "gloo"] = "auto"

    # data loading
    num_workers: int = Field(0, ge=0)
    prefetch_factor: int = Field(2, ge=1, description="Batches prefetched per worker.")
    pin_memory: Literal["auto", True, False] = Field("auto", description="'auto': on CUDA only.")
    persistent_workers: bool = True
    shuffle: bool = True
    drop_last: bool = False
    image_key: str = Field("image", description="Input key when samples are dicts.")
    label_key: str = Field("label", description="Target key when samples are dicts.")
    val_batch_size: int | None = Field(None, ge=1, description="Defaults to batch_size.")

    # reproducibility
    seed: int = Field(0, ge=0)
    deterministic: bool = Field(
        False, description="torch.use_deterministic_algorithms (slower on GPU)."
    )

    # run folder, checkpoints, logging
    run_dir: Path | None = Field(None, description="Run folder; default MEDTL_HOME/runs/<time>.")
    resume: bool = Field(False, description="Continue from run_dir/checkpoints/last.ckpt.")
    save_every_epoch: bool = Field(True, description="last.ckpt after every epoch (else at end).")
    save_best: bool = Field(True, description="best.ckpt whenever the monitor improves.")
    progress: Progress = Field("auto", description="'auto': bars only on a TTY, rank 0.")
    loggers: list[LoggerName] = Field(default_factory=lambda: ["csv"])
    log_every_steps: int = Field(50, ge=1, description="Step-level log lines (rank 0).")

    @model_validator(mode="after")
    def _check(self) -> TrainingConfig:
        if self.batch_size % self.grad_accum_steps:
            raise ValueError(
                f"batch_size {self.batch_size} is not divisible by grad_accum_steps "
                f"{self.grad_accum_steps}"
            )
        return self

    def micro_batch_size(self, world_size: int = 1) -> int:
        """Samples one process loads per micro-step.

        Args:
            world_size: number of processes.

        Returns:
            ``batch_size // (world_size * grad_accum_steps)``.

        Raises:
            ValueError: when the effective batch does not split evenly.
        """
        parts = world_size * self.grad_accum_steps
        if self.batch_size % parts:
            raise ValueError(
                f"batch_size {self.batch_size} must be divisible by world_size x grad_accum_steps "
                f"= {parts}"
            )
        return self.batch_size // parts

    def resolved(self) -> dict[str, Any]:
        """Return the config as plain JSON-ready values (what a run folder stores)."""
        return self.model_dump(mode="json")
