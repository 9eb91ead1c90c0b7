"""``predict`` on volumes by sliding windows (3D packages without a geometry preset).

The recorded intensity preprocessing is applied to the whole volume on its own grid
(optionally resampled to the predictor's ``volume_spacing_mm``), then MONAI's
``sliding_window_inference`` classifies windows of the training input size one by one.
Each window's Grad-CAM is blended into a volume heat map, its calibrated probabilities are
recorded as a region, and the volume result aggregates them: **binary**: the most
suspicious window (max probability) decides; **multi-class**: the mean of window
probabilities. A volume no larger than one window is one window, identical to the 2D path.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from medtl.inference.outputs import elapsed_ms, heat_info, refuse_invalid
from medtl.inference.result import PredictionResult, Timings, region_map, top_regions
from medtl.inference.saliency import gradcam, normalize_map, upsample_map

__all__ = ["predict_volume", "volume_input"]

_TOP_REGIONS = 5


def volume_input(predictor: Any, scan: Any) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Intensity-preprocessed ``(1, C, *grid)`` volume and its grid shape.

    Args:
        predictor: the :class:`~medtl.inference.Predictor`.
        scan: the loaded 3D scan.

    Returns:
        The network-ready volume and its ``(slices, rows, columns)`` grid.
    """
    from medtl.data.preprocessing import build_preprocessing

    array = np.asarray(scan.array, dtype=np.float32)
    grid = tuple(int(s) for s in array.shape)
    if predictor.volume_spacing_mm is not None:
        grid = tuple(
            max(1, round(n * s / t))
            for n, s, t in zip(array.shape, scan.spacing, predictor.volume_spacing_mm, strict=True)
        )
    # Same recorded transform, with the output size set to the volume's own grid: the
    # intensity step is exactly training's, the resize is identity (or the resampling).
    spec = predictor.spec.model_copy(update={"spatial_size": list(grid)})
    x = predictor._channels(build_preprocessing(spec)(array[None]))
    return x[None], grid


def _window_runner(
    predictor: Any,
    grid: tuple[int, ...],
    roi: tuple[int, ...],
    saliency: bool,
    windows: list[dict[str, Any]],
    clock: dict[str, float],
) -> Any:
    """The ``predictor`` callable for ``sliding_window_inference``: records each window."""
    model = predictor.model
    pad_front = [max(r - g, 0) // 2 for r, g in zip(roi, grid, strict=True)]

    def run_windows(win: torch.Tensor, slices: list[Any]) -> torch.Tensor:
        t = time.perf_counter()
        with torch.no_grad():
            feats = model.forward_features(win)
            logits = model.forward_head(feats)
        clock["forward"] += elapsed_ms(t)
        for i, sl in enumerate(slices):
            # MONAI pads volumes smaller than a window: window corners back to the grid
            box = [(s.start - p, s.stop - p) for s, p in zip(sl[2:], pad_front, strict=True)]
            pooled = model.head.pool(feats[i : i + 1])[0]
            windows.append(
                {
                    "start": [max(a, 0) for a, _ in box],
                    "stop": [min(b, g) for (_, b), g in zip(box, grid, strict=True)],
                    "logits": logits[i].detach().cpu().double().numpy(),
                    "pooled": pooled.detach().cpu().double().numpy(),
                }
            )
        if not saliency:
            return torch.zeros((win.shape[0], 1, *win.shape[2:]), device=win.device)
        t = time.perf_counter()
        target = 0 if predictor.num_outputs == 1 else None
        cam = gradcam(model, win, class_idx=target, features=feats).cam
        out = upsample_map(cam, win.shape[2:])
        clock["saliency"] += elapsed_ms(t)
        return out

    return run_windows


def _aggregate(
    predictor: Any,
    scan: Any,
    result: PredictionResult,
    windows: list[dict[str, Any]],
    grid: tuple[int, ...],
    roi: tuple[int, ...],
) -> bool:
    """Calibrate the windows, fill the volume result and its regions; False if refused."""
    logits = np.stack([w["logits"] for w in windows])
    if not np.isfinite(logits).all():
        refuse_invalid(result)
        return False
    binary = predictor.num_outputs == 1
    if binary:
        p = predictor.calibrate(logits[:, 0])
        probs = np.stack([1.0 - p, p], axis=1)
        volume_probs = probs[int(np.argmax(p))]
    else:
        probs = predictor.calibrate(logits)
        volume_probs = probs.mean(axis=0)
    predictor._fill(result, volume_probs, logits.mean(axis=0))
    result.n_windows = len(windows)
    labels = predictor.labels
    result.regions = top_regions(windows, probs, labels, grid, scan.shape, binary, _TOP_REGIONS)
    result.region_map = region_map(windows, probs, grid, roi, binary)
    if len(windows) > 1 and binary:
        result.warnings.append(
            f"The volume was read as {len(windows)} overlapping windows; the operating "
            "point's sensitivity and specificity were measured on single windows."
        )
    return True


def predict_volume(
    predictor: Any, scan: Any, result: PredictionResult, timings: Timings, saliency: bool
) -> None:
    """Fill ``result`` from sliding windows over the volume.

    Args:
        predictor: the :class:`~medtl.inference.Predictor` (model, spec, guard, calibration).
        scan: the loaded 3D scan.
        result: the result to fill.
        timings: its timings.
        saliency: compute the blended Grad-CAM volume.
    """
    from monai.inferers import sliding_window_inference

    t0 = time.perf_counter()
    x, grid = volume_input(predictor, scan)
    timings.preprocess = elapsed_ms(t0)
    roi = tuple(int(s) for s in predictor.spec.spatial_size)
    windows: list[dict[str, Any]] = []
    clock = {"forward": 0.0, "saliency": 0.0}
    heat = sliding_window_inference(
        x,
        roi_size=roi,
        sw_batch_size=predictor.sw_batch_size,
        predictor=_window_runner(predictor, grid, roi, saliency, windows, clock),
        overlap=predictor.overlap,
        mode="gaussian",
        with_coord=True,
    )
    timings.forward = clock["forward"]
    t0 = time.perf_counter()
    if not _aggregate(predictor, scan, result, windows, grid, roi):
        return
    timings.calibration = elapsed_ms(t0)
    t0 = time.perf_counter()
    pooled = np.stack([w["pooled"] for w in windows])
    result.domain = result.domain.merge(predictor.guard.check_features(pooled, reduce="median"))
    timings.domain += elapsed_ms(t0)
    if saliency:
        t0 = time.perf_counter()
        cam_vol = upsample_map(heat[:, :1].float(), tuple(scan.shape))
        result.heatmap = normalize_map(cam_vol[0, 0], inplace=True)
        target = 0 if predictor.num_outputs == 1 else None
        result.heatmap_info = heat_info(result, predictor.labels, target)
        if target is None:
            result.heatmap_info.target_class = "top class of each window"
        timings.saliency = clock["saliency"] + elapsed_ms(t0)
