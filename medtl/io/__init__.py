"""Scan loading, format sniffing, the DICOM pipeline and de-identification.

Public API::

    from medtl.io import load_scan, Scan, ScanError, deidentify

``medtl.io`` knows nothing of models or apps. Names are resolved lazily so that importing
:mod:`medtl.io` does no work and pulls in pydicom/nibabel only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medtl._lazy import lazy_exports
from medtl.io.errors import (
    CorruptScanError,
    ImageTooLargeError,
    MissingDecoderError,
    NonImageObjectError,
    ScanError,
    ScanNotFoundError,
    SeriesError,
    UnsupportedFormatError,
    UnsupportedImageError,
)
from medtl.io.scan import Scan, Window

if TYPE_CHECKING:  # pragma: no cover
    from medtl.io.deid import deidentify, pseudonym, safe_meta, write_deidentified
    from medtl.io.display import WINDOW_PRESETS, apply_window, default_window, window_preset
    from medtl.io.limits import DecodeLimits
    from medtl.io.load import load_scan
    from medtl.io.nifti import load_nifti
    from medtl.io.raster import load_raster
    from medtl.io.series import load_dicom
    from medtl.io.sniff import Format, sniff

_LAZY = {
    "load_scan": "medtl.io.load",
    "DecodeLimits": "medtl.io.limits",
    "deidentify": "medtl.io.deid",
    "write_deidentified": "medtl.io.deid",
    "pseudonym": "medtl.io.deid",
    "safe_meta": "medtl.io.deid",
    "load_nifti": "medtl.io.nifti",
    "load_raster": "medtl.io.raster",
    "load_dicom": "medtl.io.series",
    "sniff": "medtl.io.sniff",
    "Format": "medtl.io.sniff",
    "WINDOW_PRESETS": "medtl.io.display",
    "apply_window": "medtl.io.display",
    "default_window": "medtl.io.display",
    "window_preset": "medtl.io.display",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


__all__ = [
    "WINDOW_PRESETS",
    "CorruptScanError",
    "DecodeLimits",
    "Format",
    "ImageTooLargeError",
    "MissingDecoderError",
    "NonImageObjectError",
    "Scan",
    "ScanError",
    "ScanNotFoundError",
    "SeriesError",
    "UnsupportedFormatError",
    "UnsupportedImageError",
    "Window",
    "apply_window",
    "default_window",
    "deidentify",
    "load_dicom",
    "load_nifti",
    "load_raster",
    "load_scan",
    "pseudonym",
    "safe_meta",
    "sniff",
    "window_preset",
    "write_deidentified",
]
