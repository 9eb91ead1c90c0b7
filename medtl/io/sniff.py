"""Decide a file's format from its content, never from its extension.

Uploads arrive with arbitrary names (``scan.dcm`` may be a PDF), so medtl looks at the
first bytes: the DICOM ``DICM`` magic at offset 128 (or a plausible group-0008/0002
element at offset 0 for files without a preamble), the NIfTI-1/2 header size field
(also inside gzip), PNG and JPEG signatures, and zip archives.
"""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from enum import StrEnum
from pathlib import Path

#: Bytes needed by :func:`sniff_bytes` to decide (NIfTI-2 header is 540 bytes).
SNIFF_BYTES = 1024


class Format(StrEnum):
    """Formats :func:`medtl.io.load_scan` understands."""

    DICOM = "dicom"
    NIFTI = "nifti"
    PNG = "png"
    JPEG = "jpeg"
    ZIP = "zip"
    GZIP_UNKNOWN = "gzip"
    PDF = "pdf"
    UNKNOWN = "unknown"


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_GZIP_MAGIC = b"\x1f\x8b"


def _is_nifti_header(head: bytes) -> bool:
    if len(head) < 348:
        return False
    for endian in ("<", ">"):
        (sizeof_hdr,) = struct.unpack(endian + "i", head[:4])
        if sizeof_hdr == 348 and head[344:347] in (b"n+1", b"ni1"):
            return True
        if sizeof_hdr == 540 and head[4:7] in (b"n+2", b"ni2"):
            return True
    return False


def _looks_like_raw_dicom(head: bytes) -> bool:
    """A DICOM data set without the 128-byte preamble: starts with a low group tag.

    Checks the first element's (group, element) little-endian tag is in group 0x0002
    (file meta without preamble) or 0x0008 (no file meta, typical of old implicit-VR
    files), with a sane VR or length. A cheap heuristic: full parsing decides later.
    """
    if len(head) < 8:
        return False
    group, _element = struct.unpack("<HH", head[:4])
    if group not in (0x0002, 0x0008):
        return False
    vr = head[4:6]
    if vr.isalpha() and vr.isupper():
        return True
    (length,) = struct.unpack("<I", head[4:8])
    return 0 < length < 1024


def _gunzip_head(head: bytes) -> bytes:
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, SNIFF_BYTES)
    except zlib.error:
        return b""


def sniff_bytes(head: bytes) -> Format:
    """Return the format of a file from its first bytes (at least :data:`SNIFF_BYTES`)."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return Format.DICOM
    if head.startswith(_PNG_MAGIC):
        return Format.PNG
    if head.startswith(_JPEG_MAGIC):
        return Format.JPEG
    if head.startswith(_ZIP_MAGICS):
        return Format.ZIP
    if head.startswith(b"%PDF"):
        return Format.PDF
    if head.startswith(_GZIP_MAGIC):
        inner = _gunzip_head(head)
        return Format.NIFTI if _is_nifti_header(inner) else Format.GZIP_UNKNOWN
    if _is_nifti_header(head):
        return Format.NIFTI
    if _looks_like_raw_dicom(head):
        return Format.DICOM
    return Format.UNKNOWN


def sniff(source: Path | str | bytes) -> Format:
    """Return the format of a file path or an in-memory upload."""
    if isinstance(source, bytes | bytearray | memoryview):
        head = bytes(source[:SNIFF_BYTES])
        if head.startswith(_GZIP_MAGIC):
            # A gzip stream needs more compressed bytes than SNIFF_BYTES to yield a header.
            head = _gunzip_prefix(io.BytesIO(bytes(source)))
            return Format.NIFTI if _is_nifti_header(head) else Format.GZIP_UNKNOWN
        return sniff_bytes(head)
    path = Path(source)
    with path.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
        if head.startswith(_GZIP_MAGIC):
            fh.seek(0)
            inner = _gunzip_prefix(fh)
            return Format.NIFTI if _is_nifti_header(inner) else Format.GZIP_UNKNOWN
    return sniff_bytes(head)


def _gunzip_prefix(fh: io.BufferedIOBase | io.BytesIO) -> bytes:
    try:
        with gzip.GzipFile(fileobj=fh) as gz:
            return gz.read(SNIFF_BYTES)
    except (OSError, EOFError, zlib.error):
        return b""
