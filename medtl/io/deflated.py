"""Read a Deflated Explicit VR Little Endian DICOM file without inflating a bomb.

In this transfer syntax everything after the file meta is one deflate stream, header
included, so a file of a few hundred kilobytes can declare (and hold) a 20000 x 20000 image
of zeros. pydicom inflates the whole stream before returning anything. Here the stream is
inflated on demand: pydicom parses the header from a reader that inflates only the bytes it
reads (at most ``DecodeLimits.header_bytes``) and stops at the pixel data element; the
declared image size is checked against the limits, and only then is the rest inflated,
never more than the header says the pixels need.
"""

from __future__ import annotations

import io
import zlib

from pydicom.dataset import Dataset, FileDataset
from pydicom.filereader import read_dataset, read_preamble
from pydicom.uid import DeflatedExplicitVRLittleEndian

from medtl.io.errors import CorruptScanError
from medtl.io.limits import DecodeLimits, check_image_size
from medtl.io.limits import header_int as _int

_CHUNK = 64 * 1024
_STEP = 1024 * 1024  # most bytes inflated per call, so the caps are checked often
# The three pixel data elements (7FE0,0008/0009/0010).
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
    """Inflate a raw deflate stream in steps, never past the output size asked for."""

    def __init__(self, data: bytes, start: int) -> None:
        self.data = data
        self.pos = start
        self.stream = zlib.decompressobj(-zlib.MAX_WBITS)
        self.out = bytearray()

    @property
    def finished(self) -> bool:
        return self.stream.eof or (self.pos >= len(self.data) and not self.stream.unconsumed_tail)

    def fill(self, limit: int) -> None:
        """Inflate until ``limit`` bytes are out or the stream ends."""
        while len(self.out) < limit and not self.finished:
            pending = self.stream.unconsumed_tail
            if not pending:
                pending = self.data[self.pos : self.pos + _CHUNK]
                self.pos += len(pending)
            self.out += self.stream.decompress(pending, min(_STEP, limit - len(self.out)))


class _HeaderTooLarge(Exception):
    pass


class _InflatingReader:
    """A read-only file over the inflated stream that inflates only what is read, at most
    ``limit`` bytes: pydicom parses the header from it element by element, so nothing past
    the pixel data element's header is inflated (no guessing where the header ends)."""

    def __init__(self, inflater: _Inflater, limit: int) -> None:
        self.inflater = inflater
        self.limit = limit
        self.position = 0

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_END:
            raise io.UnsupportedOperation("seek from the end of a deflate stream")
        self.position = offset if whence == io.SEEK_SET else self.position + offset
        return self.position

    def read(self, size: int | None = -1) -> bytes:
        end = self.limit if size is None or size < 0 else self.position + size
        if end > self.limit:
            raise _HeaderTooLarge
        self.inflater.fill(end)
        chunk = bytes(self.inflater.out[self.position : end])
        self.position += len(chunk)
        return chunk


def _read_header(inflater: _Inflater, budget: int) -> tuple[Dataset, int | None]:
    """The dataset up to the pixel data, and the pixel element's offset (None: no pixels)."""
    reached: list[bool] = []

    def at_pixel_data(tag: int, vr: str | None, length: int) -> bool:
        if int(tag) in _PIXEL_TAG_VALUES:
            reached.append(True)
            return True
        return False

    reader = _InflatingReader(inflater, budget)
    try:
        header = read_dataset(reader, False, True, stop_when=at_pixel_data)  # type: ignore[arg-type]
    except _HeaderTooLarge as exc:
        raise CorruptScanError(
            f"The compressed DICOM header is larger than {budget // 1024**2} MiB or damaged; "
            "it was not read further. Re-export the image uncompressed."
        ) from exc
    return header, (reader.tell() if reached else None)


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
    header, cut = _read_header(inflater, limits.header_bytes)
    rows, cols = _int(header, "Rows", 0), _int(header, "Columns", 0)
    frames, samples = _int(header, "NumberOfFrames", 1), _int(header, "SamplesPerPixel", 1)
    check_image_size(rows, cols, max(frames, 1), max(samples, 1), limits, "The file")
    if stop_before_pixels or cut is None:
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
