"""Size limits on untrusted scans, checked before memory is committed.

A few hundred kilobytes can declare gigabytes: a zip of zeros, a Deflated-transfer-syntax
DICOM or a ``.nii.gz`` whose header claims a 20000 x 20000 image. Every loader checks the
declared size against :class:`DecodeLimits` *before* it inflates or allocates pixels, and
reads compressed streams in chunks that stop at the cap.

Defaults suit a clinical workstation and fit one decoder worker's default 3 GiB memory
limit (:mod:`medtl.io.isolated`): a series of up to 512 x 512 x 1024 voxels (1 GiB as
float32), uploaded as a zip, decodes within it; raise both together for larger series.
Change them per call (``load_scan(..., limits=...)``) or for a whole deployment with
environment variables:

=============================  =================================================
``MEDTL_MAX_FRAME_PIXELS``     pixels of one image or frame (default 100 000 000)
``MEDTL_MAX_SERIES_VOXELS``    voxels of one series or volume (default 268 435 456)
``MEDTL_MAX_UPLOAD_BYTES``     uncompressed bytes of a zip, folder or file (1.25 GiB)
``MEDTL_MAX_UPLOAD_FILES``     files in a zip or folder (default 20 000)
``MEDTL_MAX_ZIP_RATIO``        uncompressed / compressed size of a zip (default 100)
=============================  =================================================

Sizes accept a plain number of bytes or a suffix (``"3G"``, ``"512M"``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from medtl.io.errors import CorruptScanError, ImageTooLargeError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

_SUFFIX = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """Parse ``"3G"``, ``"512M"``, ``"1_000"`` or ``"100000000"`` into an integer.

    Args:
        text: the value (an optional K/M/G/T suffix, binary multiples, an optional ``B``).

    Returns:
        The number.

    Raises:
        ValueError: not a positive number.
    """
    value = text.strip().upper().replace("_", "").removesuffix("IB").removesuffix("B")
    factor = 1
    if value and value[-1] in _SUFFIX:
        factor, value = _SUFFIX[value[-1]], value[:-1]
    number = int(float(value) * factor)
    if number <= 0:
        raise ValueError(f"size must be positive, got {text!r}")
    return number


@dataclass(frozen=True)
class DecodeLimits:
    """Caps applied to every scan medtl reads.

    Attributes:
        max_frame_pixels: most pixels (rows x columns x samples) of one image or frame.
        max_series_voxels: most voxels (frames x rows x columns) of one series or volume.
        max_bytes: most uncompressed bytes read from one upload (zip, folder, file).
        max_files: most files in one zip or folder.
        max_zip_ratio: most uncompressed bytes per byte of zip file, checked once more than
            ``ratio_grace_bytes`` have been inflated (small, very compressible files such as
            an image of zeros are harmless).
        ratio_grace_bytes: uncompressed bytes always allowed before the ratio is checked.
        header_bytes: most bytes inflated to find the header of a Deflated DICOM or a
            gzip-compressed NIfTI before its size is checked.
    """

    max_frame_pixels: int = 100_000_000
    max_series_voxels: int = 512 * 512 * 1024
    max_bytes: int = 1280 * 1024**2
    max_files: int = 20_000
    max_zip_ratio: float = 100.0
    ratio_grace_bytes: int = 64 * 1024**2
    header_bytes: int = 64 * 1024**2

    @classmethod
    def from_env(cls) -> DecodeLimits:
        """Defaults, overridden by the ``MEDTL_MAX_*`` environment variables."""
        env = os.environ
        values: dict[str, int | float] = {}
        for name, field in (
            ("MEDTL_MAX_FRAME_PIXELS", "max_frame_pixels"),
            ("MEDTL_MAX_SERIES_VOXELS", "max_series_voxels"),
            ("MEDTL_MAX_UPLOAD_BYTES", "max_bytes"),
            ("MEDTL_MAX_UPLOAD_FILES", "max_files"),
        ):
            if env.get(name):
                values[field] = parse_size(env[name])
        if env.get("MEDTL_MAX_ZIP_RATIO"):
            values["max_zip_ratio"] = float(env["MEDTL_MAX_ZIP_RATIO"])
        return cls(**values)  # type: ignore[arg-type]

    def replace(self, **changes: int | float | None) -> DecodeLimits:
        """A copy with the given fields changed (``None`` values are ignored)."""
        kept = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, **kept) if kept else self


def resolve(limits: DecodeLimits | None) -> DecodeLimits:
    """``limits``, or the deployment's limits (:meth:`DecodeLimits.from_env`)."""
    return limits if limits is not None else DecodeLimits.from_env()


def _amount(n: int, unit: str) -> str:
    return f"{n / 1e6:,.0f} million {unit}" if n >= 1_000_000 else f"{n:,} {unit}"


def check_image_size(
    rows: int, columns: int, frames: int, samples: int, limits: DecodeLimits, where: str
) -> None:
    """Refuse an image whose declared size exceeds ``limits`` (call before decoding).

    Args:
        rows, columns, frames, samples: the declared size (samples per pixel: 1 or 3).
        limits: the caps.
        where: how to name the file in the message (``"The file"``, ``"File 3 of 9"``).

    Raises:
        ImageTooLargeError: more pixels per frame or voxels in all than allowed.
    """
    per_frame = rows * columns * samples
    if per_frame > limits.max_frame_pixels:
        raise ImageTooLargeError(
            f"{where} declares an image of {rows} x {columns} pixels"
            f"{' x 3 colour samples' if samples == 3 else ''}, more than the limit of "
            f"{_amount(limits.max_frame_pixels, 'pixels')} per image. It is refused before "
            "decoding (it may be a decompression bomb or have a damaged header); export a "
            "smaller or downsampled image."
        )
    check_series_size(frames, rows, columns, limits, where)


def check_series_size(
    frames: int, rows: int, columns: int, limits: DecodeLimits, where: str
) -> None:
    """Refuse a series or volume of more than ``limits.max_series_voxels`` voxels.

    Raises:
        ImageTooLargeError: the series is too large.
    """
    voxels = frames * rows * columns
    if voxels > limits.max_series_voxels:
        raise ImageTooLargeError(
            f"{where} declares {frames} images of {rows} x {columns} pixels "
            f"({_amount(voxels, 'voxels')}), more than the limit of "
            f"{_amount(limits.max_series_voxels, 'voxels')} per series. Load a smaller "
            "series, or crop or downsample it."
        )


__all__ = ["DecodeLimits", "check_image_size", "check_series_size", "parse_size", "resolve"]


def header_int(ds: Dataset, keyword: str, default: int) -> int:
    """An integer header element (``default`` when absent or empty).

    Raises:
        CorruptScanError: the element is damaged (e.g. a VR that made it a list).
    """
    value = ds.get(keyword, default)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise CorruptScanError(
            f"The header element {keyword} is damaged (not a single number). "
            "Export the image again."
        ) from exc
