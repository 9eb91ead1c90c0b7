"""``predict`` for packages whose preprocessing has a geometry (the ``merlin`` preset).

Such a package (a fine-tuned astra-ct, for instance) was trained on whole scans reoriented
to RAS, resampled to 1.5 x 1.5 x 3 mm and padded / centre-cropped to one input, so it
predicts the same way: one forward pass on
:func:`medtl.data.scan_input.scan_to_input`, exactly what training and ``medtl embed`` use,
instead of sliding windows over medtl's own grid. The Grad-CAM map lives on that RAS input
grid; it is resampled back onto the scan's ``(slices, rows, columns)`` grid through the two
affines, so the heat map overlays the scan as for every other package (zero outside the
cropped field of view).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

__all__ = ["predict_whole_scan"]


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def _input_and_affine(scan: Any, spec: Any) -> tuple[torch.Tensor, np.ndarray | None]:
    from medtl.data.preprocessing import build_preprocessing
    from medtl.data.scan_input import input_grid_affine, spatial_resample

    grid, grid_affine = spatial_resample(scan, spec, with_affine=True)
    x = build_preprocessing(spec)(grid)
    affine = (
        input_grid_affine(grid_affine, tuple(grid.shape[1:]), spec)
        if spec.fit == "pad_crop"
        else None
    )
    return x, affine


def predict_whole_scan(
    predictor: Any, scan: Any, result: Any, timings: Any, saliency: bool
) -> None:
    """Fill ``result`` (probabilities, domain features, heat map) from one whole-scan pass.

    Args:
        predictor: the :class:`~medtl.inference.Predictor` (model, spec, guard, calibration).
        scan: the loaded 3D scan.
        result: the :class:`~medtl.inference.result.PredictionResult` to fill.
        timings: its :class:`~medtl.inference.result.Timings`.
        saliency: compute the Grad-CAM heat map.
    """
    from medtl.data.scan_input import to_scan_grid
    from medtl.inference.outputs import heat_info
    from medtl.inference.saliency import gradcam, normalize_map, upsample_map

    model = predictor.model
    t0 = time.perf_counter()
    x, affine = _input_and_affine(scan, predictor.spec)
    x = predictor._channels(x)[None]
    timings.preprocess = _ms(t0)
    t0 = time.perf_counter()
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model.forward_head(feats)
    timings.forward = _ms(t0)
    predictor._probabilities(result, logits.detach().cpu().double().numpy(), timings)
    if result.probabilities is None:
        return
    t0 = time.perf_counter()
    pooled = model.head.pool(feats).detach().cpu().double().numpy()
    result.domain = result.domain.merge(predictor.guard.check_features(pooled))
    timings.domain += _ms(t0)
    if not saliency or affine is None:
        return
    t0 = time.perf_counter()
    target = 0 if predictor.num_outputs == 1 else result.top_class_index
    cam = gradcam(model, x, class_idx=target, features=feats).cam
    on_input = upsample_map(cam.float(), x.shape[2:])[0, 0].cpu().numpy()
    result.heatmap = normalize_map(to_scan_grid(on_input, affine, scan), inplace=True)
    result.heatmap_info = heat_info(result, predictor.labels, target)
    timings.saliency = _ms(t0)
