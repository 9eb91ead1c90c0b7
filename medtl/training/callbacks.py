"""Training callbacks: CSV metrics, optional TensorBoard/MLflow, progress bars.

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


class TensorBoardLogger(Callback):
    """Scalars to TensorBoard under ``<run>/tensorboard`` (skipped when not installed)."""

    def __init__(self) -> None:
        self._writer: Any = None

    def on_fit_start(self, trainer: Trainer) -> None:
        """Open the writer on rank 0, or log that TensorBoard is unavailable."""
        if not trainer.dist.is_main or trainer.run_dir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logger.info("tensorboard is not installed; skipping TensorBoard logging")
            return
        self._writer = SummaryWriter(log_dir=str(trainer.run_dir / "tensorboard"))

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, float]) -> None:
        """Add every numeric value of the row at the epoch's global step."""
        if self._writer is None:
            return
        for key, value in row.items():
            if key not in ("epoch", "step") and isinstance(value, int | float):
                self._writer.add_scalar(key, value, global_step=int(row["step"]))
        self._writer.flush()

    def on_fit_end(self, trainer: Trainer, result: TrainResult) -> None:
        """Close the writer."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class MlflowLogger(Callback):
    """Metrics to the active MLflow tracking URI (skipped when mlflow is not installed)."""

    def __init__(self) -> None:
        self._mlflow: Any = None

    def on_fit_start(self, trainer: Trainer) -> None:
        """Import mlflow lazily on rank 0 and log the config as params."""
        if not trainer.dist.is_main:
            return
        try:
            import mlflow
        except ImportError:
            logger.info("mlflow is not installed; skipping MLflow logging")
            return
        self._mlflow = mlflow
        if mlflow.active_run() is None:
            mlflow.start_run()
        flat = {k: str(v) for k, v in trainer.config.resolved().items()}
        mlflow.log_params(flat)

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, float]) -> None:
        """Log numeric values at the epoch's global step."""
        if self._mlflow is None:
            return
        metrics = {
            k: float(v)
            for k, v in row.items()
            if k not in ("epoch", "step") and isinstance(v, int | float)
        }
        self._mlflow.log_metrics(metrics, step=int(row["step"]))


def default_callbacks(names: Iterable[str]) -> list[Callback]:
    """Callbacks for the config's ``loggers`` list (``csv``, ``tensorboard``, ``mlflow``)."""
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
