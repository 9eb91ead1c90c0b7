"""The :class:`Scan` object every loader returns.

Conventions (the contract the rest of medtl relies on):

* ``array`` is ``float32`` in modality units: Hounsfield units for CT (modality LUT /
  rescale slope and intercept applied), raw stored values otherwise. Polarity is
  MONOCHROME2: bigger values are brighter (MONOCHROME1 is inverted on load). The VOI LUT
  (window centre/width) is **not** applied; it is kept in :attr:`Scan.window` as the
  display default.
* 2D images have shape ``(rows, columns)``; volumes ``(slices, rows, columns)`` with
  slices sorted along the slice normal (ascending position along
  ``row_direction x column_direction``).
* ``spacing`` is in millimetres, in the same axis order as ``array``.
* ``affine`` is a 4x4 matrix mapping a homogeneous index in **array axis order**
  (``(slice, row, column, 1)`` for volumes, ``(row, column, 0, 1)`` for 2D images)
  to DICOM patient coordinates, **LPS**, in mm (x towards the patient's left,
  y towards posterior, z towards head). NIfTI files (RAS by convention) are converted
  to this LPS convention on load.
* ``meta`` holds only de-identified, non-PHI header fields (pseudonymous IDs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Window:
    """A display window (VOI LUT linear window): centre and width in modality units."""

    center: float
    width: float
    name: str = ""

    @property
    def bounds(self) -> tuple[float, float]:
        """Lower and upper value shown (values outside are clipped to black/white)."""
        return self.center - self.width / 2.0, self.center + self.width / 2.0


@dataclass
class Scan:
    """A loaded, de-identified image or volume.

    Attributes:
        array: float32 pixels in modality units, MONOCHROME2 polarity.
        spacing: voxel size in mm, one value per array axis.
        affine: 4x4 index-to-LPS-patient-coordinates matrix (see module docstring).
        modality: DICOM modality code (``CT``, ``MR``, ``CR``, ``DX``, ``OT``...).
        source_format: ``dicom``, ``nifti``, ``png`` or ``jpeg``.
        meta: de-identified header fields (never names, IDs or dates of patients).
        window: display default from the file (VOI LUT), or ``None``.
        warnings: human-readable problems found while loading (spacing gaps, tilt...).
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray
    modality: str
    source_format: str
    meta: dict[str, Any] = field(default_factory=dict)
    window: Window | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ndim(self) -> int:
        """2 for images, 3 for volumes."""
        return int(self.array.ndim)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of :attr:`array`."""
        return tuple(int(s) for s in self.array.shape)

    @property
    def is_volume(self) -> bool:
        """True for ``(slices, rows, columns)`` volumes."""
        return self.array.ndim == 3

    def intensity_range(self) -> tuple[float, float]:
        """Minimum and maximum of :attr:`array` (finite values)."""
        finite = self.array[np.isfinite(self.array)]
        if finite.size == 0:
            return (float("nan"), float("nan"))
        return float(finite.min()), float(finite.max())

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly description (what ``medtl inspect --json`` prints)."""
        lo, hi = self.intensity_range()
        return {
            "modality": self.modality,
            "format": self.source_format,
            "shape": list(self.shape),
            "spacing_mm": [round(float(s), 6) for s in self.spacing],
            "orientation": orientation_codes(self.affine, self.ndim),
            "intensity_range": [lo, hi],
            "window": None
            if self.window is None
            else {"center": self.window.center, "width": self.window.width},
            "warnings": list(self.warnings),
            "meta": dict(self.meta),
        }


_AXIS_LETTERS = (("R", "L"), ("A", "P"), ("F", "H"))


def orientation_codes(affine: np.ndarray, ndim: int = 3) -> str:
    """Return the LPS direction each array axis points to, e.g. ``"HPL"``.

    Each letter says towards which patient side the index of that axis increases
    (L/R left/right, P/A posterior/anterior, H/F head/feet), in array axis order.
    """
    letters = []
    for axis in range(ndim):
        vec = np.asarray(affine, dtype=float)[:3, axis]
        if not np.any(vec):
            letters.append("?")
            continue
        dominant = int(np.argmax(np.abs(vec)))
        letters.append(_AXIS_LETTERS[dominant][1 if vec[dominant] > 0 else 0])
    return "".join(letters)
