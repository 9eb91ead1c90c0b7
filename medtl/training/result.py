"""What a fit returns (:class:`TrainResult`) and the early-stopping bookkeeping it reports."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainResult:
    """What :meth:`medtl.training.engine.Trainer.fit` returns.

    Attributes:
        best_metric: best value of ``monitor`` (None when it was never finite).
        best_epoch: 1-based epoch of the best value.
        monitor: the monitored key.
        epochs_run: epochs completed in the run folder (including those before a resume).
        stopped_early: True when patience ran out.
        history: one dict per epoch (the rows of ``metrics.csv``).
        run_dir: the run folder.
        last_checkpoint: ``checkpoints/last.ckpt``.
        best_checkpoint: ``checkpoints/best.ckpt`` (None if never written).
        metrics_csv: ``metrics.csv`` (None if the csv logger is off).
    """

    best_metric: float | None
    best_epoch: int | None
    monitor: str
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)
    run_dir: Path | None = None
    last_checkpoint: Path | None = None
    best_checkpoint: Path | None = None
    metrics_csv: Path | None = None


@dataclass
class EarlyStopping:
    """Track the best monitored value and stop after ``patience`` epochs without improvement.

    Args:
        mode: ``"min"`` or ``"max"``.
        patience: epochs without improvement before stopping; None never stops.
        min_delta: an improvement must beat the best by more than this.
    """

    mode: str = "min"
    patience: int | None = None
    min_delta: float = 0.0
    best: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    stopped: bool = False

    def improves(self, value: float) -> bool:
        """Whether ``value`` beats the best so far (NaN and inf never do)."""
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, value: float, epoch: int) -> bool:
        """Record epoch ``epoch`` (1-based) with ``value``.

        Returns:
            True when the value is a new best (save ``best.ckpt``).
        """
        improved = self.improves(value)
        if improved:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        self.stopped = self.patience is not None and self.bad_epochs >= self.patience
        return improved

    def state_dict(self) -> dict[str, Any]:
        """Plain values for a checkpoint."""
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the counters (the configured mode/patience/min_delta are kept)."""
        self.best = None if state["best"] is None else float(state["best"])
        self.best_epoch = None if state["best_epoch"] is None else int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])
        self.stopped = bool(state["stopped"])
