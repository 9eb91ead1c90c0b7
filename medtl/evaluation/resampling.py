"""Patient-level, stratified bootstrap replicates (the resampling behind every CI in medtl).

The unit of resampling is the patient: a replicate draws patients with replacement and keeps
all of their images. Stratification draws patients separately within each label (a patient's
label is the highest label among their images: for binary data, positive when any image is),
so every replicate keeps the original case mix. A replicate is either per-image draw counts
(:func:`resample_weights`, for the vectorised weighted statistics of
:mod:`medtl.evaluation.bootstrap`) or the equivalent index array (:func:`resample_indices`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medtl.evaluation.metrics import check_binary

__all__ = ["resample_indices", "resample_weights"]

_CHUNK = 128
_BLOCK_WEIGHTS = 4_000_000


def _patients(y: NDArray[np.int64], patient_ids: ArrayLike | None) -> NDArray[np.int64]:
    if patient_ids is None:
        return np.arange(y.size)
    pid = np.asarray(patient_ids)
    if pid.shape != y.shape:
        raise ValueError(f"patient_ids has shape {pid.shape}, labels have {y.shape}")
    _, inverse = np.unique(pid, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64)


def resample_weights(
    y_true: ArrayLike,
    *,
    patient_ids: ArrayLike | None = None,
    n_resamples: int = 1000,
    stratified: bool = True,
    seed: int = 0,
    chunk: int | None = None,
) -> Iterator[NDArray[np.int64]]:
    """Yield bootstrap replicates as per-image draw counts, ``chunk`` replicates at a time.

    Args:
        y_true: 0/1 labels per image.
        patient_ids: patient identifier per image (any hashable dtype numpy can sort);
            ``None`` treats every image as its own patient.
        n_resamples: total number of replicates.
        stratified: resample positive and negative patients separately.
        seed: seed of ``numpy.random.default_rng``.
        chunk: replicates per yielded block; by default up to 128, fewer for large data so a
            block stays near 4 million weights. The replicates depend on the block size, so
            for given data and seed they are identical across calls with the default.

    Yields:
        Integer arrays of shape ``(k, n_images)``, ``k <= chunk``; row ``b`` says how many
        times each image appears in replicate ``b``.
    """
    y, _ = check_binary(y_true, np.zeros(np.asarray(y_true).shape[0]))
    yield from _draw(y, _patients(y, patient_ids), n_resamples, stratified, seed, chunk)


def _draw(
    y: NDArray[np.int64],
    patient: NDArray[np.int64],
    n_resamples: int,
    stratified: bool,
    seed: int,
    chunk: int | None,
) -> Iterator[NDArray[np.int64]]:
    """Blocks of per-image draw counts; patients are stratified by their highest label."""
    n_patients = int(patient.max()) + 1 if patient.size else 0
    patient_label = np.zeros(n_patients, dtype=np.int64)
    np.maximum.at(patient_label, patient, y)
    strata = (
        [np.flatnonzero(patient_label == c) for c in np.unique(patient_label)]
        if stratified
        else [np.arange(n_patients)]
    )
    strata = [s for s in strata if s.size]
    if chunk is None:
        chunk = max(1, min(_CHUNK, _BLOCK_WEIGHTS // max(y.size, 1)))
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_resamples:
        k = min(chunk, n_resamples - done)
        counts = np.zeros((k, n_patients), dtype=np.int64)
        for members in strata:
            m = members.size
            counts[:, members] = rng.multinomial(m, np.full(m, 1.0 / m), size=k)
        yield counts[:, patient]
        done += k


def resample_indices(
    labels: ArrayLike,
    *,
    patient_ids: ArrayLike | None = None,
    n_resamples: int = 1000,
    stratified: bool = True,
    seed: int = 0,
) -> Iterator[NDArray[np.int64]]:
    """Yield image indices of patient-level bootstrap replicates, one array per replicate.

    The same replicates as :func:`resample_weights` (same seed, same data), as index arrays
    for statistics that have no weighted form (e.g. macro AUROC). ``labels`` may hold any
    number of classes; with ``stratified`` patients are drawn within the stratum of their
    highest label, so every replicate keeps the case mix.

    Args:
        labels: integer class per image (>= 0).
        patient_ids: patient per image; ``None`` = one image per patient.
        n_resamples: replicates.
        stratified: stratify patients by label.
        seed: random seed.

    Yields:
        Index arrays into ``labels`` (patients drawn twice appear twice).
    """
    y = np.asarray(labels)
    if y.ndim != 1 or (y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0)):
        raise ValueError("labels must be a 1-D array of non-negative integers")
    y = y.astype(np.int64)
    base = np.arange(y.size)
    for block in _draw(y, _patients(y, patient_ids), n_resamples, stratified, seed, None):
        for w in block:
            yield np.repeat(base, w)
