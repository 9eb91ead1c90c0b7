"""Trainer on tiny CPU problems: learning, CSV, early stopping, accumulation, AMP, hooks."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import TensorDataset

from medtl.training import Callback, Trainer, TrainingConfig, load_checkpoint


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _problem(n: int = 64, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] - x[:, 2] > 0).long()
    return TensorDataset(x, y)


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    return {"acc": float((logits.argmax(1) == y).float().mean())}


def _cfg(**kw) -> TrainingConfig:
    base = {"batch_size": 8, "lr": 0.05, "progress": "never", "max_epochs": 3}
    base.update(kw)
    return TrainingConfig(**base)


def test_loss_decreases_and_run_folder_is_complete(tmp_path: Path) -> None:
    ds = _problem()
    cfg = _cfg(max_epochs=6, monitor="acc", mode="max")
    result = Trainer(_mlp(), nn.CrossEntropyLoss(), cfg, val_metric=_accuracy).fit(
        ds, ds, run_dir=tmp_path / "run"
    )
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < 0.5 * losses[0]
    assert result.history[-1]["acc"] > 0.85
    assert result.epochs_run == 6 and not result.stopped_early
    assert result.best_metric == max(row["acc"] for row in result.history)

    run = tmp_path / "run"
    assert yaml.safe_load((run / "config.yaml").read_text())["batch_size"] == 8
    assert result.last_checkpoint == run / "checkpoints" / "last.ckpt"
    assert result.best_checkpoint == run / "checkpoints" / "best.ckpt"
    best = load_checkpoint(result.best_checkpoint)
    assert best["progress"]["epoch"] == result.best_epoch
    model = _mlp(5)
    progress = Trainer(model, nn.CrossEntropyLoss(), cfg).load_weights(result.best_checkpoint)
    assert progress["epoch"] == result.best_epoch
    assert all(torch.equal(v, best["model"][k]) for k, v in model.state_dict().items())
    with (run / "metrics.csv").open() as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        header = reader.fieldnames
    assert header == [
        "epoch",
        "step",
        "train_loss",
        "val_loss",
        "acc",
        "lr",
        "throughput",
        "elapsed",
    ]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [int(r["step"]) for r in rows] == [8, 16, 24, 32, 40, 48]
    assert [float(r["train_loss"]) for r in rows] == losses
    assert all(float(r["throughput"]) > 0 for r in rows)
    elapsed = [float(r["elapsed"]) for r in rows]
    assert elapsed == sorted(elapsed)


def test_early_stopping_stops_and_resume_does_not_restart(tmp_path: Path) -> None:
    ds = _problem(16)
    cfg = _cfg(max_epochs=20, monitor="const", mode="max", patience=2)
    result = Trainer(
        _mlp(), nn.CrossEntropyLoss(), cfg, val_metric=lambda logits, y: {"const": 1.0}
    ).fit(ds, ds, run_dir=tmp_path)
    # epoch 1 sets the best; epochs 2 and 3 fail to improve -> stop after 3.
    assert result.stopped_early and result.epochs_run == 3
    assert result.best_epoch == 1
    state = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert state["early_stopping"]["stopped"] is True

    cfg.resume = True
    again = Trainer(
        _mlp(), nn.CrossEntropyLoss(), cfg, val_metric=lambda logits, y: {"const": 1.0}
    ).fit(ds, ds, run_dir=tmp_path)
    assert again.epochs_run == 3 and again.stopped_early


def test_monitor_must_exist(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="auroc"):
        Trainer(_mlp(), nn.CrossEntropyLoss(), _cfg(monitor="auroc")).fit(
            _problem(16), _problem(16), run_dir=tmp_path
        )


def _final_weights(tmp_path: Path, name: str, **kw) -> dict[str, torch.Tensor]:
    model = _mlp(3)
    # amp="none": compared to 1e-6, which bf16 autocast (amp="auto" on CPUs with native
    # bf16) cannot promise
    cfg = _cfg(max_epochs=2, optimizer="sgd", lr=0.1, momentum=0.0, amp="none", **kw)
    Trainer(model, nn.CrossEntropyLoss(), cfg).fit(_problem(32), run_dir=tmp_path / name)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_gradient_accumulation_matches_large_batch(tmp_path: Path) -> None:
    big = _final_weights(tmp_path, "big", batch_size=8, grad_accum_steps=1, monitor="train_loss")
    acc = _final_weights(tmp_path, "acc", batch_size=8, grad_accum_steps=2, monitor="train_loss")
    small = _final_weights(tmp_path, "small", batch_size=4, monitor="train_loss")
    for key in big:
        torch.testing.assert_close(acc[key], big[key], atol=1e-6, rtol=0)
    # The comparison has teeth: plain batch 4 (twice the steps) ends elsewhere.
    assert any(not torch.allclose(small[k], big[k], atol=1e-4) for k in big)


def test_bf16_autocast_runs_on_cpu(tmp_path: Path) -> None:
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            probe = nn.Linear(2, 2)(torch.ones(1, 2))
    except RuntimeError as exc:  # pragma: no cover - depends on the torch build
        pytest.skip(f"CPU bf16 autocast unsupported: {exc}")
    assert probe.dtype == torch.bfloat16

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )
    seen: list[torch.dtype] = []
    model[4].register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    g = torch.Generator().manual_seed(1)
    ds = TensorDataset(torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 2, (16,)))
    cfg = _cfg(max_epochs=1, amp="bf16", channels_last=True, monitor="train_loss")
    trainer = Trainer(model, nn.CrossEntropyLoss(), cfg)
    result = trainer.fit(ds, run_dir=tmp_path)
    assert trainer.amp_dtype == torch.bfloat16
    assert seen and all(dtype == torch.bfloat16 for dtype in seen)
    assert torch.isfinite(torch.tensor(result.history[0]["train_loss"]))
    assert model[0].weight.dtype == torch.float32  # master weights stay fp32
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_frozen_batchnorm_stays_in_eval_and_hook_runs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU())
    head = nn.Linear(8, 2)
    model = nn.Sequential(backbone, head)
    for p in backbone.parameters():
        p.requires_grad_(False)
    stats_before = backbone[1].running_mean.clone()
    backbone_before = backbone[0].weight.clone()
    head_before = head.weight.clone()
    modes: list[bool] = []
    backbone[1].register_forward_pre_hook(lambda mod, inp: modes.append(mod.training))
    calls: list[nn.Module] = []
    trainer = Trainer(
        model,
        nn.CrossEntropyLoss(),
        _cfg(max_epochs=2, monitor="train_loss"),
        param_groups=[{"params": list(head.parameters()), "lr": 0.1}],
        frozen_bn_modules=[backbone],
        on_train_mode=calls.append,
    )
    trainer.fit(_problem(32), run_dir=tmp_path)
    assert modes and not any(modes)
    assert torch.equal(backbone[1].running_mean, stats_before)
    assert torch.equal(backbone[0].weight, backbone_before)
    assert not torch.equal(head.weight, head_before)
    assert calls == [model, model]  # once per epoch, after model.train()
    assert model.training and head.training and not backbone.training


def test_two_phases_with_discriminative_learning_rates(tmp_path: Path) -> None:
    model = _mlp(1)
    ds = _problem(32)
    trainer = Trainer(model, nn.CrossEntropyLoss(), _cfg(max_epochs=1, monitor="train_loss"))
    for p in model[0].parameters():
        p.requires_grad_(False)
    first_layer = model[0].weight.clone()
    trainer.fit(ds, run_dir=tmp_path / "head")
    assert torch.equal(model[0].weight, first_layer)
    for p in model[0].parameters():
        p.requires_grad_(True)
    lrs: list[list[float]] = []

    class LrProbe(Callback):
        def on_epoch_end(self, trainer, epoch, row):
            lrs.append(row["lr"])

    trainer.user_callbacks.append(LrProbe())
    phase2 = trainer.fit(
        ds,
        run_dir=tmp_path / "full",
        param_groups=[
            {"params": list(model[0].parameters()), "lr": 1e-3},
            {"params": list(model[2].parameters()), "lr": 1e-2},
        ],
    )
    assert not torch.equal(model[0].weight, first_layer)
    assert phase2.epochs_run == 1 and lrs == [1e-3]
    assert (tmp_path / "head" / "metrics.csv").is_file()
    assert (tmp_path / "full" / "metrics.csv").is_file()


def test_predict_keeps_order_and_handles_dict_samples(tmp_path: Path) -> None:
    class Dicts(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 10

        def __getitem__(self, i: int) -> dict:
            return {"image": torch.full((4,), float(i)), "label": i}

    model = nn.Linear(4, 1)
    trainer = Trainer(model, nn.MSELoss(), _cfg(val_batch_size=3, amp="none"))  # fp32 reference
    logits, targets = trainer.predict(Dicts())
    assert targets.tolist() == list(range(10))
    expected = model(torch.arange(10.0).unsqueeze(1).repeat(1, 4)).detach()
    torch.testing.assert_close(logits, expected)


def test_gradient_clipping_limits_the_update(tmp_path: Path) -> None:
    def final(clip: float | None) -> torch.Tensor:
        torch.manual_seed(0)
        model = nn.Linear(4, 1)
        start = model.weight.detach().clone()
        x = torch.randn(8, 4) * 100
        ds = TensorDataset(x, torch.zeros(8, 1))
        cfg = _cfg(
            max_epochs=1,
            optimizer="sgd",
            lr=1.0,
            momentum=0.0,
            grad_clip_norm=clip,
            monitor="train_loss",
            shuffle=False,
        )
        Trainer(model, nn.MSELoss(), cfg).fit(ds, run_dir=tmp_path / str(clip))
        return model.weight.detach() - start

    # one SGD step at lr 1: the update is the gradient, whose global norm is clipped to 0.5
    assert 0.4 < final(0.5).norm() <= 0.5 + 1e-5
    assert final(None).norm() > 10


def test_optional_loggers_skip_with_a_message_and_progress_bar_draws(
    tmp_path: Path, caplog, capsys, monkeypatch
) -> None:
    import importlib.util
    import logging

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    cfg = _cfg(max_epochs=1, monitor="train_loss", progress="always",
               loggers=["csv", "tensorboard", "mlflow"])  # fmt: skip
    with caplog.at_level(logging.INFO, logger="medtl.training"):
        Trainer(_mlp(), nn.CrossEntropyLoss(), cfg).fit(_problem(16), run_dir=tmp_path / "r")
    if importlib.util.find_spec("tensorboard") is None:
        assert "tensorboard is not installed" in caplog.text
    else:
        assert (tmp_path / "r" / "tensorboard").is_dir()
    if importlib.util.find_spec("mlflow") is None:
        assert "mlflow is not installed" in caplog.text
    assert (tmp_path / "r" / "metrics.csv").is_file()
    assert "epoch 1" in capsys.readouterr().err

    quiet = _cfg(max_epochs=1, monitor="train_loss", progress="auto")  # stderr is not a TTY
    Trainer(_mlp(), nn.CrossEntropyLoss(), quiet).fit(_problem(16), run_dir=tmp_path / "q")
    assert "epoch 1" not in capsys.readouterr().err


def test_early_stopping_rules() -> None:
    from medtl.training import EarlyStopping

    es = EarlyStopping("max", patience=2, min_delta=0.1)
    assert es.update(0.5, 1) and not es.stopped
    assert not es.update(0.55, 2)  # better, but not by more than min_delta
    assert not es.update(float("nan"), 3)
    assert es.stopped and es.best == 0.5 and es.best_epoch == 1
    low = EarlyStopping("min")
    assert low.update(1.0, 1) and low.update(0.9, 2) and not low.update(0.9, 3)
    restored = EarlyStopping("min")
    restored.load_state_dict(low.state_dict())
    assert (restored.best, restored.best_epoch, restored.bad_epochs) == (0.9, 2, 1)
