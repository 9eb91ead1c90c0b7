"""The image viewer: window/level presets and sliders, slice and plane for volumes, zoom,
and an optional heat-map overlay with opacity.

Display only: windowing comes from :mod:`medtl.io.display`; arrays are never modified.

Memory: a scan may be huge (a 20000 x 20000 radiograph is 1.6 GB of float32). The viewer
never builds a full-resolution copy: it takes a view of the plane, crops the zoom window
(a view), subsamples it to at most twice the display size, and only then windows and
colours it. The value range and the automatic window come from a subsample too.

The picture is sent inline (:func:`app.components.inline_image.show_png`, a PNG in a
``data:`` URI), not through Streamlit's ``/media/`` URLs, which any client could fetch
without a session.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from app.components.inline_image import show_png
from app.components.safe_text import md_escape

if TYPE_CHECKING:  # pragma: no cover
    from medtl.io import Scan, Window

VIEWS = ("axial", "coronal", "sagittal")
_DEFAULT = "default"
_DISPLAY_PX = 640  # longest side of the displayed image
_WORK_PX = 2 * _DISPLAY_PX  # planes are subsampled to at most this before windowing
_STATS_VOXELS = 4_000_000  # the value range and auto window are read from this many values


@dataclass(frozen=True)
class ViewState:
    """What the viewer shows, for forms that refer to it (e.g. the finding's slice).

    Attributes:
        view: ``axial``, ``coronal`` or ``sagittal`` (2D images: ``axial``).
        slice_index: index along the viewed axis (``None`` for 2D images).
    """

    view: str
    slice_index: int | None


@dataclass(frozen=True)
class _Display:
    """The viewer's control values of one rerun."""

    window: Window
    view: str = "axial"
    index: int | None = None
    zoom: float = 1.0
    cx: float = 0.5
    cy: float = 0.5
    show_heat: bool = False
    opacity: float = 0.0


def _plane(array: np.ndarray, view: str, index: int) -> np.ndarray:
    """One 2D plane (a view, no copy) of a ``(slices, rows, columns)`` volume, head up."""
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


def _subsample(array: np.ndarray, max_values: int) -> np.ndarray:
    """A strided view of ``array`` with at most about ``max_values`` elements."""
    if array.size <= max_values:
        return array
    step = math.ceil((array.size / max_values) ** (1.0 / array.ndim))
    return array[(slice(None, None, step),) * array.ndim]


def value_range(array: np.ndarray) -> tuple[float, float]:
    """Finite minimum and maximum, read from a subsample; a valid ``lo < hi`` pair."""
    sample = np.asarray(_subsample(array, _STATS_VOXELS), dtype=np.float32)
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def base_window(scan: Scan) -> Window:
    """The window to open with (like :func:`medtl.io.default_window`, on a subsample)."""
    from medtl.io import WINDOW_PRESETS
    from medtl.io.display import percentile_window

    if scan.window is not None and scan.window.width > 0:
        return scan.window
    if scan.modality == "CT":
        return WINDOW_PRESETS["mediastinum"]
    return percentile_window(np.asarray(_subsample(scan.array, _STATS_VOXELS)))


def compose(
    grey: np.ndarray,
    heat: np.ndarray | None = None,
    opacity: float = 0.4,
) -> np.ndarray:
    """Blend a uint8 grey image with a [0, 1] heat map (``inferno`` colours) into RGB.

    Args:
        grey: uint8 ``(rows, columns)`` (already at working size).
        heat: same shape, values in [0, 1], or ``None``.
        opacity: weight of the heat colours where the map is 1 (scaled by the map).

    Returns:
        uint8 ``(rows, columns, 3)``.
    """
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    if heat is not None and heat.shape == grey.shape:
        from matplotlib import colormaps

        h = np.clip(np.nan_to_num(heat.astype(np.float32)), 0.0, 1.0)
        # A 256-entry colour table indexed by 8-bit heat: no float64 RGBA image.
        table = (colormaps["inferno"](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0).astype(np.float32)
        colours = table[np.rint(h * 255.0).astype(np.uint8)]
        alpha = (opacity * h)[..., None]
        rgb = rgb * (1.0 - alpha) + colours * alpha
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _zoom(image: np.ndarray, factor: float, cx: float, cy: float) -> np.ndarray:
    """Crop a ``1/factor`` window centred at fractional ``(cx, cy)`` (a view)."""
    if factor <= 1.0:
        return image
    rows, cols = image.shape[:2]
    h, w = max(1, round(rows / factor)), max(1, round(cols / factor))
    top = int(np.clip(round(cy * rows - h / 2), 0, rows - h))
    left = int(np.clip(round(cx * cols - w / 2), 0, cols - w))
    return image[top : top + h, left : left + w]


def _shrink(image: np.ndarray) -> np.ndarray:
    """Subsample a 2D plane to at most :data:`_WORK_PX` on its long side (a view)."""
    step = max(1, math.ceil(max(image.shape[:2]) / _WORK_PX))
    return image[::step, ::step] if step > 1 else image


def _to_display(image: np.ndarray, pixel_aspect: float) -> np.ndarray:
    """Resize to about :data:`_DISPLAY_PX` on the long side, honouring the pixel aspect."""
    from PIL import Image

    rows, cols = image.shape[:2]
    height = rows * pixel_aspect
    scale = _DISPLAY_PX / max(height, cols)
    size = (max(1, round(cols * scale)), max(1, round(height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 2 else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(size, resample))


def render_plane(
    array: np.ndarray,
    spacing: tuple[float, ...],
    display: _Display,
    heatmap: np.ndarray | None = None,
) -> np.ndarray:
    """The displayed RGB picture of one plane: crop, subsample, window, colour, resize.

    Args:
        array: the scan array, 2D or ``(slices, rows, columns)``.
        spacing: the scan's spacing in mm, same axis order.
        display: window, plane, slice, zoom and heat settings.
        heatmap: heat map on the scan grid, or ``None``.

    Returns:
        uint8 ``(rows, columns, 3)`` of about :data:`_DISPLAY_PX` on the long side.
    """
    from medtl.io import apply_window

    def prepare(values: np.ndarray) -> np.ndarray:
        if values.ndim == 3:
            values = _plane(values, display.view, display.index or 0)
        return _shrink(_zoom(values, display.zoom, display.cx, display.cy))

    grey = apply_window(prepare(array), display.window)
    heat = None
    if display.show_heat and heatmap is not None and np.shape(heatmap) == array.shape:
        heat = np.asarray(prepare(np.asarray(heatmap)), dtype=np.float32)
    rgb = compose(grey, heat, display.opacity)
    row_mm, col_mm = _plane_spacing(tuple(spacing), display.view)
    aspect = row_mm / col_mm if row_mm > 0 and col_mm > 0 else 1.0
    return _to_display(rgb, float(np.clip(aspect, 0.1, 10.0)))


def window_presets(scan: Scan) -> list[str]:
    """The window presets offered for ``scan``: the CT (Hounsfield unit) presets for CT only.

    Radiographs, MR and photographs are in arbitrary units, where a HU window means
    nothing; they get the file's own or an automatic window.
    """
    from medtl.io import WINDOW_PRESETS

    if str(scan.modality or "").upper() == "CT":
        return [_DEFAULT, *WINDOW_PRESETS]
    return [_DEFAULT]


def _window_controls(scan: Scan, array: np.ndarray, key: str) -> Window:
    from medtl.io import WINDOW_PRESETS, Window

    lo, hi = value_range(array)
    base = base_window(scan)
    presets = window_presets(scan)
    preset = _DEFAULT
    if len(presets) > 1:
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
    w_min = max(span / 1000.0, 1e-3)
    center = st.slider(
        "Window level (centre)",
        float(c_min),
        float(c_max),
        float(window.center),
        key=f"{key}_center_{preset}",
    )
    width = st.slider(
        "Window width",
        float(w_min),
        float(w_max),
        float(min(max(window.width, w_min), w_max)),
        key=f"{key}_width_{preset}",
    )
    return Window(center=center, width=max(width, 1e-3), name=preset)


def _slice_controls(array: np.ndarray, key: str) -> tuple[str, int | None]:
    """The plane and slice of a volume (``("axial", None)`` for a 2D image)."""
    if array.ndim != 3:
        return "axial", None
    view = st.radio("Plane", VIEWS, horizontal=True, key=f"{key}_view", format_func=str.title)
    n = int(array.shape[_axis(view)])
    if n <= 1:  # a slider needs min < max: one slice is simply shown
        st.caption(f"{view.title()} plane: a single slice.")
        return view, 0
    number = st.slider(f"Slice (1-{n})", 1, n, (n + 1) // 2, key=f"{key}_slice_{view}")
    return view, int(number) - 1


def _zoom_and_heat_controls(key: str, has_heat: bool) -> tuple[float, float, float, bool, float]:
    zoom = st.slider(
        "Zoom", 1.0, 4.0, 1.0, 0.25, key=f"{key}_zoom", help="Magnify around the chosen centre."
    )
    cx, cy = 0.5, 0.5
    if zoom > 1.0:
        cx = st.slider("Zoom centre, left to right (%)", 0, 100, 50, key=f"{key}_cx") / 100
        cy = st.slider("Zoom centre, top to bottom (%)", 0, 100, 50, key=f"{key}_cy") / 100
    show_heat, opacity = False, 0.0
    if has_heat:
        show_heat = st.toggle(
            "Heat map",
            value=True,
            key=f"{key}_heat",
            help="Where the model looked (Grad-CAM), not a lesion outline.",
        )
        opacity = st.slider(
            "Heat-map opacity", 0.0, 1.0, 0.45, 0.05, key=f"{key}_opacity", disabled=not show_heat
        )
    return zoom, cx, cy, show_heat, opacity


def _controls(scan: Scan, array: np.ndarray, key: str, has_heat: bool) -> _Display:
    st.markdown("**Display**")
    window = _window_controls(scan, array, key)
    view, index = _slice_controls(array, key)
    zoom, cx, cy, show_heat, opacity = _zoom_and_heat_controls(key, has_heat)
    return _Display(window, view, index, zoom, cx, cy, show_heat, opacity)


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
        caption: caption under the image (plain text; escaped here).

    Returns:
        The view and slice shown.
    """
    array = np.asarray(scan.array)
    controls, picture = st.columns([1.4, 2.6])
    with controls:
        display = _controls(scan, array, key, heatmap is not None)
    shown = render_plane(array, tuple(scan.spacing), display, heatmap)
    if display.index is not None:
        where = f"{display.view} slice {display.index + 1} of {array.shape[_axis(display.view)]}"
    else:
        where = f"{array.shape[0]} x {array.shape[1]} pixels"
    win = display.window
    text = (
        md_escape(caption)
        if caption
        else (
            f"{md_escape(scan.modality)} · {where} · window {win.center:.0f}/{win.width:.0f} · "
            f"zoom {display.zoom:g}x"
        )
    )
    with picture:
        show_png(shown, alt="Scan image")
        st.caption(text)
    return ViewState(view=display.view, slice_index=display.index)
