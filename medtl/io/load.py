"""``load_scan``: one entry point for every scan medtl reads.

The format is decided by content (:mod:`medtl.io.sniff`), then the matching loader runs:
DICOM files, folders and zips go to :func:`medtl.io.series.load_dicom`, NIfTI to
:func:`medtl.io.nifti.load_nifti`, PNG/JPEG to :func:`medtl.io.raster.load_raster`.
Every failure is a :class:`~medtl.io.errors.ScanError` with an actionable message.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

from medtl.io.errors import (
    CorruptScanError,
    ImageTooLargeError,
    ScanError,
    ScanNotFoundError,
    UnsupportedFormatError,
)
from medtl.io.scan import Scan
from medtl.io.sniff import Format, sniff

logger = logging.getLogger(__name__)

#: Largest total uncompressed size accepted from a zip or folder (bytes).
DEFAULT_MAX_BYTES = 4 * 1024**3
#: Most files accepted in one zip or folder.
DEFAULT_MAX_FILES = 20_000

_SKIP_NAMES = {"DICOMDIR"}


def load_scan(
    source: str | os.PathLike[str] | bytes,
    *,
    series_uid: str | None = None,
    modality: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
) -> Scan:
    """Load a scan from a file, a DICOM series folder, a zip of a series, or bytes.

    Args:
        source: a path (file, folder or zip) or the raw bytes of an upload.
        series_uid: pick this (de-identified or original) SeriesInstanceUID when a folder
            or zip holds several series.
        modality: modality hint for formats without one (NIfTI, PNG, JPEG), e.g. ``"CT"``.
        max_bytes: refuse folders/zips whose uncompressed content exceeds this.
        max_files: refuse folders/zips with more files than this.

    Returns:
        A de-identified :class:`~medtl.io.scan.Scan`.

    Raises:
        ScanError: a subclass saying what is wrong and what to do.

    Example:
        >>> scan = load_scan("series_folder/")  # doctest: +SKIP
        >>> scan.array.shape, scan.spacing  # doctest: +SKIP
        ((130, 512, 512), (2.5, 0.7, 0.7))
    """
    try:
        if isinstance(source, bytes | bytearray | memoryview):
            return _load_bytes(bytes(source), series_uid, modality, max_bytes, max_files)
        path = Path(source)
        if not path.exists():
            raise ScanNotFoundError(
                "The path given does not exist. Check the spelling, or that the drive is mounted."
            )
        if path.is_dir():
            return _load_folder(path, series_uid, max_bytes, max_files, modality)
        return _load_file(path, series_uid, modality, max_bytes, max_files)
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


def _dicom(sources: list, series_uid: str | None) -> Scan:
    from medtl.io.series import load_dicom

    with _no_phi_from_pydicom():
        return load_dicom(sources, series_uid=series_uid)


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


def _load_file(
    path: Path, series_uid: str | None, modality: str | None, max_bytes: int, max_files: int
) -> Scan:
    return _load_one(path, sniff(path), series_uid, modality, max_bytes, max_files)


def _load_bytes(
    data: bytes, series_uid: str | None, modality: str | None, max_bytes: int, max_files: int
) -> Scan:
    if not data:
        raise CorruptScanError("The upload is empty (0 bytes). Choose the file again.")
    return _load_one(data, sniff(data), series_uid, modality, max_bytes, max_files)


def _load_one(
    source: Path | bytes,
    fmt: Format,
    series_uid: str | None,
    modality: str | None,
    max_bytes: int,
    max_files: int,
) -> Scan:
    """Dispatch one file (path or bytes) of a sniffed format to its loader."""
    if fmt is Format.DICOM:
        return _dicom([source], series_uid)
    if fmt is Format.NIFTI:
        from medtl.io.nifti import load_nifti

        return load_nifti(source, modality=modality)
    if fmt in (Format.PNG, Format.JPEG):
        from medtl.io.raster import load_raster

        return load_raster(source, modality=modality)
    if fmt is Format.ZIP:
        archive = io.BytesIO(source) if isinstance(source, bytes) else source
        return _load_zip(archive, series_uid, modality, max_bytes, max_files)
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


def _load_folder(
    root: Path, series_uid: str | None, max_bytes: int, max_files: int, modality: str | None
) -> Scan:
    dicoms: list[Path] = []
    others: list[tuple[Path, Format]] = []
    total = 0
    for path in _iter_folder(root, max_files):
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
        scan = _dicom(dicoms, series_uid)
        if others:
            scan.warnings.append(
                f"{len(others)} non-DICOM image file(s) in the folder were ignored."
            )
        return scan
    if len(others) == 1:
        return _load_file(others[0][0], series_uid, modality, max_bytes, max_files)
    if others:
        raise UnsupportedFormatError(
            f"The folder holds {len(others)} NIfTI/PNG/JPEG files and no DICOM series. "
            "Load one file at a time."
        )
    raise UnsupportedFormatError(
        "The folder contains no DICOM, NIfTI, PNG or JPEG files. Choose the folder that holds "
        "the series' .dcm files."
    )


def _load_zip(
    source: Path | io.BytesIO,
    series_uid: str | None,
    modality: str | None,
    max_bytes: int,
    max_files: int,
) -> Scan:
    """Read a zip's members into memory (never extracted to disk, so no path traversal)."""
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CorruptScanError(
            "The zip archive is damaged or incomplete. Create the zip again and re-upload it."
        ) from exc
    with archive:
        members = [
            info
            for info in archive.infolist()
            if not info.is_dir()
            and not Path(info.filename).name.startswith(".")
            and "__MACOSX" not in info.filename
            and Path(info.filename).name.upper() not in _SKIP_NAMES
        ]
        if len(members) > max_files:
            raise ImageTooLargeError(
                f"The zip holds more than {max_files} files. Zip one series at a time."
            )
        if not members:
            raise UnsupportedFormatError("The zip archive is empty.")
        blobs: list[bytes] = []
        total = 0
        for info in members:
            if info.flag_bits & 0x1:
                raise UnsupportedFormatError(
                    "The zip archive is password-protected. Create it without encryption."
                )
            try:
                with archive.open(info) as fh:
                    # Read with a cap: header sizes can lie (zip bombs).
                    blob = fh.read(max_bytes - total + 1)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
                raise CorruptScanError(
                    "A file inside the zip archive is damaged. Create the zip again."
                ) from exc
            total += len(blob)
            if total > max_bytes:
                raise ImageTooLargeError(
                    f"The zip expands to more than {max_bytes / 1024**3:.1f} GiB. Zip one series."
                )
            blobs.append(blob)
    formats = [sniff(blob) for blob in blobs]
    dicoms = [b for b, f in zip(blobs, formats, strict=True) if f is Format.DICOM]
    if dicoms:
        scan = _dicom(dicoms, series_uid)
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
        return _load_bytes(images[0][0], series_uid, modality, max_bytes, max_files)
    raise UnsupportedFormatError(
        "The zip holds no DICOM series (or several non-DICOM images). Zip the .dcm files of "
        "one series."
    )
