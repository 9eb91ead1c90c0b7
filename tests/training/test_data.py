"""Cached datasets (memory and disk, keyed by file content and transform) and seeded loaders."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from torch.utils.data import TensorDataset

from medtl.io.testing import image_dataset, write
from medtl.training import TrainingConfig, cached_dataset, make_dataloader, set_loader_epoch
from medtl.training.data import FileContentHasher


def write_cr(path: Path, pixels: np.ndarray) -> Path:
    """Write a minimal uncompressed 16-bit CR DICOM file."""
    return write(image_dataset(pixels.astype(np.uint16), modality="CR", bits_stored=12), path)


class Decode:
    """Deterministic part: read the DICOM, scale to [0, 1]; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.scale = 4095.0

    def __call__(self, item: dict) -> dict:
        self.calls += 1
        pixels = pydicom.dcmread(item["image"]).pixel_array.astype(np.float32) / self.scale
        return {"image": torch.from_numpy(pixels)[None], "label": item["label"]}


class Flip:
    """Random part: flips with probability 1/2 and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, sample: dict) -> dict:
        self.calls += 1
        if torch.rand(()) < 0.5:
            sample = {**sample, "image": sample["image"].flip(-1)}
        return sample


@pytest.fixture
def scans(tmp_path: Path) -> list[dict]:
    items = []
    for i in range(4):
        pixels = np.full((6, 5), 100 * (i + 1), dtype=np.uint16)
        pixels[0, 0] = 7
        items.append({"image": str(write_cr(tmp_path / f"cr{i}.dcm", pixels)), "label": i % 2})
    return items


def test_memory_cache_decodes_once_and_augments_every_time(scans: list[dict]) -> None:
    decode, flip = Decode(), Flip()
    ds = cached_dataset(scans, decode, flip, cache="memory", num_workers=1)
    assert decode.calls == 4  # filled at construction
    for _ in range(3):
        for i in range(len(ds)):
            sample = ds[i]
            assert sample["image"].shape == (1, 6, 5)
            assert float(sample["image"].max()) == pytest.approx(100 * (i + 1) / 4095.0)
    assert decode.calls == 4
    assert flip.calls == 12
    # the cache keeps the un-augmented decode: the corner pixel is back where it started
    seen_corners = {int(ds[0]["image"][0, 0, 0] * 4095 + 0.5) for _ in range(20)}
    assert seen_corners == {7, 100}


def test_disk_cache_is_keyed_by_file_content_and_transform(scans: list[dict], tmp_path) -> None:
    cache = tmp_path / "cache"
    decode = Decode()
    first = cached_dataset(scans, decode, None, cache="disk", cache_dir=cache, cache_key="v1")
    values = [float(first[i]["image"].max()) for i in range(4)]
    assert decode.calls == 4 and len(list(cache.glob("*.safetensors"))) == 4

    again = Decode()
    second = cached_dataset(scans, again, None, cache="disk", cache_dir=cache, cache_key="v1")
    assert [float(second[i]["image"].max()) for i in range(4)] == values
    assert again.calls == 0  # served from disk, not decoded

    # New bytes in one file: only that item is recomputed, with the new content.
    write_cr(Path(scans[2]["image"]), np.full((6, 5), 4000, dtype=np.uint16))
    changed = Decode()
    third = cached_dataset(scans, changed, None, cache="disk", cache_dir=cache, cache_key="v1")
    assert float(third[2]["image"].max()) == pytest.approx(4000 / 4095.0)
    assert float(third[1]["image"].max()) == values[1]
    assert changed.calls == 1

    # A different transform configuration never reads the old entries.
    other = Decode()
    other.scale = 1.0
    fourth = cached_dataset(scans, other, None, cache="disk", cache_dir=cache)
    assert float(fourth[0]["image"].max()) == 100.0 and other.calls == 1


def test_content_hasher_changes_with_bytes_not_with_mtime_only(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"abc")
    hasher = FileContentHasher("t")
    key = hasher({"image": str(path)})
    path.write_bytes(b"abc")  # same bytes, new mtime
    assert FileContentHasher("t")({"image": str(path)}) == key
    path.write_bytes(b"abd")
    assert FileContentHasher("t")({"image": str(path)}) != key
    assert FileContentHasher("u")({"image": str(path)}) != FileContentHasher("t")(
        {"image": str(path)}
    )


def test_disk_cache_defaults_to_medtl_home(scans: list[dict], tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MEDTL_HOME", str(tmp_path / "home"))
    ds = cached_dataset(scans[:1], Decode(), cache="disk")
    assert ds[0]["label"] == 0
    assert len(list((tmp_path / "home" / "cache" / "datasets").glob("*.safetensors"))) == 1
    with pytest.raises(ValueError, match="cache mode"):
        cached_dataset(scans, Decode(), cache="ram")  # type: ignore[arg-type]


def _order(loader) -> list[int]:
    return [int(v) for batch in loader for v in batch[0]]


def test_loader_order_is_a_function_of_seed_and_epoch() -> None:
    ds = TensorDataset(torch.arange(20), torch.zeros(20))
    cfg = TrainingConfig(batch_size=4, seed=3)
    a, b = make_dataloader(ds, cfg, train=True), make_dataloader(ds, cfg, train=True)
    set_loader_epoch(a, 0)
    epoch0 = _order(a)
    set_loader_epoch(a, 1)
    epoch1 = _order(a)
    set_loader_epoch(b, 1)  # a fresh loader jumping straight to epoch 1 (a resumed run)
    assert _order(b) == epoch1
    assert sorted(epoch0) == list(range(20)) and epoch0 != epoch1
    val = make_dataloader(ds, cfg, train=False)
    assert _order(val) == list(range(20))


def test_distributed_split_gives_each_rank_interleaved_micro_batches(monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    ds = TensorDataset(torch.arange(16), torch.zeros(16))
    cfg = TrainingConfig(batch_size=8, grad_accum_steps=2, shuffle=False)
    per_rank = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        loader = make_dataloader(ds, cfg, train=True, distributed=True)
        assert loader.batch_sampler.micro_size == 2  # 8 / (2 ranks x 2 micro-steps)
        per_rank.append(_order(loader))
    assert per_rank == [[0, 2, 4, 6, 8, 10, 12, 14], [1, 3, 5, 7, 9, 11, 13, 15]]
    with pytest.raises(ValueError, match="divisible"):
        TrainingConfig(batch_size=6, grad_accum_steps=4)
    with pytest.raises(ValueError, match="world_size"):
        TrainingConfig(batch_size=6, grad_accum_steps=2).micro_batch_size(2)


class Noisy(torch.utils.data.Dataset):
    """Each access draws fresh noise from the global torch RNG (an augmentation)."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.rand(3) + i, i


