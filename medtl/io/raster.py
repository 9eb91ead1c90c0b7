"""PNG and JPEG loading with Pillow.

Rules (see :mod:`medtl.io.scan` for the contract):

* **Size first**: the header is read (``Image.open``, lazy) and ``width x height`` is
  checked against ``max_pixels`` *before* any pixel is decoded. Pillow's own
  decompression-bomb error (and its warning, caught locally) also become
  :class:`~medtl.io.errors.ImageTooLargeError`, as do PNG text chunks that decompress
  too far.
* **Greyscale** 8-bit (``L``), 16-bit (``I;16``, ``I;16B``, ``I;16L``), 32-bit ``I`` and
  ``F`` are kept as stored values (float32). ``1`` (bilevel) becomes 0/255.
* **Colour** (``RGB``, ``RGBA``, ``P``, ``CMYK``, ``YCbCr``...): when all three channels
  are equal (a greyscale image saved as colour, common for radiographs) one channel is
  kept; otherwise the image becomes luminance ``0.299 R + 0.587 G + 0.114 B`` (ITU-R
  BT.601, as Pillow's ``convert("L")`` but without rounding) and a warning says so. An
  alpha channel is dropped (warning when it was not fully opaque).
* JPEG **EXIF orientation** is applied (``ImageOps.exif_transpose``), with a warning.
* **Spacing** is ``(1.0, 1.0)`` mm with a warning, unless the file states a physical
  resolution: a PNG ``pHYs`` chunk in pixels per metre, or a JPEG JFIF density in dots
  per inch/cm (or EXIF resolution). 72 and 96 dpi are ignored: they are software
  defaults for screens, not detector pixel sizes. ``meta["spacing_source"]`` records
  which rule applied (``"dpi"`` or ``"default"``).
* **Affine**: the 2D identity convention (rows along x, columns along y, scaled by the
  spacing); ``(row, column, 0, 1)`` maps to millimetres without patient orientation.
* **No text chunk, EXIF, XMP, ICC profile or comment is copied** into ``meta``: they may
  carry patient data.
* Animated PNG / multi-picture JPEG: the first frame is loaded, with a warning.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from medtl.io.errors import (
    CorruptScanError,
    ImageTooLargeError,
    UnsupportedFormatError,
    UnsupportedImageError,
)
from medtl.io.scan import Scan

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 100_000_000
#: DPI values written by software by default; they say nothing about the detector.
SCREEN_DEFAULT_DPI = frozenset({72.0, 96.0})
_FORMATS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg"}
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_GREY_MODES = {"L", "I;16", "I;16B", "I;16L", "I;16N", "I", "F"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


def _too_large(width: int, height: int, max_pixels: int) -> ImageTooLargeError:
    return ImageTooLargeError(
        f"The image is {width} x {height} pixels, above the limit of {max_pixels} pixels. "
        "Downsample it before uploading."
    )


def _open(source: Path | bytes, max_pixels: int) -> Image.Image:
    fp: Any = io.BytesIO(source) if isinstance(source, bytes) else source
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", Image.DecompressionBombWarning)
        try:
            img = Image.open(fp)
        except Image.DecompressionBombError as exc:
            raise ImageTooLargeError(
                "The image declares an enormous size (a possible decompression bomb) and was "
                "refused. Downsample it before uploading."
            ) from exc
        except UnidentifiedImageError as exc:
            raise UnsupportedFormatError(
                "This file is not a readable PNG or JPEG image. Export it again as PNG or JPEG."
            ) from exc
        except (OSError, SyntaxError, ValueError, EOFError, zlib.error) as exc:
            raise _corrupt(exc) from exc
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise _too_large(width, height, max_pixels)
    for caught_warning in caught:  # our own pixel limit governs, not Pillow's default
        if not issubclass(caught_warning.category, Image.DecompressionBombWarning):
            warnings.warn(caught_warning.message, caught_warning.category, stacklevel=3)
    return img


def _corrupt(exc: BaseException) -> CorruptScanError | ImageTooLargeError:
    if isinstance(exc, ValueError) and "Decompressed" in str(exc):
        return ImageTooLargeError(
            "A PNG metadata chunk decompresses to an excessive size and was refused."
        )
    return CorruptScanError(
        f"The image file is truncated or damaged ({type(exc).__name__}). Export or copy it again."
    )


def _physical_spacing(img: Image.Image) -> tuple[tuple[float, float], str]:
    dpi = img.info.get("dpi")
    try:
        dpi_x, dpi_y = (float(v) for v in dpi)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return (1.0, 1.0), "default"
    if not (np.isfinite(dpi_x) and np.isfinite(dpi_y)) or dpi_x <= 0 or dpi_y <= 0:
        return (1.0, 1.0), "default"
    if round(dpi_x, 1) in SCREEN_DEFAULT_DPI and round(dpi_y, 1) in SCREEN_DEFAULT_DPI:
        return (1.0, 1.0), "default"
    return (25.4 / dpi_y, 25.4 / dpi_x), "dpi"


def _to_grey(img: Image.Image, warns: list[str]) -> tuple[np.ndarray, int]:
    """Return (float32 array, bits per sample of the source)."""
    mode = img.mode
    if mode in _GREY_MODES:
        arr = np.asarray(img)
        bits = {"L": 8, "F": 32, "I": 32}.get(mode, 16)
        return arr.astype(np.float32), bits
    if mode == "1":
        return np.asarray(img.convert("L")).astype(np.float32), 1
    if mode in ("LA", "La"):
        alpha = np.asarray(img.getchannel("A"))
        if alpha.min() < 255:
            warns.append("The image's transparency (alpha channel) was ignored.")
        return np.asarray(img.getchannel("L")).astype(np.float32), 8
    if mode in ("I;16S", "I;32", "I;32B"):
        return np.asarray(img.convert("I")).astype(np.float32), 32
    if mode not in ("RGB", "RGBA"):
        try:
            img = img.convert("RGBA" if mode in _ALPHA_MODES or mode == "P" else "RGB")
        except (ValueError, OSError) as exc:
            raise UnsupportedImageError(
                f"Images of Pillow mode {mode!r} are not supported. Save it as greyscale PNG."
            ) from exc
    rgba = np.asarray(img)
    if rgba.shape[-1] == 4:
        if rgba[..., 3].min() < 255:
            warns.append("The image's transparency (alpha channel) was ignored.")
        rgba = rgba[..., :3]
    rgb = rgba.astype(np.float32)
    if np.array_equal(rgba[..., 0], rgba[..., 1]) and np.array_equal(rgba[..., 0], rgba[..., 2]):
        return rgb[..., 0], 8
    warns.append(
        "The image is in colour; it was converted to greyscale luminance "
        "(0.299 R + 0.587 G + 0.114 B). Upload the original greyscale image if available."
    )
    return rgb @ _LUMA, 8


_TRUNCATION_LOCK = threading.Lock()


@contextlib.contextmanager
def _strict_truncation():
    """Decode with Pillow's ``LOAD_TRUNCATED_IMAGES`` off, whatever another library set.

    WeasyPrint (the PDF report engine) switches that process-wide flag on at import, after
    which Pillow silently fills a truncated upload with grey. A damaged upload must be
    refused, so medtl turns the flag off while it decodes and restores it afterwards.
    """
    with _TRUNCATION_LOCK:
        previous = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


def load_raster(
    source: str | os.PathLike[str] | bytes,
    *,
    modality: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Scan:
    """Load a PNG or JPEG image as a 2D :class:`~medtl.io.scan.Scan`.

    Args:
        source: a path or the file's bytes.
        modality: DICOM modality to record (e.g. ``"CR"`` or ``"DX"`` for a radiograph);
            default ``"OT"`` (other).
        max_pixels: refuse images with more pixels than this (checked before decoding).

    Returns:
        A 2D scan: float32 ``(rows, columns)`` array of the stored grey values, spacing in
        mm per the module rules, identity-convention affine.

    Raises:
        ImageTooLargeError: above ``max_pixels`` or a decompression bomb.
        CorruptScanError: truncated or damaged file.
        UnsupportedFormatError: neither PNG nor JPEG.
        UnsupportedImageError: an image mode that cannot become greyscale.

    Example:
        >>> scan = load_raster("cxr.png", modality="DX")  # doctest: +SKIP
        >>> scan.shape  # doctest: +SKIP
        (2048, 2048)
    """
    data = bytes(source) if isinstance(source, bytes | bytearray | memoryview) else Path(source)
    img = _open(data, max_pixels)
    warns: list[str] = []
    try:
        fmt = _FORMATS.get(str(img.format))
        if fmt is None:
            raise UnsupportedFormatError(
                f"This is a {img.format} image; medtl reads PNG and JPEG (and DICOM, NIfTI). "
                "Save it as PNG."
            )
        frames = int(getattr(img, "n_frames", 1) or 1)
        if frames > 1:
            warns.append(f"The file holds {frames} frames; only the first was loaded.")
        original_mode = img.mode
        try:
            with _strict_truncation():
                img.load()
            orientation = img.getexif().get(0x0112, 1) if fmt == "jpeg" else 1
            if orientation not in (1, None):
                img = ImageOps.exif_transpose(img)
                warns.append("The JPEG's EXIF orientation was applied (the image was rotated).")
            spacing, spacing_source = _physical_spacing(img)
            array, bits = _to_grey(img, warns)
        except (OSError, SyntaxError, ValueError, EOFError, zlib.error) as exc:
            raise _corrupt(exc) from exc
    finally:
        img.close()
    if spacing_source == "default":
        warns.append(
            "The image file does not state a pixel size; a spacing of 1 mm per pixel is "
            "assumed. Physical measurements will be wrong."
        )
    affine = np.diag([spacing[0], spacing[1], 1.0, 1.0])
    meta: dict[str, Any] = {
        "format": fmt,
        "pillow_mode": original_mode,
        "bits_per_sample": bits,
        "spacing_source": spacing_source,
        "deidentified": True,
    }
    logger.debug("loaded %s image %s (mode %s)", fmt, array.shape, original_mode)
    return Scan(
        array=np.ascontiguousarray(array, dtype=np.float32),
        spacing=(float(spacing[0]), float(spacing[1])),
        affine=affine,
        modality=(modality or "OT").upper(),
        source_format=fmt,
        meta=meta,
        window=None,
        warnings=warns,
    )


__all__ = ["DEFAULT_MAX_PIXELS", "SCREEN_DEFAULT_DPI", "load_raster"]
