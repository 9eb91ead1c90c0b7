"""Read a Deflated Explicit VR Little Endian DICOM file without inflating a bomb.

In this transfer syntax everything after the file meta is one deflate stream, header
included, so a file of a few hundred kilobytes can declare (and hold) a 20000 x 20000 image
of zeros. pydicom inflates the whole stream before returning anything. Here the stream is
inflated in chunks: first only up to the pixel data element (at most
``DecodeLimits.header_bytes``), the declared image size is checked against the limits, and
only then is the rest inflated, never more than the header says the pixels need.
"""

from __future__ import annotations

import io
import zlib

from pydicom.dataset import Dataset, FileDataset
from pydicom.filereader import read_dataset, read_preamble
from pydicom.uid import DeflatedExplicitVRLittleEndian

from medtl.io.errors import CorruptScanError
from medtl.io.limits import DecodeLimits, check_image_size

_CHUNK = 64 * 1024
_STEP = 1024 * 1024  # most bytes inflated per call, so the caps are checked often
# Explicit VR little endian tags of the three pixel data elements (7FE0,0008/0009/0010).
_PIXEL_TAGS = (b"\xe0\x7f\x10\x00", b"\xe0\x7f\x08\x00", b"\xe0\x7f\x09\x00")
_PIXEL_TAG_VALUES = (0x7FE00010, 0x7FE00008, 0x7FE00009)
# Elements allowed after the pixel data (e.g. Data Set Trailing Padding), in bytes.
_TRAILER_BYTES = 1024 * 1024


def is_deflated(data: bytes) -> bool:
    """Cheap test on a Part 10 file (with its 128-byte preamble): Deflated syntax?"""
    return DeflatedExplicitVRLittleEndian.encode() in data[132:4096]


def _file_meta(data: bytes) -> tuple[bytes | None, Dataset, int]:
    # pydicom's own file meta parser (private in pydicom 3; dcmread uses it the same way).
    from pydicom.filereader import _read_file_meta_info

    fp = io.BytesIO(data)
    preamble = read_preamble(fp, False)
    meta = _read_file_meta_info(fp)
    return preamble, meta, fp.tell()


class _Inflater:
    """Inflate a raw deflate stream in chunks, never past ``limit`` output bytes."""

    def __init__(self, data: bytes, start: int) -> None:
        self.data = data
        self.pos = start
        self.stream = zlib.decompressobj(-zlib.MAX_WBITS)
        self.out = bytearray()
        self.hit = -1

    @property
    def finished(self) -> bool:
        return self.stream.eof or (self.pos >= len(self.data) and not self.stream.unconsumed_tail)

    def fill(self, limit: int, *, until_pixels: bool = False) -> None:
        """Inflate until ``limit`` bytes are out or the stream ends; with ``until_pixels``,
        stop shortly after the first pixel data tag (its element header included)."""
        while len(self.out) < limit and not self.finished:
            pending = self.stream.unconsumed_tail
            if not pending:
                pending = self.data[self.pos : self.pos + _CHUNK]
                self.pos += len(pending)
            searched = max(0, len(self.out) - 4)
            self.out += self.stream.decompress(pending, min(_STEP, limit - len(self.out)))
            if until_pixels:
                hit = _find_pixel_tag(self.out, searched if self.hit < 0 else self.hit)
                self.hit = hit
                if hit >= 0 and len(self.out) >= hit + 16:
                    return


def _find_pixel_tag(buf: bytearray, start: int = 0) -> int:
    hits = [i for i in (buf.find(tag, start) for tag in _PIXEL_TAGS) if i >= 0]
    return min(hits) if hits else -1


def _at_pixel_data(tag: int, vr: str | None, length: int) -> bool:
    return int(tag) in _PIXEL_TAG_VALUES


def _int(ds: Dataset, keyword: str, default: int) -> int:
    value = ds.get(keyword, default)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as exc:  # e.g. a damaged VR that made it a list
        raise CorruptScanError(
            f"The header element {keyword} is damaged (not a single number). "
            "Export the image again."
        ) from exc


def read_deflated(data: bytes, *, stop_before_pixels: bool, limits: DecodeLimits) -> FileDataset:
    """Parse a Deflated Explicit VR Little Endian file, checking its size before inflating.

    Args:
        data: the whole file, with its 128-byte preamble and ``DICM``.
        stop_before_pixels: return the header only (the pixels are never inflated).
        limits: the size caps (per frame, per series, header size).

    Returns:
        The dataset, as :func:`pydicom.dcmread` would return it.

    Raises:
        ImageTooLargeError: the header declares more pixels than ``limits`` allow.
        CorruptScanError: the stream is damaged, or holds more than its header declares.
    """
    preamble, meta, start = _file_meta(data)
    inflater = _Inflater(data, start)
    inflater.fill(limits.header_bytes, until_pixels=True)
    head = bytes(inflater.out)
    cut = _find_pixel_tag(inflater.out)
    if cut < 0 and not inflater.finished:
        raise CorruptScanError(
            "The compressed DICOM header is larger than "
            f"{limits.header_bytes // 1024**2} MiB or damaged; it was not read further. "
            "Re-export the image uncompressed."
        )
    header = read_dataset(io.BytesIO(head), False, True, stop_when=_at_pixel_data)
    rows, cols = _int(header, "Rows", 0), _int(header, "Columns", 0)
    frames, samples = _int(header, "NumberOfFrames", 1), _int(header, "SamplesPerPixel", 1)
    check_image_size(rows, cols, max(frames, 1), max(samples, 1), limits, "The file")
    if stop_before_pixels or cut < 0:
        dataset = header
    else:
        bits = _int(header, "BitsAllocated", 16)
        pixel_bytes = rows * cols * max(frames, 1) * max(samples, 1) * max(bits, 1) // 8
        inflater.fill(cut + 12 + pixel_bytes + 1 + _TRAILER_BYTES)
        if not inflater.finished:
            raise CorruptScanError(
                "The compressed DICOM file holds more data than its header declares (a "
                "possible decompression bomb); it was not inflated further. Export it again."
            )
        stream = io.BytesIO(inflater.out)  # a copy: drop the bytearray before parsing
        inflater.out = bytearray()
        dataset = read_dataset(stream, False, True)
    ds = FileDataset(io.BytesIO(b""), dataset, preamble, meta, False, True)
    ds.set_original_encoding(False, True, dataset._character_set)
    return ds


__all__ = ["is_deflated", "read_deflated"]
