"""Each transfer strategy changes exactly what it should, on a tiny learnable problem."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from medtl.models import create_backbone
from medtl.training import TrainingConfig
from medtl.transfer.strategies import StrategyConfig, StrategyData, run_strategy


@pytest.fixture(scope="module")
def data() -> StrategyData:
    g = torch.Generator().manual_seed(0)
    n = 48
    y = torch.arange(n) % 2
    x = torch.randn(n, 1, 16, 16, generator=g) * 0.3
    x[y == 1, :, 4:12, 4:12] += 1.5  # a bright square marks the positives
    xv = torch.randn(16, 1, 16, 16, generator=g) * 0.3
    yv = torch.arange(16) % 2
    xv[yv == 1, :, 4:12, 4:12] += 1.5
    return StrategyData(train=TensorDataset(x, y), val=TensorDataset(xv, yv))


def _training(tmp_path) -> TrainingConfig:
    return TrainingConfig(
        batch_size=8,
        monitor="val_loss",
        mode="min",
        amp="none",
        progress="never",
        run_dir=tmp_path,
        seed=0,
    )


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_backbone("smallcnn", spatial_dims=2, in_channels=1, num_outputs=1)


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(before, after, prefix: str) -> bool:
    return any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix))


def _block_prefixes(model) -> list[list[str]]:
    names = {id(p): n for n, p in model.named_parameters()}
    buffers = {id(b): n for n, b in model.named_buffers()}
    out = []
    for block in model.blocks():
        keys = [names[id(p)] for p in block.parameters()] + [
            buffers[id(b)] for b in block.buffers() if id(b) in buffers
        ]
        out.append(keys)
    return out


def test_frozen_base_changes_only_the_head(tmp_path, data) -> None:
    model = _model()
    before = _snapshot(model)
    cfg = StrategyConfig(name="frozen_base", head_epochs=3, finetune_epochs=0, head_lr=1e-2)
    result = run_strategy(model, cfg, _training(tmp_path), data, tmp_path / "frozen")
    after = model.state_dict()
    for key in before:
        if not key.startswith("head."):
            assert torch.equal(before[key], after[key]), key  # incl. BN running stats
    assert _changed(before, after, "head.")
    assert result.trainable_parameters < result.total_parameters
    assert (tmp_path / "frozen" / "head" / "metrics.csv").is_file()


def test_staged_unfreezes_only_last_blocks_and_keeps_bn_stats(tmp_path, data) -> None:
    model = _model()
    before = _snapshot(model)
    blocks = _block_prefixes(model)
    cfg = StrategyConfig(
        name="staged",
        head_epochs=2,
        finetune_epochs=2,
        unfreeze_blocks=1,
        head_lr=1e-2,
        finetune_lr_factor=0.1,
    )
    result = run_strategy(model, cfg, _training(tmp_path), data, tmp_path / "staged")
    after = model.state_dict()
    assert len(result.phases) == 2
    for keys in blocks[:-1]:
        for key in keys:
            assert torch.equal(before[key], after[key]), key
    last = blocks[-1]
    assert any(not torch.equal(before[k], after[k]) for k in last if k.endswith("weight"))
    for key in last:
        if "running_" in key or "num_batches" in key:
            assert torch.equal(before[key], after[key]), key  # BN kept in inference mode


def test_full_finetune_changes_every_block(tmp_path, data) -> None:
    model = _model()
    before = _snapshot(model)
    cfg = StrategyConfig(name="full", head_epochs=1, finetune_epochs=1, head_lr=1e-2)
    run_strategy(model, cfg, _training(tmp_path), data, tmp_path / "full")
    after = model.state_dict()
    for keys in _block_prefixes(model):
        assert any(not torch.equal(before[k], after[k]) for k in keys if k.endswith("weight"))


def test_feature_extraction_caches_and_learns(tmp_path, data) -> None:
    model = _model()
    before = _snapshot(model)
    cfg = StrategyConfig(name="feature_extraction", feature_head_epochs=20, head_lr=5e-2)
    result = run_strategy(model, cfg, _training(tmp_path), data, tmp_path / "fe")
    cached = sorted((tmp_path / "fe" / "features").glob("*.safetensors"))
    assert [p.name.split("-")[0] for p in cached] == ["train", "val"]
    after = model.state_dict()
    assert not any(_changed(before, after, k) for k in before if not k.startswith("head."))
    assert result.best_metric is not None
    history = result.phases[0].history
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    mtimes = [p.stat().st_mtime_ns for p in cached]
    run_strategy(model, cfg, _training(tmp_path), data, tmp_path / "fe")  # reuses the cache
    assert [p.stat().st_mtime_ns for p in cached] == mtimes


def test_logistic_feature_head_matches_sklearn(tmp_path, data) -> None:
    from sklearn.linear_model import LogisticRegression

    from medtl.transfer.strategies import extract_features

    model = _model()
    cfg = StrategyConfig(name="feature_extraction", feature_head="logistic")
    run_strategy(model, cfg, _training(tmp_path), data, tmp_path / "lr")
    x, y = extract_features(model, data.train)
    ref = LogisticRegression(C=1.0, max_iter=2000).fit(x.numpy(), y.numpy())
    model.eval()
    with torch.no_grad():
        logits = model.forward_head(x).reshape(-1).numpy()
    assert logits == pytest.approx(ref.decision_function(x.numpy()), abs=1e-4)


def test_scratch_learns(tmp_path, data) -> None:
    model = _model()
    cfg = StrategyConfig(name="scratch", head_epochs=3, finetune_epochs=3, head_lr=1e-2)
    result = run_strategy(model, cfg, _training(tmp_path), data, tmp_path / "scratch")
    history = result.phases[0].history
    assert len(history) == 6
    assert history[-1]["train_loss"] < history[0]["train_loss"]
