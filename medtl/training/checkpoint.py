"""Atomic checkpoints that load with ``torch.load(..., weights_only=True)``.

A checkpoint is one torch file holding only tensors and plain containers/numbers/strings:
model, optimiser, scheduler and GradScaler state dicts, RNG states (see
:func:`medtl.training.seed.rng_state`), the data position (epoch, global step, sampler
seed) and the run's history. It is written to a temporary file in the destination folder,
flushed and fsync'ed, then moved over the old file with ``os.replace`` (atomic on POSIX),
so a crash mid-write leaves the previous checkpoint intact.

Files in ``<run>/checkpoints/``: ``last.ckpt`` (every epoch) and ``best.ckpt`` (best
monitored value so far).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medtl.training.seed import rng_state

logger = logging.getLogger(__name__)

FORMAT = "medtl-checkpoint-v1"
LAST = "last.ckpt"
BEST = "best.ckpt"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or not a medtl checkpoint."""


def _fsync_dir(folder: Path) -> None:
    # Persist the rename itself; not every platform lets a directory be opened.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_save(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` with ``torch.save`` atomically: temp file, fsync, ``os.replace``.

    Args:
        obj: tensors and plain Python containers (what ``weights_only`` loading accepts).
        path: destination file; its folder is created.

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``: no arbitrary unpickling).

    Args:
        path: checkpoint file.
        map_location: where tensors go.

    Returns:
        The checkpoint dict.

    Raises:
        CheckpointError: missing, unreadable, or not written by :func:`save_checkpoint`.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt/unsafe files
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} file")
    return state


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Stamp ``state`` with the format tag and write it atomically.

    Args:
        state: checkpoint content (see the module docstring).
        path: destination file.

    Returns:
        The destination path.
    """
    return atomic_save({**state, "format": FORMAT}, path)


def stale_temp_files(folder: str | Path) -> list[Path]:
    """Temporary files left by writes that were killed (safe to delete)."""
    folder = Path(folder)
    return sorted(folder.glob(".*.tmp")) if folder.is_dir() else []


def training_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    *,
    progress: dict[str, Any],
    early_stopping: dict[str, Any],
    history: list[dict[str, float]],
    config: dict[str, Any],
) -> dict[str, Any]:
    """Assemble everything a bitwise resume needs, as ``weights_only``-loadable values.

    Args:
        model: the bare model (not a DDP/compile wrapper).
        optimizer: its optimiser.
        scheduler: the LR scheduler.
        scaler: the GradScaler (an empty state when disabled).
        progress: data position: ``epoch`` (completed), ``global_step``, ``sampler_seed``...
        early_stopping: :meth:`EarlyStopping.state_dict` output.
        history: the epoch rows so far.
        config: the resolved training config.

    Returns:
        The checkpoint dict (RNG states of this process included).
    """
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": rng_state(),
        "progress": dict(progress),
        "early_stopping": dict(early_stopping),
        "history": [dict(row) for row in history],
        "config": config,
    }
