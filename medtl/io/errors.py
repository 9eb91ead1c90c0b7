"""Errors raised by :mod:`medtl.io`.

Every failure to load a scan raises a subclass of :class:`ScanError` whose message a
clinician can act on (what is wrong, and what to do). Messages never contain patient
names, IDs or dates.
"""

from __future__ import annotations


class ScanError(Exception):
    """Base class: the scan could not be loaded. ``str(err)`` is the actionable message."""


class ScanNotFoundError(ScanError):
    """The path given does not exist or cannot be read."""


class UnsupportedFormatError(ScanError):
    """The bytes are not DICOM, NIfTI, PNG, JPEG or a zip of DICOM files."""


class CorruptScanError(ScanError):
    """The file is of a known format but damaged (truncated, wrong length, bad header)."""


class MissingDecoderError(ScanError):
    """The pixel data are compressed with a transfer syntax no installed decoder handles.

    The message names the package to install.
    """


class NonImageObjectError(ScanError):
    """A DICOM object without an image (SEG, SR, RTSTRUCT, presentation state, no pixel data)."""


class UnsupportedImageError(ScanError):
    """A valid image medtl refuses on purpose (e.g. 4D series, unsupported photometric)."""


class SeriesError(ScanError):
    """A set of DICOM files that does not form one usable series (several series, mixed
    orientations or sizes that cannot be stacked)."""


class ImageTooLargeError(ScanError):
    """The image exceeds the configured size limit (including decompression bombs)."""


__all__ = [
    "CorruptScanError",
    "ImageTooLargeError",
    "MissingDecoderError",
    "NonImageObjectError",
    "ScanError",
    "ScanNotFoundError",
    "SeriesError",
    "UnsupportedFormatError",
    "UnsupportedImageError",
]
