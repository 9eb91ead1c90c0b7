"""Experiment tracking: TensorBoard event files and MLflow runs (the ``tracking`` extra).

``training.loggers: [csv, tensorboard, mlflow]`` adds these callbacks. Both write on rank 0
only, once per epoch, every numeric value of the epoch row (``train_loss``, ``val_loss``,
validation metrics, ``lr``, ``throughput``, ``elapsed``) at the global optimiser step:

* **TensorBoard**: event files in ``<run>/tensorboard`` (``tensorboard --logdir <run>``).
* **MLflow**: one MLflow run per fit, holding the training config as params and the epoch
  rows as metrics (the epoch number as metric ``epoch``). The store is ``MLFLOW_TRACKING_URI``
  when set, else ``sqlite:///<MEDTL_HOME>/mlflow/mlflow.db`` with artifacts beside it
  (MLflow's default is the working directory; medtl writes only to MEDTL_HOME and named
  paths). The experiment is ``MLFLOW_EXPERIMENT_NAME``, else ``medtl``; the run is named
  after the last three parts of the run folder (``my_nodule/staged/head``). Inside a
  caller's active MLflow run, each fit is a child run of it. ``<run>/mlflow.json`` records
  the store and run id, and a resumed fit (``resume: true``) continues the same MLflow run.

The packages are optional: ``pip install 'medtl[tracking]'`` (``tensorboard`` and
``mlflow``, whose ``mlflow ui`` reads the store). A requested logger whose package
is missing is a WARNING naming that extra; the run goes on with its other loggers.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from medtl.paths import home_subdir
from medtl.training.callbacks import Callback

if TYPE_CHECKING:
    from medtl.training.engine import Trainer, TrainResult

logger = logging.getLogger(__name__)

EXTRA_HINT = "pip install 'medtl[tracking]'"
MLFLOW_RECORD = "mlflow.json"
TENSORBOARD_DIR = "tensorboard"
DEFAULT_EXPERIMENT = "medtl"


class TrackingError(RuntimeError):
    """A requested tracking store cannot be used (the message says which and why)."""


def missing_package(logger_name: str, package: str, err: ImportError) -> None:
    """Log, as a WARNING, that a requested logger cannot run and which extra provides it.

    Args:
        logger_name: the name in ``training.loggers`` (``tensorboard``, ``mlflow``).
        package: the Python package that is missing.
        err: the import error (its message names the missing module).
    """
    logger.warning(
        "training.loggers asks for %r but %s is not installed (%s): this run is not tracked "
        "there. Install the tracking extra: %s",
        logger_name,
        package,
        err,
        EXTRA_HINT,
    )


def numeric_values(row: dict[str, Any]) -> dict[str, float]:
    """The row's numeric values except ``epoch`` and ``step`` (those index the values)."""
    return {
        k: float(v)
        for k, v in row.items()
        if k not in ("epoch", "step") and isinstance(v, int | float) and not isinstance(v, bool)
    }


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` when set, else a SQLite store in ``MEDTL_HOME/mlflow``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or _home_store_uri()


def _home_store_uri() -> str:
    return f"sqlite:///{home_subdir('mlflow') / 'mlflow.db'}"


class TensorBoardLogger(Callback):
    """Scalars to TensorBoard under ``<run>/tensorboard`` (a WARNING when not installed)."""

    def __init__(self) -> None:
        self._writer: Any = None

    def on_fit_start(self, trainer: Trainer) -> None:
        """Open the writer on rank 0, or warn that TensorBoard is not installed."""
        if not trainer.dist.is_main or trainer.run_dir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            missing_package("tensorboard", "tensorboard", err)
            return
        self._writer = SummaryWriter(log_dir=str(trainer.run_dir / TENSORBOARD_DIR))

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, float]) -> None:
        """Add every numeric value of the row at the epoch's global step."""
        if self._writer is None:
            return
        for key, value in numeric_values(row).items():
            self._writer.add_scalar(key, value, global_step=int(row["step"]))
        self._writer.flush()

    def on_fit_end(self, trainer: Trainer, result: TrainResult) -> None:
        """Close the writer."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class MlflowLogger(Callback):
    """One MLflow run per fit: config as params, epoch rows as metrics (see module doc)."""

    def __init__(self) -> None:
        self._client: Any = None
        self._run_id: str | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        """On rank 0: open (or, on resume, reopen) the MLflow run and log the config.

        Raises:
            TrackingError: the MLflow store cannot be opened or written.
        """
        if not trainer.dist.is_main:
            return
        try:
            import mlflow
            from mlflow.tracking import MlflowClient
        except ImportError as err:
            missing_package("mlflow", "mlflow", err)
            return
        parent = mlflow.active_run()
        uri = mlflow.get_tracking_uri() if parent is not None else default_tracking_uri()
        try:
            client = MlflowClient(tracking_uri=uri)
            run_id = self._previous_run(trainer, uri, client)
            if run_id is None:
                run_id = self._new_run(trainer, client, parent, uri)
                params = {k: str(v) for k, v in trainer.config.resolved().items()}
                client.log_batch(run_id, params=_params(params))
            else:
                client.update_run(run_id, status="RUNNING")
        except Exception as err:  # MLflow's own types, SQLAlchemy's, OSError...
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise TrackingError(
                f"MLflow tracking store {_redacted(uri)} cannot be used: {first} (set "
                "MLFLOW_TRACKING_URI to a store you can write, e.g. sqlite:///PATH/mlflow.db)"
            ) from err
        self._client, self._run_id = client, run_id
        atexit.register(self._end, "FAILED")  # a fit that raises ends its run as failed
        if trainer.run_dir is not None:
            record = {"tracking_uri": uri, "run_id": run_id}
            (trainer.run_dir / MLFLOW_RECORD).write_text(json.dumps(record), encoding="utf-8")
        logger.info("tracking in MLflow: run %s in %s", run_id, _redacted(uri))

    def _new_run(self, trainer: Trainer, client: Any, parent: Any, uri: str) -> str:
        """Create the run in the experiment (a child of ``parent`` when there is one)."""
        if parent is not None:
            experiment_id = parent.info.experiment_id
        else:
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
            found = client.get_experiment_by_name(name)
            # in medtl's own store, artifacts too stay in MEDTL_HOME (MLflow: ./mlruns)
            where = None
            if uri == _home_store_uri():
                where = (home_subdir("mlflow") / "artifacts").as_uri()
            experiment_id = found.experiment_id if found else client.create_experiment(name, where)
        tags = {"medtl.run_dir": str(trainer.run_dir or "")}
        if parent is not None:
            tags["mlflow.parentRunId"] = parent.info.run_id
        # a phase folder (``<run>/staged/head``) alone would name many runs alike
        name = "/".join(trainer.run_dir.parts[-3:]) if trainer.run_dir is not None else None
        return str(client.create_run(experiment_id, run_name=name, tags=tags).info.run_id)

    @staticmethod
    def _previous_run(trainer: Trainer, uri: str, client: Any) -> str | None:
        """The MLflow run a resumed fit continues: recorded in the run folder, same store."""
        if not trainer.config.resume or trainer.run_dir is None:
            return None
        path = trainer.run_dir / MLFLOW_RECORD
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if record.get("tracking_uri") != uri:
            return None
        try:
            return str(client.get_run(record["run_id"]).info.run_id)
        except Exception:  # deleted or never there: MLflow raises its own exception types
            logger.warning("MLflow run %s of %s is gone; starting a new one", record, path)
            return None

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, float]) -> None:
        """Log the row's numeric values (and ``epoch``) at the epoch's global step."""
        if self._client is None or self._run_id is None:
            return
        from mlflow.entities import Metric

        step, stamp = int(row["step"]), _now_ms()
        values = {**numeric_values(row), "epoch": float(row.get("epoch", epoch + 1))}
        metrics = [Metric(k, v, stamp, step) for k, v in values.items()]
        self._client.log_batch(self._run_id, metrics=metrics)

    def on_fit_end(self, trainer: Trainer, result: TrainResult) -> None:
        """End the MLflow run as finished."""
        self._end("FINISHED")

    def _end(self, status: str) -> None:
        if self._client is None or self._run_id is None:
            return
        atexit.unregister(self._end)
        client, run_id = self._client, self._run_id
        self._client = self._run_id = None
        client.set_terminated(run_id, status=status)


def _params(params: dict[str, str]) -> list[Any]:
    from mlflow.entities import Param

    return [Param(k, v) for k, v in sorted(params.items())]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _redacted(uri: str) -> str:
    """A tracking URI without a password (``user:password@host``)."""
    scheme, sep, rest = uri.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        rest = rest.split("@", 1)[1]
        return f"{scheme}://***@{rest}"
    return uri


__all__ = [
    "EXTRA_HINT",
    "MLFLOW_RECORD",
    "MlflowLogger",
    "TensorBoardLogger",
    "TrackingError",
    "default_tracking_uri",
    "missing_package",
]
