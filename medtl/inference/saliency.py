"""Grad-CAM saliency for medtl backbones, with MONAI's :class:`monai.visualize.GradCAM`.

Grad-CAM (Selvaraju et al. 2017) weights the channels of the last feature map by the mean
gradient of the class score with respect to them, sums, and keeps the positive part. The
target layer is the backbone's **feature map** (``forward_features(x)``: the last stage after
its final normalisation and activation, which is the output of ``model.gradcam_layer`` for
the ResNet and small-CNN families).

Why not ``GradCAM(model, target_layers=model.gradcam_layer)`` on the whole network: its
backward pass runs through every stage (the parameters require gradients), which costs about
as much again as the forward pass. Here the feature map is computed once without gradients,
and MONAI's GradCAM runs on a thin wrapper ``features -> forward_head`` whose input layer is
the target layer. The map is the same (a test checks it against the classic call), the
backward pass only crosses the pooling and the linear head, and the logits come out of the
same pass, so a prediction with a heat map costs one forward pass.

Binary models (one logit) explain the positive class; multi-class models explain the class
asked for, by default the top class.

Example:
    >>> heat = saliency_map(model, x, out_shape=scan.shape)  # doctest: +SKIP
    >>> heat.shape == scan.shape, float(heat.max()) <= 1.0  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "GradCamResult",
    "gradcam",
    "heatmap_on_grid",
    "normalize_map",
    "overlay_heatmap",
    "saliency_map",
    "upsample_map",
]

_TARGET = "features"


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _no_upsampling(_spatial: Sequence[int]):
    return _identity


def _hooks_class():
    from monai.visualize.class_activation_maps import ModelWithHooks

    class _PerSampleHooks(ModelWithHooks):
        """MONAI's hook wrapper, scoring each sample's own class in a batch.

        (``ModelWithHooks.class_score`` indexes ``logits[:, idx]``, which mixes samples when
        ``idx`` holds one class per sample.)
        """

        def class_score(self, logits: torch.Tensor, class_idx) -> torch.Tensor:
            idx = torch.as_tensor(class_idx, device=logits.device).reshape(-1, 1)
            return logits.gather(1, idx.expand(logits.shape[0], 1)).squeeze(1)

    return _PerSampleHooks


class _HeadOnFeatures(nn.Module):
    """``features -> model.forward_head``; ``self.features`` is Grad-CAM's target layer.

    The backbone is kept as a plain attribute (not a submodule) so that MONAI's hook wrapper,
    which toggles ``train()``/``eval()`` on the module it wraps, never touches its mode.
    """

    def __init__(self, forward_head) -> None:
        super().__init__()
        self.features = nn.Identity()
        self._forward_head = forward_head

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self._forward_head(self.features(feats))


@dataclass
class GradCamResult:
    """Logits and the raw Grad-CAM of one batch.

    Attributes:
        logits: ``(B, num_outputs)`` logits (the same as ``model(x)``).
        cam: ``(B, 1, *feature_spatial)`` non-negative Grad-CAM at the feature-map grid
            (not normalised, so maps of several windows of one volume stay comparable).
        class_idx: ``(B,)`` the class each map explains.
    """

    logits: torch.Tensor
    cam: torch.Tensor
    class_idx: torch.Tensor


def _head_parameters(model: nn.Module) -> list[torch.nn.Parameter]:
    head = getattr(model, "head", None)
    return list(head.parameters()) if isinstance(head, nn.Module) else []


def gradcam(
    model: nn.Module,
    x: torch.Tensor,
    class_idx: int | None = None,
    features: torch.Tensor | None = None,
) -> GradCamResult:
    """Run the model once and return its logits and Grad-CAM at the feature-map grid.

    Args:
        model: a backbone in eval mode (``forward_features`` / ``forward_head`` contract).
        x: ``(B, C, *spatial)`` preprocessed input.
        class_idx: class to explain; ``None``: the positive class of a one-logit model,
            else each sample's top class.
        features: ``model.forward_features(x)`` if already computed (then ``x`` is only
            used for its batch size).

    Returns:
        :class:`GradCamResult`.
    """
    from monai.visualize import GradCAM

    if features is None:
        with torch.no_grad():
            features = model.forward_features(x)  # type: ignore[operator]
    feats = features.detach().clone().requires_grad_(True)
    wrapper = _HeadOnFeatures(model.forward_head).eval()  # type: ignore[attr-defined]
    hooks = _hooks_class()(wrapper, _TARGET, register_forward=True, register_backward=True)
    cam = GradCAM(
        nn_module=hooks,
        target_layers=_TARGET,
        upsampler=_no_upsampling,
        postprocessing=_identity,
    )
    head_params = _head_parameters(model)
    saved_grads = [p.grad for p in head_params]
    try:
        with torch.enable_grad():
            logits, acts, grads = cam.nn_module(
                feats, class_idx=_resolve_class(model, class_idx, feats)
            )
            # The three lines of GradCAM.compute_map, on the stored hooks' tensors (calling
            # compute_map would run the head a second time just to discard the logits).
            act, grad = acts[-1], grads[-1]
            b, c, *spatial = grad.shape
            weights = grad.reshape(b, c, -1).mean(2).reshape(b, c, *[1] * len(spatial))
            raw = F.relu((weights * act).sum(1, keepdim=True))
    finally:
        for p, g in zip(head_params, saved_grads, strict=True):
            p.grad = g
    chosen = cam.nn_module.class_idx
    chosen_t = torch.as_tensor(chosen).reshape(-1).expand(logits.shape[0]).clone()
    return GradCamResult(logits=logits.detach(), cam=raw.detach(), class_idx=chosen_t)


def _resolve_class(model: nn.Module, class_idx: int | None, feats: torch.Tensor) -> int | None:
    if class_idx is not None:
        return int(class_idx)
    num_outputs = getattr(getattr(model, "config", None), "num_outputs", None)
    if num_outputs == 1:
        return 0
    return None  # MONAI picks each sample's argmax


def normalize_map(cam: torch.Tensor | np.ndarray, *, inplace: bool = False) -> np.ndarray:
    """Scale a map to [0, 1] (min to 0, max to 1); a constant map becomes all zeros.

    NaN and infinite values count as 0. Runs in torch (multi-threaded, in place on a float32
    tensor when ``inplace``), as the map of a large radiograph has millions of pixels.

    Args:
        cam: any-shaped map.
        inplace: reuse ``cam``'s memory when it is a float32 CPU tensor.

    Returns:
        float32 array of the same shape.
    """
    if isinstance(cam, torch.Tensor):
        t = cam.detach().to("cpu", torch.float32)
        if not inplace and t.data_ptr() == cam.data_ptr():
            t = t.clone()
    else:
        t = torch.from_numpy(np.array(cam, dtype=np.float32))
    if t.numel() == 0:
        return t.numpy()
    torch.nan_to_num_(t, nan=0.0, posinf=0.0, neginf=0.0)
    lo_t, hi_t = torch.aminmax(t)
    lo, hi = float(lo_t), float(hi_t)
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return t.zero_().numpy()
    return t.sub_(lo).mul_(1.0 / (hi - lo)).clamp_(0.0, 1.0).numpy()


def upsample_map(cam: torch.Tensor, out_shape: Sequence[int]) -> torch.Tensor:
    """Resize ``(B, 1, *spatial)`` maps to ``out_shape`` (bilinear / trilinear).

    Preprocessing only resizes (no crop or pad), so resizing the map to the scan's shape puts
    it on the scan grid.

    Args:
        cam: ``(B, 1, *spatial)`` maps.
        out_shape: target spatial shape (2 or 3 values).

    Returns:
        ``(B, 1, *out_shape)`` float32 maps.
    """
    size = tuple(int(s) for s in out_shape)
    if len(size) != cam.ndim - 2:
        raise ValueError(f"out_shape {size} does not match a {cam.ndim - 2}D map")
    if tuple(cam.shape[2:]) == size:
        return cam.float()
    mode = "bilinear" if len(size) == 2 else "trilinear"
    return F.interpolate(cam.float(), size=size, mode=mode, align_corners=False)


def heatmap_on_grid(
    cam: torch.Tensor, out_shape: Sequence[int]
) -> tuple[np.ndarray, list[int] | None]:
    """Normalise one raw map on its feature grid, then resize it onto ``out_shape``.

    Normalising the few feature cells first and resizing last touches each output pixel
    twice (resize, clamp) instead of six times: it matters for a 2000 x 2000 radiograph. A
    piecewise-linear resize never exceeds the grid's extremes, so the result stays in
    [0, 1]; its largest sampled value is 1 where an output pixel centre meets the top cell's
    centre, and a little less otherwise.

    Args:
        cam: ``(1, 1, *feature_spatial)`` raw map (e.g. :attr:`GradCamResult.cam`).
        out_shape: the scan's shape.

    Returns:
        ``(heat, peak)``: float32 map of shape ``out_shape``; ``peak`` the output index of
        the most salient cell's centre (``None`` for a flat map).
    """
    small = normalize_map(cam[0, 0])
    heat = upsample_map(torch.from_numpy(small)[None, None], out_shape)[0, 0].clamp_(0.0, 1.0)
    if not small.any():
        return heat.numpy(), None
    cell = np.unravel_index(int(np.argmax(small)), small.shape)
    peak = [
        int(min(max(round((i + 0.5) * n / m - 0.5), 0), n - 1))
        for i, n, m in zip(cell, out_shape, small.shape, strict=True)
    ]
    return heat.numpy(), peak


def saliency_map(
    model: nn.Module,
    x: torch.Tensor,
    class_idx: int | None = None,
    out_shape: Sequence[int] | None = None,
) -> np.ndarray:
    """Grad-CAM heat map of one image, in [0, 1], optionally on the scan grid.

    Args:
        model: a backbone in eval mode.
        x: ``(C, *spatial)`` or ``(1, C, *spatial)`` preprocessed input.
        class_idx: class to explain (default: positive class / top class).
        out_shape: spatial shape to resize to (e.g. ``scan.shape``); default the input's.

    Returns:
        float32 array of shape ``out_shape`` (or ``x``'s spatial shape) in [0, 1], about 1
        at the most salient location (see :func:`heatmap_on_grid`), all zeros when flat.
    """
    if x.ndim == model_ndim(model) + 1:
        x = x[None]
    if x.shape[0] != 1:
        raise ValueError("saliency_map takes one image; use gradcam() for batches")
    result = gradcam(model, x, class_idx=class_idx)
    shape = tuple(out_shape) if out_shape is not None else tuple(x.shape[2:])
    return heatmap_on_grid(result.cam, shape)[0]


def model_ndim(model: nn.Module) -> int:
    """Spatial dims of a backbone (from its config; 2 when unknown)."""
    return int(getattr(getattr(model, "config", None), "spatial_dims", 2))


def overlay_heatmap(
    grey: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4, cmap: str = "jet"
) -> np.ndarray:
    """Blend a heat map over a greyscale image (for display and ``--heatmap`` PNGs).

    Args:
        grey: ``(H, W)`` uint8 image (e.g. ``medtl.io.apply_window(scan.array, window)``).
        heatmap: ``(H, W)`` map in [0, 1] on the same grid.
        alpha: heat map opacity where the map is 1 (it fades out where the map is 0).
        cmap: matplotlib colormap name.

    Returns:
        ``(H, W, 3)`` uint8 RGB image.
    """
    from matplotlib import colormaps

    if grey.shape != heatmap.shape:
        raise ValueError(f"image {grey.shape} and heat map {heatmap.shape} differ in shape")
    heat = np.clip(np.nan_to_num(heatmap.astype(np.float32)), 0.0, 1.0)
    colour = colormaps[cmap](heat)[..., :3].astype(np.float32)
    base = np.repeat(grey.astype(np.float32)[..., None] / 255.0, 3, axis=2)
    weight = (alpha * heat)[..., None]
    return np.clip(255.0 * ((1.0 - weight) * base + weight * colour) + 0.5, 0, 255).astype(np.uint8)
