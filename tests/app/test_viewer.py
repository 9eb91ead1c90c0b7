"""The viewer's picture pipeline: a huge scan is subsampled before windowing and
colouring, so drawing it allocates about the display size, not the scan size (issue 15,
finding 1: a 20000 x 20000 image made the viewer build a 10.7 GB float RGB copy)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from app.components.viewer import _Display, base_window, render_plane, value_range
from medtl.io import Scan, Window


def _peak_mib(func) -> tuple[object, float]:
    tracemalloc.start()
    try:
        out = func()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out, peak / 2**20


@pytest.mark.parametrize("heat", [False, True])
def test_huge_image_is_drawn_in_display_sized_memory(heat) -> None:
    side = 12000  # 549 MiB as float32; np.zeros does not touch the pages
    image = np.zeros((side, side), dtype=np.float32)
    image[side // 4 : side // 2, side // 4 : side // 2] = 1000.0
    heatmap = np.zeros_like(image) if heat else None
    display = _Display(Window(center=500.0, width=1000.0), show_heat=heat, opacity=0.5)
    rgb, peak = _peak_mib(lambda: render_plane(image, (0.1, 0.1), display, heatmap))
    assert rgb.dtype == np.uint8 and rgb.shape == (640, 640, 3)
    # Bounded by the 1280-pixel working size (under 100 MiB with the heat overlay), not by
    # the image: a full-resolution float RGB copy would be 1.6 GiB, a float copy 549 MiB.
    assert peak < 128, f"drawing allocated {peak:.0f} MiB"
    assert rgb[240, 240].tolist() == [255, 255, 255]  # the bright square is there
    assert rgb[50, 50].tolist() == [0, 0, 0]


def test_zoom_crops_before_subsampling_keeps_detail() -> None:
    image = np.zeros((8000, 8000), dtype=np.float32)
    image[3990:4010, 3990:4010] = 1000.0  # 20 pixels: lost at 1/13 subsampling, kept zoomed
    window = Window(center=500.0, width=1000.0)
    whole = render_plane(image, (0.1, 0.1), _Display(window))
    zoomed, peak = _peak_mib(lambda: render_plane(image, (0.1, 0.1), _Display(window, zoom=4.0)))
    assert peak < 128
    bright_whole, bright_zoomed = (whole[..., 0] > 128).sum(), (zoomed[..., 0] > 128).sum()
    assert bright_zoomed >= 30 and bright_zoomed > 8 * bright_whole  # 4x zoom: 16x the area


def test_value_range_and_window_of_a_huge_volume_read_a_subsample() -> None:
    volume = np.zeros((300, 2048, 2048), dtype=np.float32)  # 4.7 GiB virtual, untouched
    volume[:, 1000:1100, 1000:1100] = 400.0
    (lo, hi), peak = _peak_mib(lambda: value_range(volume))
    assert (lo, hi) == (0.0, 400.0)
    assert peak < 64
    scan = Scan(volume, (1.0, 1.0, 1.0), np.eye(4), "MR", "nifti")
    window, peak = _peak_mib(lambda: base_window(scan))
    assert peak < 64 and window.width > 0


def test_single_slice_plane_of_a_thin_volume() -> None:
    volume = np.arange(2 * 1 * 64, dtype=np.float32).reshape(2, 1, 64)
    display = _Display(Window(center=64.0, width=128.0), view="coronal", index=0)
    rgb = render_plane(volume, (2.5, 0.7, 0.7), display)
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and max(rgb.shape[:2]) == 640
