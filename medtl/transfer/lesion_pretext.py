"""Synthetic focal-opacity pretext task: self-supervised pretraining for lesion detection.

A source task for radiograph backbones that needs no labels: every time an image is drawn,
a synthetic focal opacity (a 2D blob with a smooth, possibly lobulated edge) is pasted into
it with probability one half, and the backbone learns to say whether one was pasted. The
images' own labels are never read.

This is the synthetic-anomaly family of self-supervision (e.g. CutPaste, Li et al. 2021;
Natural Synthetic Anomalies, Schlüter et al. 2022): the network learns what a focal
density that does not belong to the anatomy looks like. The blobs are deliberately simple
and two-dimensional (no 3D nodule model, no projection physics), so the source task is
not the target simulator in disguise; it is stated in every package's model card.

Each draw of sample ``i`` at its ``k``-th access uses a generator seeded by
``(seed, i, k)``, so runs replay exactly.
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
        probability: share of draws that get a blob.
        radius: radius range, fraction of the shorter image side.
        contrast: peak added intensity range, on images scaled to [0, 1].
        lobulation: maximum relative radius modulation (0 = round).
        region: ``(top, bottom, left, right)`` fractions bounding blob centres.
    """

    probability: float = 0.5
    radius: tuple[float, float] = (0.025, 0.07)
    contrast: tuple[float, float] = (0.04, 0.25)
    lobulation: float = 0.3
    region: tuple[float, float, float, float] = (0.1, 0.75, 0.12, 0.88)


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
    cy = rng.uniform(top * h, bottom * h)
    cx = rng.uniform(left * w, right * w)
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


class SyntheticLesions(torch.utils.data.Dataset):
    """``{"image", "label"}`` samples: label 1 when a blob was pasted, else 0.

    Args:
        base: a dataset of preprocessed images in [0, 1] (dicts with ``image`` or tuples).
        seed: base seed of the draws.
        spec: the blob ranges.
    """

    def __init__(self, base: Any, seed: int = 0, spec: BlobSpec = BlobSpec()) -> None:
        self.base = base
        self.seed = seed
        self.spec = spec
        self._access = np.zeros(len(base), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.base[index]
        image = item["image"] if isinstance(item, dict) else item[0]
        x = torch.as_tensor(image).float().clamp(0, 1).numpy()
        rng = np.random.default_rng((self.seed, int(index), int(self._access[index])))
        self._access[index] += 1
        label = int(rng.random() < self.spec.probability)
        if label:
            x = paste_blob(x, rng, self.spec)
        return {"image": torch.from_numpy(x), "label": label}


class FixedSyntheticLesions(torch.utils.data.Dataset):
    """A validation set: the same draws at every epoch (one draw per sample, seeded)."""

    def __init__(self, base: Any, seed: int = 0, spec: BlobSpec = BlobSpec()) -> None:
        self.inner = SyntheticLesions(base, seed, spec)

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> dict[str, Any]:
        self.inner._access[index] = 0
        return self.inner[index]
