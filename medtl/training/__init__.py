"""medtl.training: the training engine (device, AMP, DDP, checkpoints, early stopping, logging).

Public names are re-exported lazily so ``import medtl.training`` stays cheap.
"""

from __future__ import annotations

from medtl._lazy import lazy_exports

_EXPORTS = {
    "TrainingConfig": "medtl.training.config",
    "Trainer": "medtl.training.engine",
    "TrainResult": "medtl.training.result",
    "EarlyStopping": "medtl.training.result",
    "Callback": "medtl.training.callbacks",
    "cached_dataset": "medtl.training.data",
    "make_dataloader": "medtl.training.data",
    "set_loader_epoch": "medtl.training.data",
    "seed_everything": "medtl.training.seed",
    "worker_init_fn": "medtl.training.seed",
    "make_generator": "medtl.training.seed",
    "select_device": "medtl.training.precision",
    "resolve_amp": "medtl.training.precision",
    "cpu_supports_bf16": "medtl.training.precision",
    "cpu_bf16_is_fast": "medtl.training.precision",
    "init_distributed": "medtl.training.distributed",
    "cleanup_distributed": "medtl.training.distributed",
    "load_checkpoint": "medtl.training.checkpoint",
    "save_checkpoint": "medtl.training.checkpoint",
    "lr_factor": "medtl.training.schedule",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
