"""Synthetic focal-opacity pretext task: self-supervised pretraining for lesion detection.

A source task for radiograph backbones that needs no labels: a synthetic focal opacity (a
2D blob with a smooth, possibly lobulated edge) is pasted into a copy of each image, and the
backbone learns to tell the copy from the original. The images' own labels are never read.

This is the synthetic-anomaly family of self-supervision (e.g. CutPaste, Li et al. 2021;
Natural Synthetic Anomalies, Schlüter et al. 2022): the network learns what a focal
density that does not belong to the anatomy looks like. The blobs are deliberately simple
and two-dimensional (no 3D nodule model, no projection physics), so the source task is
not the target simulator in disguise; it is stated in every package's model card.

Every image is shown twice per epoch, without and with a blob, in the same batch
(:class:`LesionPairs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class BlobSpec:
    """Ranges of the pasted opacities (sizes are fractions of the image side).

    Attributes:
        radius: radius range, fraction of the shorter image side.
        contrast: peak added intensity range, on images scaled to [0, 1].
        lobulation: maximum relative radius modulation (0 = round).
        region: ``(top, bottom, left, right)`` fractions bounding blob centres.
        dark_band: centres lie on pixels between these intensity quantiles of the region
            (aerated lung: neither bone or abdomen nor the air beside the body).
    """

    radius: tuple[float, float] = (0.025, 0.07)
    contrast: tuple[float, float] = (0.04, 0.25)
    lobulation: float = 0.3
    region: tuple[float, float, float, float] = (0.1, 0.75, 0.12, 0.88)
    dark_band: tuple[float, float] = (0.1, 0.4)


def paste_blob(
    image: np.ndarray, rng: np.random.Generator, spec: BlobSpec = BlobSpec()
) -> np.ndarray:
    """Return ``image`` (``(C, H, W)`` in [0, 1]) with one synthetic opacity added.

    The profile is a smooth dome, ``contrast * (1 - (d / r(theta))^2)^1.5`` inside the
    (lobulated) radius ``r(theta)``, added to every channel and clipped to [0, 1].
    """
    _, h, w = image.shape
    side = min(h, w)
    top, bottom, left, right = spec.region
    y0, y1 = int(top * h), max(int(top * h) + 1, int(bottom * h))
    x0, x1 = int(left * w), max(int(left * w) + 1, int(right * w))
    # Centres over aerated lung: in bone or the abdomen an added density is clipped away or
    # hidden (a "positive" without a visible blob teaches nothing), and the darkest pixels
    # are the air beside the body, where a blob would be trivial.
    window = image[0, y0:y1, x0:x1]
    low, high = np.quantile(window, spec.dark_band)
    dark = np.argwhere((window >= low) & (window <= high))
    cy, cx = dark[int(rng.integers(len(dark)))] + (y0, x0) + rng.uniform(-0.5, 0.5, 2)
    radius = rng.uniform(*spec.radius) * side
    contrast = rng.uniform(*spec.contrast)
    lobes = int(rng.integers(3, 7))
    depth = rng.uniform(0.0, spec.lobulation)
    phase = rng.uniform(0.0, 2.0 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    theta = np.arctan2(dy, dx)
    r_theta = radius * (1.0 + depth * np.sin(lobes * theta + phase))
    rel = np.sqrt(dy**2 + dx**2) / np.maximum(r_theta, 1e-3)
    dome = np.clip(1.0 - rel**2, 0.0, None) ** 1.5
    return np.clip(image + (contrast * dome)[None], 0.0, 1.0).astype(np.float32)


class LesionPairs(torch.utils.data.Dataset):
    """Twin samples: position ``2i`` is image ``i`` as it is (label 0), ``2i + 1`` the same
    image with a pasted blob (label 1).

    Trained with :func:`pair_groups` batches (both twins in one batch), the gradient is the
    difference the blob makes and nothing else; without the twin, a small CNN sits at chance
    for many epochs before it finds the blobs among ribs and vessels (measured here on the
    simulated radiographs). Each epoch draws new blobs: the ``k``-th access of position
    ``2i + 1`` uses the generator seeded by ``(seed, i, k)``, so runs replay exactly.

    Args:
        base: a dataset of preprocessed images in [0, 1] (dicts with ``image`` or tuples).
        seed: base seed of the draws.
        spec: the blob ranges.
        fixed: draw the same blob at every access (validation sets).
    """

    def __init__(
        self, base: Any, seed: int = 0, spec: BlobSpec = BlobSpec(), fixed: bool = False
    ) -> None:
        self.base = base
        self.seed = seed
        self.spec = spec
        self.fixed = fixed
        self._access = np.zeros(len(base), dtype=np.int64)

    def __len__(self) -> int:
        return 2 * len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        source, label = divmod(int(index), 2)
        item = self.base[source]
        image = item["image"] if isinstance(item, dict) else item[0]
        x = torch.as_tensor(image).float().clamp(0, 1).numpy()
        if label:
            k = 0 if self.fixed else int(self._access[source])
            self._access[source] += 1
            x = paste_blob(x, np.random.default_rng((self.seed, source, k)), self.spec)
        return {"image": torch.from_numpy(np.ascontiguousarray(x)), "label": label}


def pair_groups(n_images: int) -> list[list[int]]:
    """The twin groups of a :class:`LesionPairs` over ``n_images`` images."""
    return [[2 * i, 2 * i + 1] for i in range(n_images)]
