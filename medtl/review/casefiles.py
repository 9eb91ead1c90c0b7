"""Where case files live: ``<cases_dir>/<case pseudonym>/img-<random>.<ext>``.

Only de-identified content is accepted (:func:`prepare`), and file names are generated, so
no name or path ever carries PHI. Files are written under a temporary name and renamed, so
a crash never leaves a half-written image that the database points to. Files are 0600 and
the folders medtl creates 0700, whatever the umask (:mod:`medtl.review.files`).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from medtl.review.db import ReviewStoreError
from medtl.review.files import private_dir, write_private

if TYPE_CHECKING:  # NumPy and the Scan model load with the first image, not with the store
    from medtl.io.scan import Scan

_CASE_ID_RE = re.compile(r"^[A-Z]{2,8}-[0-9A-F]{8,32}$")


class PHIRiskError(ReviewStoreError, ValueError):
    """Input that is not known to be de-identified; nothing was stored."""


class Payload(NamedTuple):
    """Bytes ready to store."""

    content: bytes
    kind: str
    ext: str
    modality: str | None


class StoredFile(NamedTuple):
    """A file written under the cases folder."""

    relpath: str
    kind: str
    sha256: str
    n_bytes: int
    modality: str | None


def is_case_id(value: str) -> bool:
    """True when ``value`` has the shape of a case pseudonym (``CASE-<hex>``)."""
    return bool(_CASE_ID_RE.match(value or ""))


def write_file(root: Path, case_id: str, payload: Payload) -> StoredFile:
    """Write ``payload`` as a new file of case ``case_id`` under ``root``.

    Args:
        root: the cases folder.
        case_id: the case pseudonym (checked: it becomes a folder name).
        payload: from :func:`prepare`.

    Returns:
        Where it went (relative to ``root``), its SHA-256 and size.
    """
    if not is_case_id(case_id):
        raise ValueError(f"not a case pseudonym: {case_id!r}")
    folder = private_dir(root / case_id)
    name = f"img-{secrets.token_hex(8)}.{payload.ext}"
    write_private(folder / name, payload.content)
    digest = hashlib.sha256(payload.content).hexdigest()
    return StoredFile(
        f"{case_id}/{name}", payload.kind, digest, len(payload.content), payload.modality
    )


def discard(root: Path, stored: StoredFile | None) -> None:
    """Delete a file whose database row was never committed."""
    if stored is not None:
        (root / stored.relpath).unlink(missing_ok=True)


def load_file(path: Path, kind: str) -> Scan | bytes:
    """Read a stored file back: a :class:`Scan` for ``scan`` files, else the raw bytes.

    ``.npz`` files are read with ``allow_pickle=False``.
    """
    if kind != "scan":
        return path.read_bytes()
    import numpy as np

    from medtl.io.scan import Scan, Window

    with np.load(path, allow_pickle=False) as z:
        info = json.loads(str(z["info"]))
        window = info.get("window")
        return Scan(
            array=z["array"],
            spacing=tuple(float(v) for v in z["spacing"]),
            affine=z["affine"],
            modality=info["modality"],
            source_format=info["source_format"],
            meta=info.get("meta", {}),
            window=Window(**window) if window else None,
            warnings=list(info.get("warnings", [])),
        )


def prepare(data: Scan | bytes) -> Payload:
    """Serialise a de-identified Scan, or check that DICOM bytes are marked de-identified.

    Args:
        data: a :class:`~medtl.io.Scan` (stored as ``.npz``: float32 pixels, spacing, affine
            and a JSON ``info`` entry with modality, window, warnings and the Scan's non-PHI
            meta), or DICOM bytes with PatientIdentityRemoved ``YES`` (stored unchanged).

    Returns:
        The bytes to store, their kind (``scan`` or ``dicom``), extension and modality.

    Raises:
        PHIRiskError: bytes that are not de-identified DICOM (nothing is stored).
    """
    import numpy as np

    from medtl.io.scan import Scan

    if isinstance(data, Scan):
        info = {
            "modality": data.modality,
            "source_format": data.source_format,
            "window": None
            if data.window is None
            else {
                "center": float(data.window.center),
                "width": float(data.window.width),
                "name": data.window.name,
            },
            "meta": data.meta,
            "warnings": list(data.warnings),
        }
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            array=np.asarray(data.array, dtype=np.float32),
            spacing=np.asarray(data.spacing, dtype=np.float64),
            affine=np.asarray(data.affine, dtype=np.float64),
            info=np.array(json.dumps(info, default=str)),
        )
        return Payload(buf.getvalue(), "scan", "npz", data.modality)
    if isinstance(data, bytes | bytearray | memoryview):
        content = bytes(data)
        from medtl.io.sniff import Format, sniff

        if sniff(content) != Format.DICOM:
            raise PHIRiskError(
                "only de-identified DICOM files can be stored as bytes; load other formats "
                "with medtl.io.load_scan and store the Scan"
            )
        import pydicom
        from pydicom.errors import InvalidDicomError

        try:
            ds = pydicom.dcmread(io.BytesIO(content), stop_before_pixels=True)
        except (InvalidDicomError, ValueError, EOFError) as exc:
            raise PHIRiskError(f"unreadable DICOM file: {type(exc).__name__}") from None
        if str(ds.get("PatientIdentityRemoved", "")).upper() != "YES":
            raise PHIRiskError(
                "this DICOM file is not marked de-identified (PatientIdentityRemoved != YES); "
                "de-identify it with medtl.io.deidentify first"
            )
        modality = str(ds.get("Modality", "")) or None
        return Payload(content, "dicom", "dcm", modality)
    raise TypeError(f"expected a Scan or bytes, got {type(data).__name__}")
