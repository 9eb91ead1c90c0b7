"""Errors raised by :mod:`medtl.io`.

Every failure to load a scan raises a subclass of :class:`ScanError` whose message a
clinician can act on (what is wrong, and what to do). Messages never contain patient
names, IDs or dates.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import traceback
import zlib


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


# ------------------------------------------------------------------ decoder failures vs bugs

#: Exception types that parsers and decoders raise on damaged input wherever they are raised
#: (``int("1x")`` on a damaged header value, a numpy reshape of a short buffer, a truncated
#: zlib stream, an unpack past the end of the data).
DATA_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,  # includes UnicodeDecodeError
    EOFError,
    OverflowError,
    struct.error,
    zlib.error,
)

#: Top-level packages whose own code reads untrusted bytes: any exception raised inside them
#: while parsing a file counts as a failure of that file (pydicom raises AttributeError,
#: KeyError, TypeError or RuntimeError on some damaged inputs; pylibjpeg, openjpeg and GDCM
#: raise RuntimeError; the Rust RLE decoder panics).
DECODER_PACKAGES = frozenset({
    "pydicom", "numpy", "pylibjpeg", "openjpeg", "rle", "libjpeg", "jpeg_ls", "pyjpegls",
    "_CharLS", "gdcm", "_gdcmswig", "PIL", "nibabel", "zipfile", "gzip", "zlib",
    "_compression", "struct", "codecs", "encodings",
})  # fmt: skip

_LOGGED = "_medtl_bug_logged"


def _innermost_module(exc: BaseException) -> str:
    tb = exc.__traceback__
    name = ""
    while tb is not None:
        name = str(tb.tb_frame.f_globals.get("__name__", ""))
        tb = tb.tb_next
    return name


def is_decoder_failure(exc: BaseException) -> bool:
    """True when ``exc`` means "this file cannot be decoded" rather than a bug in medtl.

    Damaged input shows up as one of :data:`DATA_ERRORS`, as an exception of pydicom, or as
    any exception raised inside a decoder or parser package (:data:`DECODER_PACKAGES`).
    Anything else, e.g. a ``TypeError`` or ``RuntimeError`` raised by medtl's own code, is
    a bug and must propagate.

    Args:
        exc: the exception caught around parsing or decoding.

    Returns:
        Whether to report it as a damaged file.
    """
    if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit | MemoryError):
        return False
    if isinstance(exc, DATA_ERRORS):
        return True
    kind = type(exc)
    if kind.__name__ == "PanicException" or kind.__module__.split(".")[0] == "pydicom":
        return True  # pyo3 (Rust decoder) panic; InvalidDicomError and friends
    return _innermost_module(exc).split(".")[0] in DECODER_PACKAGES


def phi_free_traceback(exc: BaseException) -> str:
    """The code locations of ``exc``'s traceback (file, line, function, source line), without
    the exception message or any local values."""
    return "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__))).rstrip()


def log_unexpected(logger: logging.Logger, exc: BaseException, during: str) -> None:
    """Log an unexpected exception (a bug) once, with its traceback but without its message.

    The message of an exception raised while reading a scan may quote header values or a
    file name (PHI), so only the exception type and the code locations are logged.

    Args:
        logger: the module logger.
        exc: the exception about to propagate.
        during: what medtl was doing (no file names, no header values).
    """
    if getattr(exc, _LOGGED, False):
        return
    with contextlib.suppress(AttributeError, TypeError):  # exceptions with __slots__
        setattr(exc, _LOGGED, True)
    frames = phi_free_traceback(exc)
    logger.error(
        "internal error while %s: %s (a bug in medtl, not a damaged file; message withheld)\n"
        "Traceback (most recent call last):\n%s",
        during,
        type(exc).__qualname__,
        frames,
    )


__all__ = [
    "DATA_ERRORS",
    "DECODER_PACKAGES",
    "CorruptScanError",
    "ImageTooLargeError",
    "MissingDecoderError",
    "NonImageObjectError",
    "ScanError",
    "ScanNotFoundError",
    "SeriesError",
    "UnsupportedFormatError",
    "UnsupportedImageError",
    "is_decoder_failure",
    "log_unexpected",
    "phi_free_traceback",
]
