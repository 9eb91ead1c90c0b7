"""One DICOM dataset: parse it and tell images from other objects.

:func:`read_dataset` parses a file (path or bytes): the DICOM File Format with preamble, a
preamble-less stream that starts at ``DICM``, or a bare little-endian dataset without file
meta. :func:`check_image` refuses non-image objects. Pixel decoding lives in
:mod:`medtl.io.dicom_pixels`, series logic in :mod:`medtl.io.series`.

**Files without file meta** are loaded: the encoding is sniffed (implicit or explicit VR
little endian, the only encodings a bare dataset can reasonably use), the transfer syntax is
written into ``ds.file_meta`` and a warning is returned (it ends up in ``Scan.warnings``).
Encapsulated (compressed) pixel data without a transfer syntax is refused.

Messages never quote header values (they may hold PHI); files are named by position
(``File 3 of 120``) by the caller.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from medtl.io.deflated import is_deflated, read_deflated
from medtl.io.errors import (
    CorruptScanError,
    ImageTooLargeError,
    NonImageObjectError,
    ScanError,
    UnsupportedFormatError,
    is_decoder_failure,
    log_unexpected,
)
from medtl.io.limits import DecodeLimits, resolve

logger = logging.getLogger(__name__)

#: SOP classes that are not images even when they carry pixel-like data.
NON_IMAGE_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.66.4": "segmentation (SEG)",
    "1.2.840.10008.5.1.4.1.1.66.7": "label map segmentation",
    "1.2.840.10008.5.1.4.1.1.66.5": "surface segmentation",
    "1.2.840.10008.5.1.4.1.1.481.3": "radiotherapy structure set (RTSTRUCT)",
    "1.2.840.10008.5.1.4.1.1.481.5": "radiotherapy plan",
    "1.2.840.10008.5.1.4.1.1.481.2": "radiotherapy dose grid",
    "1.2.840.10008.5.1.4.1.1.88.59": "key object selection (KO)",
    "1.2.840.10008.5.1.4.1.1.104.1": "encapsulated PDF",
    "1.2.840.10008.5.1.4.1.1.66": "raw data",
    "1.2.840.10008.5.1.4.1.1.66.1": "spatial registration",
    "1.2.840.10008.1.3.10": "DICOMDIR (media directory)",
}
_SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."  # structured reports
_PR_PREFIX = "1.2.840.10008.5.1.4.1.1.11."  # presentation states
_WAVEFORM_PREFIX = "1.2.840.10008.5.1.4.1.1.9."
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_RAW_GROUPS = {0x0002, 0x0004, 0x0008, 0x0010, 0x0018, 0x0020, 0x0028}


# ----------------------------------------------------------------------------- reading


def _sniff(data: bytes) -> str | None:
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "part10"
    if data[:4] == b"DICM":
        return "dicm"
    if len(data) >= 8:
        group = int.from_bytes(data[0:2], "little")
        if group in _RAW_GROUPS:
            return "raw"
    return None


def read_dataset(source: Path | bytes, *, stop_before_pixels: bool = False) -> Dataset:
    """Parse one DICOM file.

    Accepts the DICOM File Format (128-byte preamble + ``DICM``), a stream that starts at
    ``DICM`` (no preamble), or a bare little-endian dataset without file meta (its transfer
    syntax is then sniffed and written into ``ds.file_meta``; see :func:`read_with_notes` for
    the warning).

    Args:
        source: a file path or the file's bytes.
        stop_before_pixels: skip the pixel data (faster header reads).

    Returns:
        The dataset, with ``file_meta.TransferSyntaxUID`` always set.

    Raises:
        UnsupportedFormatError: the bytes are not DICOM.
        CorruptScanError: DICOM, but the header cannot be parsed.
        ScanError: the file cannot be read.
    """
    ds, notes = read_with_notes(source, stop_before_pixels=stop_before_pixels)
    for note in notes:
        logger.warning(note)
    return ds


def read_with_notes(
    source: Path | bytes, *, stop_before_pixels: bool = False, limits: DecodeLimits | None = None
) -> tuple[Dataset, list[str]]:
    """Like :func:`read_dataset` but also return warnings (e.g. sniffed transfer syntax).

    Args:
        source: a file path or the file's bytes.
        stop_before_pixels: skip the pixel data.
        limits: size caps; a Deflated file's declared image size is checked against them
            before its pixel data are inflated (default: from the environment).

    Returns:
        ``(dataset, warnings)``.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise ScanError(
                f"The file could not be read ({type(exc).__name__}); check it exists and is "
                "readable."
            ) from exc
    kind = _sniff(data)
    if kind is None:
        raise UnsupportedFormatError(
            "This file is not DICOM (no 'DICM' marker and no recognisable DICOM header)."
        )
    if kind == "dicm":
        data = b"\0" * 128 + data
    try:
        if kind != "raw" and is_deflated(data):
            # pydicom would inflate the whole stream (header and pixels) at once.
            ds = read_deflated(data, stop_before_pixels=stop_before_pixels, limits=resolve(limits))
        else:
            ds = pydicom.dcmread(
                io.BytesIO(data), force=kind == "raw", stop_before_pixels=stop_before_pixels
            )
        notes = _ensure_transfer_syntax(ds)
        _touch_header(ds)
    except ScanError:
        raise
    except MemoryError as exc:
        raise ImageTooLargeError(
            "The DICOM file is too large to read in memory on this machine."
        ) from exc
    except BaseException as exc:  # Rust decoders (pyo3) panic as BaseException
        if not is_decoder_failure(exc):
            log_unexpected(logger, exc, "parsing a DICOM header")
            raise
        raise CorruptScanError(
            f"The DICOM header is damaged and cannot be parsed ({type(exc).__name__}). "
            "Re-export the image from the PACS or scanner."
        ) from exc
    if len(ds) == 0:
        raise CorruptScanError(
            "The DICOM file holds no readable data elements: it is truncated or damaged "
            "(for example cut inside compressed pixel data). Copy or export it again."
        )
    if kind == "raw" and not any(k in ds for k in ("SOPClassUID", "Modality", *_PIXEL_KEYWORDS)):
        raise UnsupportedFormatError(
            "This file is not DICOM (no 'DICM' marker and no SOP class, modality or pixels)."
        )
    return ds, notes


