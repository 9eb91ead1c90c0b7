"""Deterministic seeding: global RNGs, DataLoader workers, sampler generators, RNG snapshots.

A run is replayable when every random draw comes from a seeded source: the Python,
NumPy and torch global generators (:func:`seed_everything`), one ``torch.Generator`` per
DataLoader (:func:`make_generator`), per-worker seeds derived from it
(:func:`worker_init_fn`) and per-sample augmentation seeds (:func:`sample_seed`).
:func:`rng_state` / :func:`set_rng_state` snapshot and restore the global generators so a
resumed run continues the same random streams.
"""

from __future__ import annotations

import os
import random
import sys
from typing import Any

import numpy as np
import torch

_MAX_SEED = 2**32


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device).

    Args:
        seed: the seed; NumPy receives ``seed % 2**32``.
        deterministic: also ask torch for deterministic kernels
            (``torch.use_deterministic_algorithms(True, warn_only=True)`` and
            cuDNN deterministic, benchmark off). This is process-wide.
    """
    random.seed(seed)
    np.random.seed(seed % _MAX_SEED)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        # cuBLAS needs this for deterministic GEMMs; setdefault keeps a user's choice.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def make_generator(seed: int) -> torch.Generator:
    """Return a CPU ``torch.Generator`` seeded with ``seed`` (for samplers and DataLoaders)."""
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of one sample in one epoch (a 32-bit integer).

    A function of ``(seed, epoch, index)`` only: which process or DataLoader worker loads
    the sample, and in what order, does not change its augmentation.

    Example:
        >>> sample_seed(0, 1, 5) == sample_seed(0, 1, 5) != sample_seed(0, 2, 5)
        True
    """
    state = np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(1)
    return int(state[0])


def worker_init_fn(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed a worker's Python, NumPy and MONAI transforms.

    torch seeds each worker with ``base_seed + worker_id`` where ``base_seed`` comes from the
    DataLoader's generator; this function derives the other generators from that seed, so
    augmentations differ between workers and epochs but replay exactly for the same seed.

    Args:
        worker_id: index of the worker (unused: the seed already includes it).
    """
    del worker_id
    info = torch.utils.data.get_worker_info()
    seed = torch.initial_seed() if info is None else info.seed
    random.seed(seed)
    np.random.seed(seed % _MAX_SEED)
    if info is not None and "monai" in sys.modules:  # no MONAI loaded: no MONAI transforms
        seed_transforms(info.dataset, seed)


def seed_transforms(dataset: Any, seed: int) -> None:
    """Reset the random state of every MONAI ``Randomizable`` transform held by ``dataset``.

    Args:
        dataset: a dataset (MONAI datasets keep their transforms as attributes).
        seed: base seed; each randomizable transform gets its own derived seed.
    """
    from monai.data.utils import set_rnd  # MONAI walks the object graph for Randomizables

    set_rnd(dataset, int(seed) % _MAX_SEED)


def rng_state() -> dict[str, Any]:
    """Snapshot the global RNGs as values ``torch.load(weights_only=True)`` can read.

    Returns:
        ``{"python": [...], "numpy": [...], "torch": ByteTensor, "cuda": [ByteTensor, ...]}``.
    """
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [int(version), [int(v) for v in internal], gauss],
        "numpy": [str(name), keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore global RNGs from :func:`rng_state` output.

    Args:
        state: the snapshot; CUDA states are restored only when the device count matches.
    """
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
