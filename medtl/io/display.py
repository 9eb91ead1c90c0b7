"""Display helpers: window presets and windowing for viewers and reports.

Windowing is a *display* step. :class:`~medtl.io.scan.Scan` arrays stay in modality units;
these helpers map them to 8-bit grey levels for screens, thumbnails and overlays.
"""

from __future__ import annotations

import numpy as np

from medtl.io.scan import Scan, Window

#: Standard CT windows (centre/width in HU), as radiologists use them.
WINDOW_PRESETS: dict[str, Window] = {
    "lung": Window(center=-600.0, width=1500.0, name="lung"),
    "mediastinum": Window(center=40.0, width=400.0, name="mediastinum"),
    "bone": Window(center=480.0, width=2500.0, name="bone"),
    "brain": Window(center=40.0, width=80.0, name="brain"),
}


def window_preset(name: str) -> Window:
    """Return a named preset (``lung``, ``mediastinum``, ``bone``, ``brain``).

    Raises:
        KeyError: with the list of known presets.
    """
    try:
        return WINDOW_PRESETS[name.lower()]
    except KeyError:
        known = ", ".join(sorted(WINDOW_PRESETS))
        raise KeyError(f"Unknown window preset {name!r}; choose one of: {known}.") from None


def percentile_window(array: np.ndarray, low: float = 0.5, high: float = 99.5) -> Window:
    """A window spanning the given percentiles of the finite values (for MR, CR, PNG)."""
    finite = np.asarray(array)[np.isfinite(array)]
    if finite.size == 0:
        return Window(center=0.0, width=1.0, name="auto")
    lo, hi = np.percentile(finite, [low, high])
    width = max(float(hi - lo), 1e-6)
    return Window(center=float(lo + hi) / 2.0, width=width, name="auto")


def default_window(scan: Scan) -> Window:
    """The window a viewer should open with.

    The file's own VOI window when present, the mediastinum preset for CT, otherwise a
    robust percentile window.
    """
    if scan.window is not None and scan.window.width > 0:
        return scan.window
    if scan.modality == "CT":
        return WINDOW_PRESETS["mediastinum"]
    return percentile_window(scan.array)


def apply_window(array: np.ndarray, window: Window) -> np.ndarray:
    """Map values to uint8 grey levels with a linear window (DICOM PS3.3 C.11.2.1.2 style).

    Args:
        array: values in modality units.
        window: centre and width (width must be > 0).

    Returns:
        uint8 array of the same shape; values below the window are 0, above it 255.
    """
    if window.width <= 0:
        raise ValueError("Window width must be positive.")
    lo, hi = window.bounds
    scaled = (np.asarray(array, dtype=np.float32) - lo) / (hi - lo)
    return np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)