def _batches(loader) -> list[torch.Tensor]:
    return [x.clone() for x, _ in loader]


def test_worker_augmentations_replay_for_the_same_seed_and_epoch() -> None:
    cfg = TrainingConfig(batch_size=4, seed=1, num_workers=1, persistent_workers=False)
    first, second = make_dataloader(Noisy(), cfg, True), make_dataloader(Noisy(), cfg, True)
    set_loader_epoch(first, 2)
    set_loader_epoch(second, 2)
    a, b = _batches(first), _batches(second)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    set_loader_epoch(second, 3)
    c = _batches(second)
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))
    # a fresh loader (a resumed run) jumping straight to epoch 3 replays epoch 3 exactly
    third = make_dataloader(Noisy(), cfg, True)
    set_loader_epoch(third, 3)
    assert all(torch.equal(x, y) for x, y in zip(_batches(third), c, strict=True))


def _scale(x: float, factor: float = 1.0) -> float:
    return x * factor


def test_default_cache_key_sees_transform_settings() -> None:
    from medtl.training.data import describe_transform

    two, three = Decode(), Decode()
    three.scale = 3.0
    assert describe_transform(two) != describe_transform(three)
    assert describe_transform(Decode()) == describe_transform(two)
    assert describe_transform(functools.partial(_scale, factor=2.0)) != describe_transform(
        functools.partial(_scale, factor=3.0)
    )
