"""Small pieces every predict path shares: the heat-map summary and the invalid-values refusal.

Used by :class:`~medtl.inference.Predictor` (2D), :mod:`medtl.inference.windows` (sliding
windows over volumes) and :mod:`medtl.inference.whole_scan` (one pass on a reoriented,
resampled scan).
"""

from __future__ import annotations

import time

import numpy as np

from medtl.inference.result import HeatmapInfo, PredictionResult

__all__ = ["elapsed_ms", "heat_info", "refuse_invalid"]


def elapsed_ms(start: float) -> float:
    """Milliseconds since ``start`` (a :func:`time.perf_counter` reading)."""
    return (time.perf_counter() - start) * 1000.0


def refuse_invalid(result: PredictionResult) -> None:
    """Refuse a result whose logits are not finite (NaN / inf pixels reached the network)."""
    result.domain.add(
        "values",
        "refuse",
        "The image contains invalid pixel values (not numbers), so the model cannot read it.",
    )


def heat_info(
    result: PredictionResult,
    labels: list[str],
    target: int | None,
    peak: list[int] | str | None = "search",
) -> HeatmapInfo:
    """What the result's heat map shows: method, target class, shape and peak voxel.

    Args:
        result: a result with ``heatmap`` set.
        labels: the predictor's class names.
        target: the Grad-CAM class index (``None``: each window's top class).
        peak: the peak index if known, ``"search"`` to find it in the map.

    Returns:
        The heat-map summary.
    """
    heat = result.heatmap
    assert heat is not None
    if peak == "search":
        flat = not heat.size or float(heat.max()) <= 0
        peak = (
            None if flat else [int(i) for i in np.unravel_index(int(np.argmax(heat)), heat.shape)]
        )
    if target is None:
        name = result.top_class
    else:
        name = labels[1] if result.kind == "binary" else labels[target]
    return HeatmapInfo(method="gradcam", target_class=name, shape=list(heat.shape), peak_index=peak)
