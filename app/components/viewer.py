"""The image viewer: window/level presets and sliders, slice and plane for volumes, zoom,
and an optional heat-map overlay with opacity.

Display only: windowing comes from :mod:`medtl.io.display`; arrays are never modified.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

if TYPE_CHECKING:  # pragma: no cover
    from medtl.io import Scan

VIEWS = ("axial", "coronal", "sagittal")
_DEFAULT = "default"
_DISPLAY_PX = 640  # longest side of the displayed image


@dataclass(frozen=True)
class ViewState:
    """What the viewer shows, for forms that refer to it (e.g. the finding's slice).

    Attributes:
        view: ``axial``, ``coronal`` or ``sagittal`` (2D images: ``axial``).
        slice_index: index along the viewed axis (``None`` for 2D images).
    """

    view: str
    slice_index: int | None


def _plane(array: np.ndarray, view: str, index: int) -> np.ndarray:
    """One 2D plane of a ``(slices, rows, columns)`` volume, head up for coronal/sagittal."""
    if view == "coronal":
        return array[:, index, :][::-1]
    if view == "sagittal":
        return array[:, :, index][::-1]
    return array[index]


def _plane_spacing(spacing: tuple[float, ...], view: str) -> tuple[float, float]:
    if len(spacing) < 3:
        return float(spacing[0]), float(spacing[1])
    if view == "coronal":
        return float(spacing[0]), float(spacing[2])
    if view == "sagittal":
        return float(spacing[0]), float(spacing[1])
    return float(spacing[1]), float(spacing[2])


def _axis(view: str) -> int:
    return VIEWS.index(view)


def compose(
    grey: np.ndarray,
    heat: np.ndarray | None = None,
    opacity: float = 0.4,
) -> np.ndarray:
    """Blend a uint8 grey image with a [0, 1] heat map (``inferno`` colours) into RGB.

    Args:
        grey: uint8 ``(rows, columns)``.
        heat: same shape, values in [0, 1], or ``None``.
        opacity: weight of the heat colours where the map is 1 (scaled by the map).

    Returns:
        uint8 ``(rows, columns, 3)``.
    """
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    if heat is not None and heat.shape == grey.shape:
        from matplotlib import colormaps

        h = np.clip(np.nan_to_num(heat.astype(np.float32)), 0.0, 1.0)
        colours = colormaps["inferno"](h)[..., :3].astype(np.float32) * 255.0
        alpha = (opacity * h)[..., None]
        rgb = rgb * (1.0 - alpha) + colours * alpha
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _zoom(image: np.ndarray, factor: float, cx: float, cy: float) -> np.ndarray:
    """Crop a ``1/factor`` window centred at fractional ``(cx, cy)``."""
    if factor <= 1.0:
        return image
    rows, cols = image.shape[:2]
    h, w = max(1, round(rows / factor)), max(1, round(cols / factor))
    top = int(np.clip(round(cy * rows - h / 2), 0, rows - h))
    left = int(np.clip(round(cx * cols - w / 2), 0, cols - w))
    return image[top : top + h, left : left + w]


def _to_display(image: np.ndarray, pixel_aspect: float) -> np.ndarray:
    """Resize to about :data:`_DISPLAY_PX` on the long side, honouring the pixel aspect."""
    from PIL import Image

    rows, cols = image.shape[:2]
    height = rows * pixel_aspect
    scale = _DISPLAY_PX / max(height, cols)
    size = (max(1, round(cols * scale)), max(1, round(height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 2 else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(image).resize(size, resample))


def render_viewer(
    scan: Scan,
    key: str,
    heatmap: np.ndarray | None = None,
    caption: str | None = None,
) -> ViewState:
    """Show ``scan`` with its controls; ``heatmap`` (on the scan grid) can be overlaid.

    Args:
        scan: the de-identified scan.
        key: widget-key prefix (unique per viewer on a page).
        heatmap: Grad-CAM in [0, 1], same shape as ``scan.array``, or ``None``.
        caption: caption under the image.

    Returns:
        The view and slice shown.
    """
    from medtl.io import WINDOW_PRESETS, apply_window, default_window

    array = np.asarray(scan.array)
    lo, hi = scan.intensity_range()
    if not np.isfinite(lo) or hi <= lo:
        lo, hi = (
            (float(lo) if np.isfinite(lo) else 0.0),
            (float(lo) + 1.0 if np.isfinite(lo) else 1.0),
        )
    base = default_window(scan)
    controls, picture = st.columns([1.4, 2.6])
    with controls:
        st.markdown("**Display**")
        presets = [_DEFAULT, *WINDOW_PRESETS]
        preset = st.selectbox(
            "Window preset",
            presets,
            key=f"{key}_preset",
            format_func=lambda p: "Auto (file)" if p == _DEFAULT else p.title(),
            help="Lung, mediastinum, bone and brain are CT windows in Hounsfield units.",
        )
        window = base if preset == _DEFAULT else WINDOW_PRESETS[preset]
        span = max(hi - lo, 1e-3)
        c_min, c_max = min(lo, window.center) - span, max(hi, window.center) + span
        w_max = max(2.0 * span, window.width) * 2.0
        center = st.slider(
            "Window level (centre)",
            float(c_min),
            float(c_max),
            float(window.center),
            key=f"{key}_center_{preset}",
        )
        width = st.slider(
            "Window width",
            float(max(span / 1000.0, 1e-3)),
            float(w_max),
            float(min(max(window.width, span / 1000.0), w_max)),
            key=f"{key}_width_{preset}",
        )
        view, index = "axial", None
        if array.ndim == 3:
            view = st.radio(
                "Plane", VIEWS, horizontal=True, key=f"{key}_view", format_func=str.title
            )
            n = array.shape[_axis(view)]
            index = (
                st.slider(
                    f"Slice (1-{n})",
                    1,
                    max(n, 1),
                    (n + 1) // 2,
                    key=f"{key}_slice_{view}",
                    disabled=n <= 1,
                )
                - 1
            )
        zoom = st.slider(
            "Zoom", 1.0, 4.0, 1.0, 0.25, key=f"{key}_zoom", help="Magnify around the chosen centre."
        )
        cx, cy = 0.5, 0.5
        if zoom > 1.0:
            cx = st.slider("Zoom centre, left to right (%)", 0, 100, 50, key=f"{key}_cx") / 100
            cy = st.slider("Zoom centre, top to bottom (%)", 0, 100, 50, key=f"{key}_cy") / 100
        show_heat = False
        opacity = 0.0
        if heatmap is not None:
            show_heat = st.toggle(
                "Heat map",
                value=True,
                key=f"{key}_heat",
                help="Where the model looked (Grad-CAM), not a lesion outline.",
            )
            opacity = st.slider(
                "Heat-map opacity",
                0.0,
                1.0,
                0.45,
                0.05,
                key=f"{key}_opacity",
                disabled=not show_heat,
            )

    from medtl.io import Window

    win = Window(center=center, width=max(width, 1e-3), name=preset)
    if array.ndim == 3:
        plane = _plane(array, view, index or 0)
        heat = None
        if show_heat and heatmap is not None and np.shape(heatmap) == array.shape:
            heat = _plane(np.asarray(heatmap), view, index or 0)
        row_mm, col_mm = _plane_spacing(tuple(scan.spacing), view)
    else:
        plane = array
        heat = np.asarray(heatmap) if show_heat and heatmap is not None else None
        row_mm, col_mm = _plane_spacing(tuple(scan.spacing), view)
    rgb = compose(apply_window(plane, win), heat, opacity)
    rgb = _zoom(rgb, zoom, cx, cy)
    aspect = row_mm / col_mm if row_mm > 0 and col_mm > 0 else 1.0
    with picture:
        shown = _to_display(rgb, float(np.clip(aspect, 0.1, 10.0)))
        where = (
            f"{view} slice {index + 1} of {array.shape[_axis(view)]}"
            if index is not None
            else f"{array.shape[0]} x {array.shape[1]} pixels"
        )
        st.image(
            shown,
            caption=caption
            or f"{scan.modality} · {where} · window {center:.0f}/{width:.0f} · zoom {zoom:g}x",
            width="stretch",
        )
    return ViewState(view=view, slice_index=index)
