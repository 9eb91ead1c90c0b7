"""The ray-filter cache of the DRR renderer is owned by each CT source (no stale ids)."""

from __future__ import annotations

import pickle

import numpy as np
from scipy import ndimage

from medtl.data import drr


def _source(seed: int) -> drr.CTSource:
    shape = (6, 12, 6)
    lung, codes = np.zeros(shape, np.float32), np.zeros(shape, np.uint8)
    mu = np.random.default_rng(seed).random(shape, dtype=np.float32)  # allocated last
    return drr.CTSource(
        mu=mu, lung=lung, codes=codes,
        spacing=(1.0, 1.0, 1.0), center_mm=(3.0, 6.0, 3.0),
    )  # fmt: skip


def test_freed_source_never_serves_its_projection_to_a_new_one() -> None:
    # A freed array's id is reused by the next array of the same size: the old module
    # cache keyed on id(mu) then returned the previous volume's filtered attenuation.
    first = _source(0)
    old_id = id(first.mu)
    drr._ray_filtered(first, depth_mm=3.0)
    del first
    collided = None
    for seed in range(1, 200):
        candidate = _source(seed)
        if id(candidate.mu) == old_id:
            collided = candidate
            break
        del candidate
    assert collided is not None, "the scenario needs a reused id (CPython reuses them)"
    got = drr._ray_filtered(collided, depth_mm=3.0)
    want = ndimage.uniform_filter1d(collided.mu, 3, axis=1)
    assert np.array_equal(got, want)


def test_cache_is_reused_per_source_and_not_pickled() -> None:
    source = _source(3)
    a = drr._ray_filtered(source, depth_mm=3.0)
    assert drr._ray_filtered(source, depth_mm=3.0) is a
    assert drr._ray_filtered(source, depth_mm=5.0) is not a
    clone = pickle.loads(pickle.dumps(source))
    assert clone._derived == {} and np.array_equal(clone.mu, source.mu)
    assert np.array_equal(drr._ray_filtered(clone, depth_mm=3.0), a)
