"""Data loading that keeps the model busy: cached preprocessing, seeded loaders, DDP samplers.

:func:`cached_dataset` splits a pipeline in two: the *deterministic* part (decode,
resample, normalise) runs once per item and is cached, in memory (MONAI ``CacheDataset``) or
on disk (MONAI ``PersistentDataset``, keyed by the item, the content hash of the files it
names and the transform configuration); the *random* part (augmentation) runs after the
cache on every access. MONAI caches up to the first transform that is randomizable or not
a MONAI ``Transform``; wrapping our two halves in ``CachedStage``/``RandomStage`` makes that
split exactly the one asked for, whatever callables the caller passes.

:func:`make_dataloader` trains on a :class:`~medtl.training.sampling.GlobalBatchSampler`
(evaluates on an unshuffled ``DistributedSampler``), so the sample order is a function of
(seed, epoch) only and each optimiser step's batch, summed over the processes, is the same
for any process count: a resumed run and a DDP run see the batches of an uninterrupted
single-process run.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader, Dataset, default_collate
from torch.utils.data.distributed import DistributedSampler

from medtl.training.config import TrainingConfig
from medtl.training.distributed import env_dist_info
from medtl.training.sampling import GlobalBatchSampler
from medtl.training.seed import make_generator, seed_transforms, worker_init_fn

logger = logging.getLogger(__name__)

CacheMode = Literal["memory", "disk", "none"]


class FileContentHasher:
    """``hash_func`` for MONAI ``PersistentDataset``: item + file contents + transform key.

    Strings in the item that name existing files contribute the SHA-256 of the file's bytes,
    memoised per (path, size, mtime) so a cache hit costs one ``stat`` per file rather than
    a full read. Changing a file, the item, or ``transform_key`` changes the cache key.

    Args:
        transform_key: text describing the deterministic transform configuration.
    """

    def __init__(self, transform_key: str) -> None:
        self.transform_key = transform_key
        self._memo: dict[tuple[str, int, int], str] = {}

    def file_digest(self, path: str) -> str | None:
        """SHA-256 of a file's bytes, or None when ``path`` is not a file."""
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return None
        if not os.path.isfile(path):
            return None
        key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
        digest = self._memo.get(key)
        if digest is None:
            h = hashlib.sha256()
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    h.update(chunk)
            digest = h.hexdigest()
            self._memo[key] = digest
        return digest

    def _walk(self, item: Any) -> Any:
        if isinstance(item, dict):
            return {
                str(k): self._walk(v) for k, v in sorted(item.items(), key=lambda kv: str(kv[0]))
            }
        if isinstance(item, list | tuple):
            return [self._walk(v) for v in item]
        if isinstance(item, Path):
            item = str(item)
        if isinstance(item, str):
            digest = self.file_digest(item)
            return item if digest is None else {"file": item, "sha256": digest}
        if isinstance(item, int | float | bool) or item is None:
            return item
        return repr(item)

    def __call__(self, item: Any) -> bytes:
        """Return the hex cache key of ``item`` as bytes (the form MONAI expects)."""
        payload = json.dumps(
            {"item": self._walk(item), "transform": self.transform_key}, sort_keys=True
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest().encode("ascii")


def describe_transform(transform: Any) -> str:
    """A stable text description of a transform pipeline (class names + simple settings).

    Used as the default transform part of the disk-cache key. Pass an explicit
    ``cache_key`` to :func:`cached_dataset` when settings live somewhere this cannot see
    (closures, objects with non-primitive attributes).
    """

    def walk(obj: Any, depth: int) -> Any:
        if depth > 4:
            return type(obj).__qualname__
        if isinstance(obj, int | float | str | bool) or obj is None:
            return obj
        if isinstance(obj, list | tuple):
            return [walk(v, depth + 1) for v in obj]
        if isinstance(obj, dict):
            return {str(k): walk(v, depth + 1) for k, v in sorted(obj.items(), key=str)}
        if isinstance(obj, functools.partial):
            return {
                "partial": walk(obj.func, depth + 1),
                "args": walk(list(obj.args), depth + 1),
                "keywords": walk(dict(obj.keywords), depth + 1),
            }
        if callable(obj) and not hasattr(obj, "__dict__"):
            return getattr(obj, "__qualname__", type(obj).__qualname__)
        name = f"{type(obj).__module__}.{type(obj).__qualname__}"
        if hasattr(obj, "__code__") or isinstance(obj, type):
            return f"{obj.__module__}.{obj.__qualname__}"
        attrs = {
            k: walk(v, depth + 1)
            for k, v in sorted(vars(obj).items())
            if not k.startswith("_") and k not in ("R",)
        }
        return {"class": name, "attrs": attrs}

    return json.dumps(walk(transform, 0), sort_keys=True, default=str)


def cached_dataset(
    items: Sequence[Any],
    deterministic_transform: Callable[[Any], Any] | None,
    random_transform: Callable[[Any], Any] | None = None,
    cache: CacheMode = "memory",
    cache_dir: str | Path | None = None,
    *,
    cache_key: str | None = None,
    num_workers: int | None = None,
) -> Dataset:
    """Build a dataset whose deterministic preprocessing is computed once and cached.

    Args:
        items: one entry per sample (e.g. ``{"image": path, "label": 1}``).
        deterministic_transform: decode + preprocess; its output is cached. Any callable.
        random_transform: augmentation applied after the cache on every access.
        cache: ``"memory"`` (MONAI ``CacheDataset``, filled now), ``"disk"`` (a MONAI
            ``PersistentDataset`` storing safetensors under ``cache_dir``, filled lazily,
            reused across runs; see :mod:`medtl.training.disk_cache`) or ``"none"``.
        cache_dir: folder for ``cache="disk"``; default ``MEDTL_HOME/cache/datasets`` (safe to
            share: entries are keyed by content and transform).
        cache_key: describes the deterministic transform's configuration; part of the disk
            cache key so a changed pipeline never reads stale entries. Defaults to
            :func:`describe_transform` of ``deterministic_transform``.
        num_workers: threads that fill the memory cache (None: one per CPU).

    Returns:
        A map-style dataset.

    Raises:
        ValueError: an unknown cache mode.
    """
    from monai.data import CacheDataset
    from monai.data import Dataset as MonaiDataset
    from monai.transforms import Compose

    from medtl.training._transforms import CachedStage, RandomStage

    stages: list[Any] = []
    if deterministic_transform is not None:
        stages.append(CachedStage(deterministic_transform))
    if random_transform is not None:
        stages.append(RandomStage(random_transform))
    pipeline = Compose(stages) if stages else None
    data = list(items)
    if cache == "none":
        return MonaiDataset(data=data, transform=pipeline)
    if cache == "memory":
        return CacheDataset(
            data=data,
            transform=pipeline,
            cache_rate=1.0,
            num_workers=num_workers,
            progress=False,
            copy_cache=random_transform is not None,
        )
    if cache == "disk":
        if cache_dir is None:
            from medtl.paths import home_subdir

            cache_dir = home_subdir("cache") / "datasets"
        key = cache_key if cache_key is not None else describe_transform(deterministic_transform)
        from medtl.training.disk_cache import SafetensorsPersistentDataset

        return SafetensorsPersistentDataset(
            data=data,
            transform=pipeline,
            cache_dir=Path(cache_dir),
            hash_func=FileContentHasher(key),
        )
    raise ValueError(f"unknown cache mode {cache!r}")


def collate(batch: list[Any]) -> Any:
    """Collate samples: torch's ``default_collate``, or MONAI's where it is needed.

    MONAI's ``list_data_collate`` handles MetaTensors and the sample lists of patch
    transforms; plain samples take torch's path, as in a bare training loop. MONAI is never
    imported here for a plain batch: importing it costs seconds in every worker and DDP
    process.
    """
    if batch and _needs_monai_collate(batch[0]):
        from monai.data.utils import list_data_collate

        return list_data_collate(batch)
    return default_collate(batch)


def _needs_monai_collate(sample: Any) -> bool:
    """True for a list of samples (patch transforms) or a sample holding a MetaTensor."""
    if "monai" not in sys.modules:
        return False
    from monai.data import MetaTensor

    if isinstance(sample, list):
        return True
    if isinstance(sample, Mapping):
        values: Iterable[Any] = sample.values()
    elif isinstance(sample, tuple):
        values = sample
    else:
        values = (sample,)
    return any(isinstance(v, MetaTensor) for v in values)


def make_dataloader(
    dataset: Dataset,
    cfg: TrainingConfig,
    train: bool,
    distributed: bool | None = None,
    *,
    device_type: str = "cpu",
) -> DataLoader:
    """DataLoader with seeded batches, worker seeding, prefetch and pinning.

    Args:
        dataset: a map-style dataset.
        cfg: supplies batch sizes, workers, seed, shuffle and drop_last.
        train: training loader (a :class:`~medtl.training.sampling.GlobalBatchSampler`:
            shuffled per ``cfg.shuffle``, micro-batches of ``cfg.micro_batch_size(world)``,
            the same global batches for any process count) or evaluation loader (an
            unshuffled ``DistributedSampler``: in order, never drops).
        distributed: split across ``WORLD_SIZE`` processes; default: when ``WORLD_SIZE > 1``.
        device_type: ``"cuda"`` turns on pinned memory when ``cfg.pin_memory == "auto"``.

    Returns:
        The loader; call :func:`set_loader_epoch` before each epoch.
    """
    info = env_dist_info()
    if distributed is None:
        distributed = info.world_size > 1
    world, rank = (info.world_size, info.rank) if distributed else (1, 0)
    pin = device_type == "cuda" if cfg.pin_memory == "auto" else bool(cfg.pin_memory)
    workers = cfg.num_workers
    extra: dict[str, Any] = {}
    if workers > 0:
        extra = {
            "prefetch_factor": cfg.prefetch_factor,
            "persistent_workers": cfg.persistent_workers,
            "worker_init_fn": worker_init_fn,
        }
    common = {
        "num_workers": workers,
        "pin_memory": pin,
        "collate_fn": collate,
        "generator": make_generator(cfg.seed + rank),
        **extra,
    }
    if train:
        # One global order for any process count: the union of the processes' micro-batches
        # of a step is the batch one process would train on (medtl.training.sampling).
        batches = GlobalBatchSampler(
            len(dataset),  # type: ignore[arg-type]
            cfg.batch_size,
            world=world,
            rank=rank,
            grad_accum_steps=cfg.grad_accum_steps,
            shuffle=cfg.shuffle,
            seed=cfg.seed,
            drop_last=cfg.drop_last,
        )
        loader = DataLoader(dataset, batch_sampler=batches, **common)
    else:
        sampler = DistributedSampler(
            dataset, num_replicas=world, rank=rank, shuffle=False, seed=cfg.seed
        )
        batch = max(1, (cfg.val_batch_size or cfg.batch_size) // world)
        loader = DataLoader(dataset, batch_size=batch, sampler=sampler, **common)
    loader._medtl_seed = cfg.seed * 1_000_003 + rank  # type: ignore[attr-defined]
    return loader


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Make epoch ``epoch``'s sample order and augmentation seeds a function of (seed, epoch).

    Calls ``sampler.set_epoch`` (the shuffle order), reseeds the loader's generator (which
    seeds the workers) and, with ``num_workers=0``, reseeds MONAI randomizable transforms
    in the dataset, since no worker initialisation happens in that case.

    Args:
        loader: a loader from :func:`make_dataloader` (other loaders: sampler only).
        epoch: 0-based epoch.
    """
    sampler = loader.sampler
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    batch_sampler = getattr(loader, "batch_sampler", None)
    if hasattr(batch_sampler, "set_epoch"):  # GlobalBatchSampler, GroupedBatchSampler
        batch_sampler.set_epoch(epoch)
    if hasattr(loader.dataset, "set_epoch"):  # per-sample augmentation seeds (plain indices)
        loader.dataset.set_epoch(epoch)
    base = getattr(loader, "_medtl_seed", None)
    if base is None:
        return
    seed = (base + 7919 * (epoch + 1)) % (2**63 - 1)
    if loader.generator is not None:
        loader.generator.manual_seed(seed)
    if loader.num_workers == 0 and "monai" in sys.modules:  # only MONAI transforms need it
        seed_transforms(loader.dataset, seed)


def as_tensor(value: Any) -> torch.Tensor:
    """Convert a batch field (tensor, MetaTensor, array, list of numbers) to a plain tensor."""
    if isinstance(value, torch.Tensor):
        return value.as_tensor() if hasattr(value, "as_tensor") else value
    return torch.as_tensor(value)
