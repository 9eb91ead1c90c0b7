"""Build decompression bombs quickly, as real files, for the bounded-decoding tests.

Compressing gigabytes of zeros with zlib takes about 10 s per GiB on a small machine. Instead,
one megabyte of zeros is deflated once and ended with a *full flush*: that segment is
byte-aligned and refers to nothing before it, so repeating it N times is a valid deflate
stream of N megabytes of zeros (this is how real zip bombs are made). The containers around
the streams (zip, DICOM file meta, gzip) are the standard ones, and the builders are checked
against :mod:`zipfile`, :mod:`gzip` and :func:`medtl.io.load_scan` on small sizes.
"""

from __future__ import annotations

import struct
import zlib
from functools import cache
from pathlib import Path

import numpy as np
from pydicom.uid import DeflatedExplicitVRLittleEndian

from tests.io import dicom_factory as f

MIB = 1024 * 1024


@cache
def _segment(size: int) -> bytes:
    """Raw deflate of ``size`` zero bytes, byte-aligned and independent (full flush)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return comp.compress(bytes(size)) + comp.flush(zlib.Z_FULL_FLUSH)


def _final_block() -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return comp.flush(zlib.Z_FINISH)  # an empty final block


def deflate_zeros(n_bytes: int, prefix: bytes = b"") -> bytes:
    """Raw deflate stream of ``prefix`` followed by ``n_bytes`` zeros."""
    head = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out = [head.compress(prefix) + head.flush(zlib.Z_FULL_FLUSH)]
    full, rest = divmod(n_bytes, MIB)
    out.append(_segment(MIB) * full)
    if rest:
        out.append(_segment(rest))
    out.append(_final_block())
    return b"".join(out)


def crc_of_zeros(n_bytes: int, crc: int = 0) -> int:
    """CRC-32 of ``n_bytes`` zeros (continuing ``crc``)."""
    block = bytes(16 * MIB)
    full, rest = divmod(n_bytes, len(block))
    for _ in range(full):
        crc = zlib.crc32(block, crc)
    return zlib.crc32(block[:rest], crc)


def zip_of_zeros(
    path: Path, n_bytes: int, name: str = "series/slice001.dcm", *, declared: int | None = None
) -> Path:
    """Write a zip holding one member of ``n_bytes`` zeros (under 4 GiB: no zip64 needed).

    The sizes and CRC in the headers are the true ones, so :mod:`zipfile` and unzip accept
    the archive as a normal zip, unless ``declared`` gives a false uncompressed size.
    """
    assert n_bytes < 0xFFFFFFFF
    data = deflate_zeros(n_bytes)
    crc = crc_of_zeros(n_bytes)
    n_bytes = n_bytes if declared is None else declared
    fname = name.encode()
    # Local file header, central directory entry, end of central directory (APPNOTE 4.3).
    local = struct.pack(
        "<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, len(data), n_bytes, len(fname), 0
    )
    central = struct.pack(
        "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, crc, len(data), n_bytes,
        len(fname), 0, 0, 0, 0, 0, 0,
    )  # fmt: skip
    cd_offset = len(local) + len(fname) + len(data)
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central) + len(fname), cd_offset, 0
    )
    with path.open("wb") as fh:
        for part in (local, fname, data, central, fname, end):
            fh.write(part)
    return path


def deflated_dicom_of_zeros(rows: int, columns: int, *, pixel_bytes: int | None = None) -> bytes:
    """A Deflated Explicit VR Little Endian DICOM (8-bit MONOCHROME2) whose pixels are zeros.

    Args:
        rows, columns: the size the header declares.
        pixel_bytes: how many zero bytes the pixel data really hold (default
            ``rows * columns``, a valid file); more than that makes a file that lies.
    """
    ds = f.image_dataset(np.zeros((2, 2), np.uint8), modality="OT")
    del ds.PixelData
    ds.Rows, ds.Columns = rows, columns
    ds = f.encode(ds, DeflatedExplicitVRLittleEndian)
    whole = f.to_bytes(ds)
    meta_end = 132 + 12 + int.from_bytes(whole[140:144], "little")  # (0002,0000) UL value
    header = zlib.decompress(whole[meta_end:], -zlib.MAX_WBITS)
    n = rows * columns if pixel_bytes is None else pixel_bytes
    length = n + (n % 2)
    element = b"\xe0\x7f\x10\x00OB\x00\x00" + struct.pack("<L", length)
    return whole[:meta_end] + deflate_zeros(length, prefix=header + element)


def nifti_gz_of_zeros(shape: tuple[int, ...]) -> bytes:
    """A ``.nii.gz`` (float32) of zeros with the given shape, gzip framing included."""
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    header["vox_offset"] = 352
    raw_header = header.binaryblock + b"\x00" * 4  # no extensions
    n = int(np.prod(shape)) * 4
    body = deflate_zeros(n, prefix=raw_header)
    crc = crc_of_zeros(n, zlib.crc32(raw_header))
    gz_head = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return gz_head + body + struct.pack("<LL", crc, (len(raw_header) + n) & 0xFFFFFFFF)
