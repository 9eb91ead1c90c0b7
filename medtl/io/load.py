"""``load_scan``: one entry point for every scan medtl reads.

The format is decided by content (:mod:`medtl.io.sniff`), then the matching loader runs:
DICOM files, folders and zips go to :func:`medtl.io.series.load_dicom`, NIfTI to
:func:`medtl.io.nifti.load_nifti`, PNG/JPEG to :func:`medtl.io.raster.load_raster`.
Every failure is a :class:`~medtl.io.errors.ScanError` with an actionable message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from medtl.io.errors import (
    CorruptScanError,
    ImageTooLargeError,
    ScanError,
    ScanNotFoundError,
    UnsupportedFormatError,
    log_unexpected,
)
from medtl.io.limits import DecodeLimits, resolve
from medtl.io.scan import Scan
from medtl.io.sniff import Format, sniff

logger = logging.getLogger(__name__)

_SKIP_NAMES = {"DICOMDIR"}


def load_scan(
    source: str | os.PathLike[str] | bytes,
    *,
    series_uid: str | None = None,
    modality: str | None = None,
    max_bytes: int | None = None,
    max_files: int | None = None,
    limits: DecodeLimits | None = None,
) -> Scan:
    """Load a scan from a file, a DICOM series folder, a zip of a series, or bytes.

    Args:
        source: a path (file, folder or zip) or the raw bytes of an upload.
        series_uid: pick this (de-identified or original) SeriesInstanceUID when a folder
            or zip holds several series.
        modality: modality hint for formats without one (NIfTI, PNG, JPEG), e.g. ``"CT"``.
        max_bytes: refuse uploads whose uncompressed content exceeds this (overrides
            ``limits.max_bytes``).
        max_files: refuse folders/zips with more files than this (overrides
            ``limits.max_files``).
        limits: size caps (pixels per image, voxels per series, zip size, ratio and member
            count), checked before anything large is inflated or allocated; default
            :meth:`~medtl.io.limits.DecodeLimits.from_env`.

    Returns:
        A de-identified :class:`~medtl.io.scan.Scan`.

    Raises:
        ScanError: a subclass saying what is wrong and what to do.

    Example:
        >>> scan = load_scan("series_folder/")  # doctest: +SKIP
        >>> scan.array.shape, scan.spacing  # doctest: +SKIP
        ((130, 512, 512), (2.5, 0.7, 0.7))
    """
    req = _Request(
        series_uid, modality, resolve(limits).replace(max_bytes=max_bytes, max_files=max_files)
    )
    try:
        if isinstance(source, bytes | bytearray | memoryview):
            return _load_bytes(bytes(source), req)
        path = Path(source)
        if not path.exists():
            raise ScanNotFoundError(
                "The path given does not exist. Check the spelling, or that the drive is mounted."
            )
        if path.is_dir():
            return _load_folder(path, req)
        return _load_one(path, sniff(path), req)
    except ScanError:
        raise
    except MemoryError as exc:
        raise ImageTooLargeError(
            "The scan is too large to load into memory on this machine."
        ) from exc
    except PermissionError as exc:
        raise ScanNotFoundError(
            "The file cannot be read (permission denied). Ask your administrator for access."
        ) from exc
    except OSError as exc:
        raise CorruptScanError(f"The file could not be read ({type(exc).__name__}).") from exc
    except Exception as exc:  # a bug in medtl: surface it, with a PHI-free traceback
        log_unexpected(logger, exc, "loading a scan")
        raise


@contextlib.contextmanager
def _no_phi_from_pydicom() -> Iterator[None]:
    """Keep header values out of logs and stderr while pydicom parses a file.

    pydicom reports invalid values with the value itself (e.g. a malformed birth date), in
    log records and in ``warnings``. Log records are redacted by a filter; warnings raised
    while reading are captured here (a local ``catch_warnings``, not a global filter) and
    only counted.
    """
    from medtl.io.deid import redact_pydicom_logs

    redact_pydicom_logs()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    if caught:
        logger.debug("pydicom raised %d warning(s) while reading (values withheld)", len(caught))


@dataclass(frozen=True)
class _Request:
    """What every loader of one ``load_scan`` call needs."""

    series_uid: str | None
    modality: str | None
    limits: DecodeLimits


def _dicom(sources: list, req: _Request) -> Scan:
    from medtl.io.series import load_dicom

    with _no_phi_from_pydicom():
        return load_dicom(sources, series_uid=req.series_uid, limits=req.limits)


def _describe_unknown(fmt: Format) -> str:
    if fmt is Format.PDF:
        return (
            "This file is a PDF document, not an image. Upload the DICOM export of the study, "
            "a NIfTI volume, or a PNG/JPEG image."
        )
    if fmt is Format.GZIP_UNKNOWN:
        return "This gzip file does not contain a NIfTI volume. Upload a .nii or .nii.gz file."
    return (
        "This file is not a recognised scan format (DICOM, NIfTI, PNG, JPEG, or a zip of a "
        "DICOM series). Export the images as DICOM from your PACS or viewer and try again."
    )


def _load_bytes(data: bytes, req: _Request) -> Scan:
    if not data:
        raise CorruptScanError("The upload is empty (0 bytes). Choose the file again.")
    if len(data) > req.limits.max_bytes:
        raise ImageTooLargeError(
            f"The upload is larger than {req.limits.max_bytes / 1024**3:.1f} GiB. Upload one "
            "series or image."
        )
    return _load_one(data, sniff(data), req)


def _load_one(source: Path | bytes, fmt: Format, req: _Request) -> Scan:
    """Dispatch one file (path or bytes) of a sniffed format to its loader."""
    lim = req.limits
    if fmt is Format.DICOM:
        return _dicom([source], req)
    if fmt is Format.NIFTI:
        from medtl.io.nifti import load_nifti

        return load_nifti(source, modality=req.modality, max_bytes=lim.max_bytes,
                          max_voxels=lim.max_series_voxels,
                          max_slice_pixels=lim.max_frame_pixels)  # fmt: skip
    if fmt in (Format.PNG, Format.JPEG):
        from medtl.io.raster import load_raster

        return load_raster(source, modality=req.modality, max_pixels=lim.max_frame_pixels)
    if fmt is Format.ZIP:
        return _load_zip(source, req)
    raise UnsupportedFormatError(_describe_unknown(fmt))


def _iter_folder(root: Path, max_files: int) -> Iterator[Path]:
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name.upper() in _SKIP_NAMES:
                continue
            count += 1
            if count > max_files:
                raise ImageTooLargeError(
                    f"The folder holds more than {max_files} files. Point medtl at one series "
                    "folder rather than a whole study or archive."
                )
            yield Path(dirpath) / name


def _load_folder(root: Path, req: _Request) -> Scan:
    dicoms: list[Path] = []
    others: list[tuple[Path, Format]] = []
    total = 0
    max_bytes = req.limits.max_bytes
    for path in _iter_folder(root, req.limits.max_files):
        total += path.stat().st_size
        if total > max_bytes:
            raise ImageTooLargeError(
                f"The folder holds more than {max_bytes / 1024**3:.1f} GiB. Point medtl at one "
                "series folder."
            )
        fmt = sniff(path)
        if fmt is Format.DICOM:
            dicoms.append(path)
        elif fmt in (Format.NIFTI, Format.PNG, Format.JPEG):
            others.append((path, fmt))
    if dicoms:
        scan = _dicom(dicoms, req)
        if others:
            scan.warnings.append(
                f"{len(others)} non-DICOM image file(s) in the folder were ignored."
            )
        return scan
    if len(others) == 1:
        return _load_one(others[0][0], others[0][1], req)
    if others:
        raise UnsupportedFormatError(
            f"The folder holds {len(others)} NIfTI/PNG/JPEG files and no DICOM series. "
            "Load one file at a time."
        )
    raise UnsupportedFormatError(
        "The folder contains no DICOM, NIfTI, PNG or JPEG files. Choose the folder that holds "
        "the series' .dcm files."
    )


def _load_zip(source: Path | bytes, req: _Request) -> Scan:
    """Load a zip's members from memory (never extracted to disk, so no path traversal)."""
    from medtl.io.archive import read_zip_members

    blobs = read_zip_members(source, req.limits, skip_names=_SKIP_NAMES)
    formats = [sniff(blob) for blob in blobs]
    dicoms = [b for b, f in zip(blobs, formats, strict=True) if f is Format.DICOM]
    if dicoms:
        scan = _dicom(dicoms, req)
        skipped = len(blobs) - len(dicoms)
        if skipped:
            scan.warnings.append(f"{skipped} non-DICOM file(s) in the zip were ignored.")
        return scan
    images = [
        (b, f)
        for b, f in zip(blobs, formats, strict=True)
        if f in (Format.NIFTI, Format.PNG, Format.JPEG)
    ]
    if len(images) == 1:
        return _load_bytes(images[0][0], req)
    raise UnsupportedFormatError(
        "The zip holds no DICOM series (or several non-DICOM images). Zip the .dcm files of "
        "one series."
    )
