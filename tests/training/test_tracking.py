"""Experiment tracking (the ``tracking`` extra): a tiny run's params and per-epoch metrics
land in a real MLflow store (SQLite) and in TensorBoard event files, read back with each
tool's own reader; a requested logger whose package is missing is a WARNING naming the extra.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from medtl.training import Trainer, TrainingConfig

mlflow = pytest.importorskip("mlflow", reason="the tracking extra (pip install 'medtl[tracking]')")


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _problem(n: int = 32) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return TensorDataset(x, (x[:, 0] - x[:, 2] > 0).long())


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    return {"acc": float((logits.argmax(1) == y).float().mean())}


def _fit(run: Path, loggers: list[str], **kw) -> list[dict[str, float]]:
    base = dict(batch_size=8, lr=0.05, max_epochs=3, progress="never", monitor="acc",
                mode="max", loggers=loggers)  # fmt: skip
    base.update(kw)
    ds = _problem()
    trainer = Trainer(_mlp(), nn.CrossEntropyLoss(), TrainingConfig(**base), val_metric=_accuracy)
    return trainer.fit(ds, ds, run_dir=run).history


def _csv_rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_mlflow_store_receives_params_and_every_epoch(tmp_path: Path, monkeypatch) -> None:
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "nodules")
    run = tmp_path / "cxr-run"
    history = _fit(run, ["csv", "mlflow"])

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("nodules")
    assert experiment is not None
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.status == "FINISHED"
    assert found.info.run_name == "/".join(run.parts[-3:])  # .../<tmp>/cxr-run
    assert found.data.tags["medtl.run_dir"] == str(run)
    params = found.data.params
    assert (params["lr"], params["batch_size"], params["max_epochs"]) == ("0.05", "8", "3")
    assert params["optimizer"] == "adamw" and params["loggers"] == "['csv', 'mlflow']"

    rows = _csv_rows(run)
    assert len(rows) == 3
    for key in ("train_loss", "val_loss", "acc", "lr"):
        points = client.get_metric_history(found.info.run_id, key)
        assert [p.step for p in points] == [int(r["step"]) for r in rows], key
        assert [p.value for p in points] == [float(r[key]) for r in rows], key  # exact
    epochs = client.get_metric_history(found.info.run_id, "epoch")
    assert [p.value for p in epochs] == [1.0, 2.0, 3.0]
    assert [row["train_loss"] for row in history] == [float(r["train_loss"]) for r in rows]
    assert json.loads((run / "mlflow.json").read_text()) == {
        "tracking_uri": uri,
        "run_id": found.info.run_id,
    }

    # a resumed fit continues the same MLflow run with the epochs it adds
    _fit(run, ["csv", "mlflow"], max_epochs=5, resume=True)
    (again,) = client.search_runs([experiment.experiment_id])
    assert again.info.run_id == found.info.run_id and again.info.status == "FINISHED"
    steps = [p.step for p in client.get_metric_history(found.info.run_id, "train_loss")]
    assert steps == [int(r["step"]) for r in _csv_rows(run)] and len(steps) == 5


def test_mlflow_default_store_is_in_medtl_home_and_nests_in_an_active_run(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.setenv("MEDTL_HOME", str(tmp_path / "home"))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    _fit(tmp_path / "alone", ["mlflow"], max_epochs=1)
    db = tmp_path / "home" / "mlflow" / "mlflow.db"
    assert db.is_file()
    assert list(cwd.iterdir()) == []  # MLflow's own default would write ./mlflow.db here
    uri = f"sqlite:///{db}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    (alone,) = client.search_runs([client.get_experiment_by_name("medtl").experiment_id])
    assert alone.info.run_name.endswith("/alone")
    assert alone.info.artifact_uri.startswith((tmp_path / "home" / "mlflow").as_uri())

    # inside a caller's MLflow run, each fit is a child run in the caller's store
    own = f"sqlite:///{tmp_path / 'own.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", own)
    with mlflow.start_run(run_name="sweep") as parent:
        _fit(tmp_path / "point-a", ["mlflow"], max_epochs=1)
        _fit(tmp_path / "point-b", ["mlflow"], max_epochs=1)
    own_client = mlflow.MlflowClient(tracking_uri=own)
    children = own_client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(r.info.run_name.rsplit("/", 1)[1] for r in children) == ["point-a", "point-b"]
    assert all(r.info.status == "FINISHED" for r in children)


def test_unusable_mlflow_store_is_one_clear_error(tmp_path: Path, monkeypatch) -> None:
    from medtl._cli import describe_error
    from medtl.training.tracking import TrackingError

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{blocker / 'mlflow.db'}")
    with pytest.raises(TrackingError) as caught:
        _fit(tmp_path / "run", ["mlflow"], max_epochs=1)
    line = describe_error(caught.value)
    assert line is not None and "MLflow tracking store" in line and "MLFLOW_TRACKING_URI" in line


def test_tensorboard_event_file_holds_every_epoch(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    _fit(run, ["csv", "tensorboard"])
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    rows = _csv_rows(run)
    assert {"train_loss", "val_loss", "acc", "lr"} <= set(events.Tags()["scalars"])
    for key in ("train_loss", "val_loss", "acc"):
        scalars = events.Scalars(key)
        assert [s.step for s in scalars] == [int(r["step"]) for r in rows]
        assert [s.value for s in scalars] == pytest.approx([float(r[key]) for r in rows], rel=1e-6)


def test_missing_tracking_package_is_a_warning_naming_the_extra(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    # the packages are installed here: make their import fail as on a machine without them
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)
    run = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="medtl.training.tracking"):
        _fit(run, ["csv", "tensorboard", "mlflow"], max_epochs=1)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    for record, name in zip(warnings, ("tensorboard", "mlflow"), strict=True):
        text = record.getMessage()
        assert f"asks for {name!r}" in text and "pip install 'medtl[tracking]'" in text
    assert (run / "metrics.csv").is_file()  # the run goes on with its other loggers
    assert not (run / "tensorboard").exists() and not (run / "mlflow.json").exists()