def _ensure_transfer_syntax(ds: Dataset) -> list[str]:
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return []
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    implicit, little = ds.original_encoding
    if little is False:
        raise CorruptScanError(
            "The file has no DICOM file meta header and is not little endian; it cannot be "
            "read safely. Re-export it as a standard DICOM file."
        )
    pixel = ds.get("PixelData") if "PixelData" in ds else None
    if pixel is not None and ds["PixelData"].is_undefined_length:
        raise CorruptScanError(
            "The file has compressed pixel data but no transfer syntax (file meta header "
            "missing), so the codec is unknown. Re-export it as a standard DICOM file."
        )
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    return [
        "The file has no DICOM file meta header; it was read as "
        f"{meta.TransferSyntaxUID.name} (sniffed). Prefer standard DICOM exports."
    ]


def _touch_header(ds: Dataset) -> None:
    # pydicom converts values lazily; convert the ones medtl relies on now, so a damaged
    # value fails here (as CorruptScanError) rather than later in arbitrary code.
    for keyword in (
        "SOPClassUID",
        "Modality",
        "SeriesInstanceUID",
        "Rows",
        "Columns",
        "NumberOfFrames",
        "PhotometricInterpretation",
        "SamplesPerPixel",
        "BitsAllocated",
        "BitsStored",
        "PixelRepresentation",
    ):
        ds.get(keyword)


# ---------------------------------------------------------------------- classification


def non_image_reason(ds: Dataset) -> str | None:
    """Return why ``ds`` is not an image (SOP class or missing pixel data), else ``None``."""
    sop = str(ds.get("SOPClassUID", "") or "")
    if "DirectoryRecordSequence" in ds:
        return NON_IMAGE_SOP_CLASSES["1.2.840.10008.1.3.10"]
    if sop in NON_IMAGE_SOP_CLASSES:
        return NON_IMAGE_SOP_CLASSES[sop]
    if sop.startswith(_SR_PREFIX):
        return "structured report (SR)"
    if sop.startswith(_PR_PREFIX):
        return "presentation state"
    if sop.startswith(_WAVEFORM_PREFIX):
        return "waveform"
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        return "DICOM object without pixel data"
    return None


def looks_truncated(ds: Dataset) -> bool:
    """True when ``ds`` describes an image (image SOP class or Rows) but has no pixel data,
    which usually means the file was cut short before its pixel data."""
    if any(k in ds for k in _PIXEL_KEYWORDS):
        return False
    sop = str(ds.get("SOPClassUID", "") or "")
    return "Rows" in ds or "Image Storage" in UID(sop).name if sop else "Rows" in ds


def check_image(ds: Dataset, where: str = "The file") -> None:
    """Raise :class:`NonImageObjectError` if ``ds`` is not an image.

    Args:
        ds: the dataset.
        where: how to name the file in the message (``"File 3 of 10"``).
    """
    reason = non_image_reason(ds)
    if reason is not None:
        if looks_truncated(ds):
            raise CorruptScanError(
                f"{where} describes an image but holds no pixel data: it is probably truncated. "
                "Copy or export the file again."
            )
        raise NonImageObjectError(
            f"{where} is not an image but a {reason}. medtl loads CT, MR and radiograph "
            "images; select the image series instead."
        )


def transfer_syntax(ds: Dataset) -> UID:
    """Return the dataset's transfer syntax UID."""
    return UID(str(ds.file_meta.TransferSyntaxUID))
