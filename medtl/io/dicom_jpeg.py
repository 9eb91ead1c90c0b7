"""Check JPEG codestream headers against the DICOM header before GDCM sees them."""

from __future__ import annotations

from medtl.io.errors import CorruptScanError

_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
GDCM_ONLY = {
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
}


def check_jpeg_headers(
    pixel_data: bytes, n_frames: int, size: tuple[int, int, int, int], where: str
) -> None:
    """Validate each JPEG frame's markers up to the scan against the DICOM header.

    GDCM aborts the process (rather than raising) on some inconsistent JPEG headers, e.g. a
    sample precision that disagrees with the data; checking SOF against Rows, Columns,
    SamplesPerPixel and BitsAllocated first turns those into a :class:`CorruptScanError`.

    Args:
        pixel_data: the encapsulated Pixel Data value.
        n_frames: NumberOfFrames.
        size: ``(rows, columns, samples per pixel, bits allocated)`` from the DICOM header.
        where: how to name the file in the message.

    Raises:
        CorruptScanError: a frame's JPEG header is missing or disagrees with the DICOM one.
    """
    from pydicom.encaps import generate_frames

    rows, cols, samples, bits = size
    bad = CorruptScanError(
        f"{where} has damaged JPEG pixel data (its JPEG header does not match the image). "
        "Export the image again."
    )
    count = 0
    for frame in generate_frames(pixel_data, number_of_frames=n_frames):
        count += 1
        if frame[:2] != b"\xff\xd8":
            raise bad
        pos, sof_ok, sos = 2, False, False
        while pos + 4 <= len(frame):
            if frame[pos] != 0xFF:
                raise bad
            marker = frame[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            length = int.from_bytes(frame[pos + 2 : pos + 4], "big")
            if length < 2 or pos + 2 + length > len(frame):
                raise bad
            if marker in _SOF_MARKERS:
                seg = frame[pos + 4 : pos + 2 + length]
                if len(seg) < 6:
                    raise bad
                precision = seg[0]
                height = int.from_bytes(seg[1:3], "big")
                width = int.from_bytes(seg[3:5], "big")
                if (
                    not 2 <= precision <= min(16, bits)
                    or height not in (0, rows)
                    or width != cols
                    or seg[5] != samples
                    or len(seg) < 6 + 3 * seg[5]
                ):
                    raise bad
                sof_ok = True
            if marker == 0xDA:
                sos = True
                break
            pos += 2 + length
        if not (sof_ok and sos):
            raise bad
    if count < n_frames:
        raise bad


_JPEG_SOF = _SOF_MARKERS | {0xF7}  # JPEG (SOF0-15) and JPEG-LS (SOF55)


def codestream_size(frame: bytes) -> tuple[int, int] | None:
    """``(rows, columns)`` a JPEG, JPEG-LS or JPEG 2000 codestream declares, else ``None``.

    Only the first marker segments are read (the size comes before any entropy-coded data).
    """
    head = bytes(frame[:65536])
    if head[:4] == b"\xff\x4f\xff\x51" and len(head) >= 24:  # J2K: SOC then SIZ
        xsiz, ysiz, xosiz, yosiz = (int.from_bytes(head[i : i + 4], "big") for i in (8, 12, 16, 20))
        return ysiz - yosiz, xsiz - xosiz
    if head[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 9 <= len(head) and head[pos] == 0xFF:
        marker = head[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in _JPEG_SOF:
            return (int.from_bytes(head[pos + 5 : pos + 7], "big"),
                    int.from_bytes(head[pos + 7 : pos + 9], "big"))  # fmt: skip
        if marker == 0xDA:
            return None
        pos += 2 + int.from_bytes(head[pos + 2 : pos + 4], "big")
    return None


def check_codestream_sizes(pixel_data: bytes, n_frames: int, rows: int, columns: int,
                           where: str) -> None:  # fmt: skip
    """Refuse compressed frames whose own header declares another size than the DICOM one.

    Decoders allocate what the codestream declares, so a small DICOM header in front of a
    huge JPEG 2000 or JPEG-LS codestream would bypass the size limits checked on the
    DICOM header.

    Raises:
        CorruptScanError: a frame declares a different size.
    """
    from pydicom.encaps import generate_frames

    for frame in generate_frames(pixel_data, number_of_frames=n_frames):
        size = codestream_size(frame)
        if size is None:
            continue
        height, width = size
        if width != columns or height not in (0, rows):  # JPEG may defer the height (DNL)
            raise CorruptScanError(
                f"{where}: its compressed pixel data declare an image of {height} x {width} "
                f"pixels, but the DICOM header says {rows} x {columns}. The file is damaged "
                "or crafted; export it again."
            )


__all__ = ["GDCM_ONLY", "check_codestream_sizes", "check_jpeg_headers", "codestream_size"]
