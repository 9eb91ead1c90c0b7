"""Writing de-identified copies of DICOM files."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError

from medtl.io.deid_core import deidentify
from medtl.io.deid_keys import pseudonym, resolve_key
from medtl.io.errors import CorruptScanError
from medtl.io.redact import redacted_warnings

logger = logging.getLogger(__name__)


def _read_dicom(path: Path, index: int, total: int) -> Dataset:
    """Read a DICOM file, also without preamble/file meta; errors never name the file."""
    problem: Exception | None = None
    for force in (False, True):
        try:
            ds = pydicom.dcmread(path, force=force)
        except (InvalidDicomError, OSError, EOFError, ValueError, KeyError) as exc:
            problem = exc
            continue
        if not force or "SOPClassUID" in ds:  # a forced read of junk has no SOP class
            return ds
    kind = type(problem).__name__ if problem is not None else "no SOP Class UID"
    raise CorruptScanError(
        f"Input file {index} of {total} is not a readable DICOM file ({kind}); "
        "check it was exported as DICOM."
    )


def write_deidentified(
    source_paths: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    key: bytes | None = None,
    clean_free_text: bool | None = None,
) -> list[Path]:
    """Write de-identified copies of DICOM files.

    Output names are ``<pseudonymous SOPInstanceUID>.dcm`` (never the original names);
    the 128-byte preamble is zeroed. Files are written in DICOM file format (part 10),
    also for inputs that lacked a preamble or file meta.

    Args:
        source_paths: DICOM files to copy.
        out_dir: destination folder (created if missing).
        key: HMAC key; default the site key.
        clean_free_text: as for :func:`medtl.io.deidentify` (None: the site setting).

    Returns:
        The written paths, in input order.

    Raises:
        CorruptScanError: an input is not a readable DICOM file (named by its position,
            since original file names may carry PHI).
    """
    key = resolve_key(key)
    paths = [Path(p) for p in source_paths]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    # reading and writing damaged headers makes pydicom warn with the values: redacted
    with redacted_warnings(logger, "writing de-identified copies"):
        for index, path in enumerate(paths, start=1):
            ds = _read_dicom(path, index, len(paths))
            clean = deidentify(ds, key=key, in_place=True, clean_free_text=clean_free_text)
            if getattr(clean, "file_meta", None) is None:
                clean.file_meta = FileMetaDataset()
            if "TransferSyntaxUID" not in clean.file_meta:  # a bare dataset without file meta
                clean.file_meta.TransferSyntaxUID = (
                    pydicom.uid.ImplicitVRLittleEndian
                    if clean.original_encoding[0]
                    else pydicom.uid.ExplicitVRLittleEndian
                )
            name = str(clean.get("SOPInstanceUID", "") or "") or pseudonym(
                f"{index}:{path.name}", key=key, prefix="FILE"
            )
            target = out / f"{name}.dcm"
            try:
                clean.save_as(target, enforce_file_format=True)
            except Exception as exc:  # pydicom raises many types for damaged headers
                target.unlink(missing_ok=True)
                raise CorruptScanError(
                    f"Input file {index} of {len(paths)} has a damaged header and could not be "
                    f"written ({type(exc).__name__}); export it again from the source system."
                ) from None
            written.append(target)
    logger.info("wrote %d de-identified DICOM files", len(written))
    return written
