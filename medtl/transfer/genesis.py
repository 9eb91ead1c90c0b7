"""Models Genesis image-restoration transforms (Zhou et al., MICCAI 2019 / MedIA 2021).

Self-supervised pretraining learns to *restore* an image from a corrupted copy. The four
corruptions of Models Genesis, applied to images scaled to [0, 1], 2D or 3D:

* non-linear intensity transformation: a random monotone Bezier curve (appearance);
* local pixel shuffling: pixels shuffled inside small random blocks (texture);
* in-painting: random boxes replaced with noise (context, local);
* out-painting: everything outside a few random boxes replaced with noise (context, global).

Every function takes an explicit ``numpy.random.Generator`` so a sample can be replayed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GenesisConfig:
    """Probabilities of the corruptions (defaults from the Models Genesis paper)."""

    nonlinear_prob: float = 0.9
    local_shuffle_prob: float = 0.5
    paint_prob: float = 0.9
    inpaint_rate: float = 0.2  # share of paintings that are in-paintings (rest out-painting)
    shuffle_blocks: int = 200
    max_block_frac: float = 0.125


def bezier_curve(rng: np.random.Generator, n: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """A random monotone cubic Bezier curve through (0, 0) and (1, 1) (or reversed)."""
    p1, p2 = rng.random(2), rng.random(2)
    points = np.array([[0.0, 0.0], p1, p2, [1.0, 1.0]])
    t = np.linspace(0.0, 1.0, n)
    basis = np.stack([(1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3])
    curve = basis.T @ points
    xs, ys = curve[:, 0], curve[:, 1]
    order = np.argsort(xs)
    xs, ys = xs[order], ys[order]
    if rng.random() < 0.5:
        ys = ys[::-1].copy()
    return xs, ys


def nonlinear_intensity(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Map intensities through a random Bezier curve."""
    xs, ys = bezier_curve(rng)
    return np.interp(x, xs, ys).astype(np.float32)


def _block_size(shape: tuple[int, ...], rng: np.random.Generator, frac: float) -> list[int]:
    return [max(1, int(rng.integers(1, max(2, int(s * frac)) + 1))) for s in shape]


def local_pixel_shuffle(
    x: np.ndarray, rng: np.random.Generator, n_blocks: int = 200, max_frac: float = 0.125
) -> np.ndarray:
    """Shuffle pixels within ``n_blocks`` small random blocks (channel-first input)."""
    out = x.copy()
    spatial = x.shape[1:]
    for _ in range(n_blocks):
        size = _block_size(spatial, rng, max_frac)
        start = [int(rng.integers(0, s - b + 1)) for s, b in zip(spatial, size, strict=True)]
        sl = (slice(None), *(slice(a, a + b) for a, b in zip(start, size, strict=True)))
        block = out[sl].reshape(x.shape[0], -1)
        block = block[:, rng.permutation(block.shape[1])]
        out[sl] = block.reshape(out[sl].shape)
    return out


def _random_box(spatial: tuple[int, ...], rng: np.random.Generator, lo: float, hi: float):
    size = [int(rng.integers(max(1, int(s * lo)), max(2, int(s * hi)) + 1)) for s in spatial]
    size = [min(b, s) for b, s in zip(size, spatial, strict=True)]
    start = [int(rng.integers(0, s - b + 1)) for s, b in zip(spatial, size, strict=True)]
    return (slice(None), *(slice(a, a + b) for a, b in zip(start, size, strict=True)))


def inpaint(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Replace up to five random inner boxes with uniform noise."""
    out = x.copy()
    for _ in range(int(rng.integers(1, 6))):
        box = _random_box(x.shape[1:], rng, 1 / 8, 1 / 4)
        out[box] = rng.random(out[box].shape, dtype=np.float32)
    return out


def outpaint(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Keep up to five random boxes; replace everything else with uniform noise."""
    out = rng.random(x.shape, dtype=np.float32)
    for _ in range(int(rng.integers(1, 6))):
        box = _random_box(x.shape[1:], rng, 3 / 8, 5 / 8)
        out[box] = x[box]
    return out


def corrupt(
    x: np.ndarray, rng: np.random.Generator, cfg: GenesisConfig | None = None
) -> np.ndarray:
    """Apply the Models Genesis corruptions to a channel-first image in [0, 1]."""
    cfg = cfg or GenesisConfig()
    y = np.asarray(x, dtype=np.float32)
    if rng.random() < cfg.local_shuffle_prob:
        y = local_pixel_shuffle(y, rng, cfg.shuffle_blocks, cfg.max_block_frac)
    if rng.random() < cfg.nonlinear_prob:
        y = nonlinear_intensity(y, rng)
    if rng.random() < cfg.paint_prob:
        y = inpaint(y, rng) if rng.random() < cfg.inpaint_rate else outpaint(y, rng)
    return y.astype(np.float32)
