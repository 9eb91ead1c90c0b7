"""The ``top_block`` arm of a study: staged fine-tuning of an encoder's last stage, made cheap.

Staged fine-tuning of astra-ct (head first, then ``layer4`` only) runs the whole 152-layer
encoder forward at every step, although nothing below ``layer4`` changes: hours for a
learning curve on a 2-core CPU. With the trunk (stem to ``layer3``) frozen, its BatchNorm in
inference mode and no augmentation, the trunk's output of each record is the same at every
step, so this arm computes it once (:func:`trunk_maps`, cached on disk, in the network's own
axis order) and runs the usual staged strategy
(:func:`medtl.transfer.strategies.run_strategy`) on :class:`TopBlockModel`: ``layer4`` and
the head fed the cached maps. That is the same computation as staged fine-tuning without
augmentation. What it gives up is augmentation; on a GPU the ``kind: experiment`` form of the
arm (the whole network, augmented) is the one to run.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medtl.transfer.arms import (
    _all_splits,
    _feature_key,
    _train_subset,
    _write_point,
    arm_model,
    load_cached,
    plain_splits,
    save_cached,
)

logger = logging.getLogger(__name__)

__all__ = ["TopBlockModel", "top_block_point", "trunk_maps"]


class TopBlockModel(nn.Module):
    """A backbone's last stage and head, fed the maps of its frozen trunk.

    The stage and head are the backbone's own modules (trained in place), so the backbone
    afterwards holds the tuned weights; the frozen trunk is not a submodule, which keeps
    checkpoints to the trained part.

    Args:
        backbone: a backbone with ``forward_trunk`` and named stages (``i3resnet152``).
        stage: the stage to tune (``layer4``); its input is the previous stage's map.
    """

    def __init__(self, backbone: nn.Module, stage: str = "layer4") -> None:
        super().__init__()
        stages = list(backbone.encoder.stages)
        if stage not in stages or stages.index(stage) == 0:
            raise ValueError(f"top_block: cannot tune {stage!r}; stages are {stages}")
        self.stage_name = stage
        self.trunk_end = stages[stages.index(stage) - 1]
        self.stage = getattr(backbone.encoder, stage)
        self.head = backbone.head
        self.config = backbone.config
        self._backbone = (backbone,)  # a tuple: not registered as a submodule

    @property
    def backbone(self) -> nn.Module:
        """The whole network (its stage and head are this model's)."""
        return self._backbone[0]

    def blocks(self) -> list[nn.Module]:
        """The one tunable block (staged fine-tuning with ``unfreeze_blocks: 1``)."""
        return [self.stage]

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.head(self.stage(maps))


def trunk_maps(cfg: Any, cache_dir: Path, arm: str, stage: str = "layer4") -> dict[int, np.ndarray]:
    """The frozen trunk's output map of every manifest record (cached on disk).

    Args:
        cfg: the arm's experiment config (model, preprocessing, data).
        cache_dir: where ``<arm>-trunk-<stage>-<key>.safetensors`` is kept; the key hashes
            the weights, the preprocessing and the data, so a change recomputes it.
        arm: the arm's name.
        stage: the stage that will be tuned; the trunk ends just before it.

    Returns:
        ``{record index: (C, z, x, y) float32}``.
    """
    _, model = arm_model(cfg)
    top = TopBlockModel(model, stage)
    path = cache_dir / f"{arm}-trunk-{top.trunk_end}-{_feature_key(cfg, model)}.safetensors"
    cached = load_cached(path, "maps")
    if cached is not None:
        return cached
    t0 = time.perf_counter()
    model.eval()
    index: list[int] = []
    maps: list[np.ndarray] = []
    with torch.inference_mode():
        for ids, ds in plain_splits(cfg):
            for batch in torch.utils.data.DataLoader(ds, batch_size=8, shuffle=False):
                x = batch["image"] if isinstance(batch, dict) else batch[0]
                maps.append(model.forward_trunk(torch.as_tensor(x).float(), top.trunk_end).numpy())
            index += ids
    out = save_cached(path, "maps", index, np.concatenate(maps).astype(np.float32))
    logger.info("%s: trunk maps of %d records in %.0f s", arm, len(index),
                time.perf_counter() - t0)  # fmt: skip
    return out


def _tensors(maps: dict[int, np.ndarray], manifest: Any, ids: list[int]):
    x = torch.from_numpy(np.stack([maps[i] for i in ids]))
    y = torch.tensor([int(manifest.records[i].label) for i in ids])
    return torch.utils.data.TensorDataset(x, y)


def top_block_point(
    cfg: Any, manifest: Any, maps: dict[int, np.ndarray], run: Path, fraction: float, seed: int
) -> None:
    """Train one learning-curve point of a ``top_block`` arm and write its run folder.

    Args:
        cfg: the point's experiment config (its strategy: staged, ``unfreeze_blocks: 1``).
        manifest: the study's manifest.
        maps: :func:`trunk_maps` of every record.
        run: the point's run folder (predictions and summary, as every other point).
        fraction: share of the training patients used.
        seed: the point's seed (patient subsample and training).
    """
    from medtl.transfer.strategies import StrategyData, run_strategy

    if cfg.strategy.name != "staged" or cfg.strategy.unfreeze_blocks != 1:
        raise ValueError("a top_block arm runs the staged strategy with unfreeze_blocks: 1")
    splits = _all_splits(manifest)
    train = _train_subset(manifest, splits["train"], fraction, seed)
    t0 = time.perf_counter()
    torch.manual_seed(seed)  # the new head's initial weights
    _, model = arm_model(cfg)
    top = TopBlockModel(model, model.encoder.stages[-1])
    data = StrategyData(train=_tensors(maps, manifest, train),
                        val=_tensors(maps, manifest, splits["val"]))  # fmt: skip
    result = run_strategy(top, cfg.strategy, cfg.training, data, run / "train")
    others = [i for s in ("val", "calibration", "test") for i in splits.get(s, [])]
    top.eval()
    logits: dict[int, np.ndarray] = {}
    with torch.inference_mode():
        for start in range(0, len(others), 64):
            ids = others[start : start + 64]
            out = top(torch.from_numpy(np.stack([maps[i] for i in ids]))).float().numpy()
            logits.update({i: np.atleast_1d(o) for i, o in zip(ids, out, strict=True)})
    info = {"train": train, "strategy": f"staged ({top.stage_name} on cached {top.trunk_end} maps)",
            "seconds": time.perf_counter() - t0}  # fmt: skip
    _write_point(run, cfg, manifest, splits, logits, info)
    # The phases' checkpoints (layer4 + head with optimiser state: about 0.9 GB a point) are
    # not packaged; the point's predictions and per-epoch metrics are what the study reads.
    for checkpoint in (run / "train").rglob("*.ckpt"):
        checkpoint.unlink()
    logger.info("top_block: best val %s in %.0f s", result.best_metric, info["seconds"])
