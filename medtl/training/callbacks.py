"""Training callbacks: CSV metrics, progress bars; TensorBoard/MLflow in ``tracking``.

Only rank 0 creates metric writers. ``metrics.csv`` has one row per epoch with the columns
``epoch, step, train_loss, val_loss, <validation metrics...>, lr, throughput, elapsed``
(throughput in training samples per second over all processes, elapsed in seconds since the
run started). It is rewritten from the run history each epoch, so a resumed run's file holds
exactly the epochs its checkpoint knows.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medtl.training.engine import Trainer, TrainResult

logger = logging.getLogger(__name__)

METRICS_CSV = "metrics.csv"
LEADING = ("epoch", "step", "train_loss", "val_loss")
TRAILING = ("lr", "throughput", "elapsed")


class Callback:
    """Base class: override the hooks you need; all are no-ops here.

    Hooks run on every rank; use ``trainer.dist.is_main`` for rank-0-only side effects.
    """

    def on_fit_start(self, trainer: Trainer) -> None:
        """Called once before the first epoch (after a resume has been applied)."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Called before epoch ``epoch`` (0-based) starts."""

    def on_step_end(self, trainer: Trainer, step: int, loss: float) -> None:
        """Called after each optimiser step; ``step`` is the global step count."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, float]) -> None:
        """Called after validation and checkpointing of epoch ``epoch``."""

    def on_fit_end(self, trainer: Trainer, result: TrainResult) -> None:
        """Called once when fitting ends (normally or by early stopping)."""


def csv_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Column order for ``metrics.csv``: leading, validation metrics (sorted), trailing."""
    keys: set[str] = set()
    for row in rows:
        keys.update(row)
    middle = sorted(keys - set(LEADING) - set(TRAILING))
    return [*LEADING, *middle, *TRAILING]


def write_metrics_csv(path: str | Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write all rows (one per epoch) to ``path``, replacing it atomically.

    Args:
        path: destination, usually ``<run>/metrics.csv``.
        rows: epoch rows; missing values are left empty.

    Returns:
        The path.
    """
    path = Path(path)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=csv_columns(rows), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(v) for k, v in row.items()})
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(buffer.getvalue(), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    return value


class CsvLogger(Callback):
    """Rewrite ``<run>/metrics.csv`` from the trainer's history after every epoch."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, float]) -> None:
        """Write the file (rank 0 only)."""
        if trainer.dist.is_main and trainer.run_dir is not None:
            write_metrics_csv(trainer.run_dir / METRICS_CSV, trainer.history)


def default_callbacks(names: Iterable[str]) -> list[Callback]:
    """Callbacks for the config's ``loggers`` list (``csv``, ``tensorboard``, ``mlflow``).

    ``tensorboard`` and ``mlflow`` live in :mod:`medtl.training.tracking` (the ``tracking``
    extra; a missing package is a WARNING naming it).
    """
    from medtl.training.tracking import MlflowLogger, TensorBoardLogger

    table: dict[str, type[Callback]] = {
        "csv": CsvLogger,
        "tensorboard": TensorBoardLogger,
        "mlflow": MlflowLogger,
    }
    return [table[name]() for name in names]


def progress_enabled(setting: str, is_main: bool) -> bool:
    """Whether to draw progress bars: never off rank 0; ``auto`` only on a TTY."""
    if not is_main or setting == "never":
        return False
    if setting == "always":
        return True
    return sys.stderr.isatty()


def progress_bar(iterable: Iterable[Any], total: int | None, desc: str, enabled: bool) -> Any:
    """Wrap ``iterable`` in a tqdm bar when ``enabled`` (else return it unchanged)."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)
