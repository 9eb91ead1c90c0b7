"""Decode one DICOM dataset's pixels to ``float32`` modality units, MONOCHROME2.

:func:`decode_frames` returns ``(frames, rows, columns)`` ready to stack; the series logic
lives in :mod:`medtl.io.series`.

Choices (documented so that readers of a scan know what they get):

* **Modality LUT**: ``RescaleSlope``/``RescaleIntercept`` (per frame from the functional
  groups of enhanced multi-frame images, else shared, else top level), or the Modality LUT
  Sequence (via :func:`pydicom.pixels.apply_modality_lut`).
* **MONOCHROME1** is inverted as ``lo + hi - value`` where ``[lo, hi]`` is the range the
  *bit depth* can represent (BitsStored, PixelRepresentation) mapped through the modality LUT
  (of the first frame); that keeps one fixed mapping for every image of a series, independent
  of content. The display window centre is mapped the same way (``lo + hi - centre``).
* **Colour** (RGB, YBR_*) becomes greyscale luminance (ITU-R BT.601: 0.299 R + 0.587 G +
  0.114 B, after pydicom's YBR to RGB conversion), with a warning.
* **PALETTE COLOR** is refused (:class:`UnsupportedImageError`): it is pseudo-colour, whose
  palette indices are not measurements.
* The VOI LUT (window) is never applied; the first window is returned for ``Scan.window``.
* **Decoders**: pydicom's plugins, preferring Pillow / pyjpegls / pylibjpeg over GDCM (see
  :data:`PREFERRED_PLUGINS`); a missing decoder raises :class:`MissingDecoderError` naming
  the pip packages (:data:`DECODER_PACKAGES`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from medtl.io.dicom import check_image, transfer_syntax
from medtl.io.dicom_jpeg import GDCM_ONLY, check_codestream_sizes, check_jpeg_headers
from medtl.io.errors import (
    CorruptScanError,
    ImageTooLargeError,
    MissingDecoderError,
    ScanError,
    UnsupportedImageError,
    is_decoder_failure,
    log_unexpected,
)
from medtl.io.limits import DecodeLimits, check_image_size, resolve
from medtl.io.limits import header_int as _int
from medtl.io.scan import Window

logger = logging.getLogger(__name__)

#: pip packages that provide a decoder, per compressed transfer syntax (permissive licences
#: only; pylibjpeg-libjpeg is GPL and deliberately not suggested).
DECODER_PACKAGES: dict[str, tuple[str, ...]] = {
    "1.2.840.10008.1.2.5": ("pylibjpeg", "pylibjpeg-rle"),  # RLE Lossless
    "1.2.840.10008.1.2.4.50": ("python-gdcm",),  # JPEG Baseline (also Pillow)
    "1.2.840.10008.1.2.4.51": ("python-gdcm",),  # JPEG Extended (also Pillow, 8-bit)
    "1.2.840.10008.1.2.4.57": ("python-gdcm",),  # JPEG Lossless, process 14
    "1.2.840.10008.1.2.4.70": ("python-gdcm",),  # JPEG Lossless, SV1
    "1.2.840.10008.1.2.4.80": ("pyjpegls",),  # JPEG-LS Lossless (or python-gdcm)
    "1.2.840.10008.1.2.4.81": ("pyjpegls",),  # JPEG-LS Near-lossless (or python-gdcm)
    "1.2.840.10008.1.2.4.90": ("pylibjpeg", "pylibjpeg-openjpeg"),  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91": ("pylibjpeg", "pylibjpeg-openjpeg"),  # JPEG 2000
    "1.2.840.10008.1.2.4.201": ("pylibjpeg", "pylibjpeg-openjpeg"),  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202": ("pylibjpeg", "pylibjpeg-openjpeg"),  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203": ("pylibjpeg", "pylibjpeg-openjpeg"),  # HTJ2K
}

#: Decoding plugin tried alone when installed. GDCM is avoided where another permissive
#: plugin exists, because damaged codestreams can make GDCM abort the whole process (a C++
#: exception escaping the Python binding) instead of raising an error; for JPEG Lossless
#: GDCM is the only permissive decoder, so it is used there.
PREFERRED_PLUGINS: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "pillow",
    "1.2.840.10008.1.2.4.51": "pillow",
    "1.2.840.10008.1.2.4.80": "pyjpegls",
    "1.2.840.10008.1.2.4.81": "pyjpegls",
    "1.2.840.10008.1.2.4.90": "pylibjpeg",
    "1.2.840.10008.1.2.4.91": "pylibjpeg",
    "1.2.840.10008.1.2.4.201": "pylibjpeg",
    "1.2.840.10008.1.2.4.202": "pylibjpeg",
    "1.2.840.10008.1.2.4.203": "pylibjpeg",
    "1.2.840.10008.1.2.5": "pylibjpeg",
}

_COLOR = {
    "RGB",
    "YBR_FULL",
    "YBR_FULL_422",
    "YBR_ICT",
    "YBR_RCT",
    "YBR_PARTIAL_420",
    "YBR_PARTIAL_422",
}


@dataclass
class DecodedFrames:
    """Pixels of one dataset in modality units.

    Attributes:
        frames: ``float32`` array ``(frames, rows, cols)``, MONOCHROME2 polarity.
        window: first VOI window (already mapped for MONOCHROME1), or ``None``.
        warnings: problems found (colour converted, ...), without header values.
    """

    frames: np.ndarray
    window: Window | None = None
    warnings: list[str] = field(default_factory=list)


def _decoder_for(ds: Dataset, where: str) -> Any:
    from pydicom.pixels import get_decoder

    uid = transfer_syntax(ds)
    packages = DECODER_PACKAGES.get(str(uid))
    try:
        decoder = get_decoder(uid)
    except NotImplementedError as exc:
        if packages:
            raise _missing(uid, packages, where) from exc
        raise UnsupportedImageError(
            f"{where} uses the transfer syntax {uid.name} ({uid}), which medtl cannot "
            "decode. Re-export it uncompressed or as JPEG 2000 / JPEG-LS."
        ) from exc
    if not decoder.is_available:
        raise _missing(uid, packages or ("python-gdcm",), where)
    return decoder


def _missing(uid: UID, packages: tuple[str, ...], where: str) -> MissingDecoderError:
    pkgs = " ".join(packages)
    return MissingDecoderError(
        f"{where} is compressed with {uid.name} ({uid}) and no installed decoder handles it. "
        f"Install one with: pip install {pkgs}"
    )


def image_size(
    ds: Dataset, where: str = "The file", limits: DecodeLimits | None = None
) -> tuple[int, int, int, int]:
    """Return ``(rows, columns, frames, samples per pixel)`` after sanity checks.

    Only the header is read: call it before anything is decoded or allocated.

    Args:
        ds: the dataset (its header is enough).
        where: how to name the file in messages.
        limits: size caps (default: :meth:`DecodeLimits.from_env`).

    Raises:
        CorruptScanError: impossible values.
        ImageTooLargeError: more pixels per frame, or voxels in all, than ``limits`` allow.
    """
    rows, cols = _int(ds, "Rows", 0), _int(ds, "Columns", 0)
    frames = _int(ds, "NumberOfFrames", 1)
    samples = _int(ds, "SamplesPerPixel", 1)
    if rows <= 0 or cols <= 0 or frames <= 0 or samples not in (1, 3):
        raise CorruptScanError(
            f"{where} has an invalid image size (rows, columns, frames or samples per pixel). "
            "The header is damaged; re-export the image."
        )
    check_image_size(rows, cols, frames, samples, resolve(limits), where)
    return rows, cols, frames, samples


def _check_native_length(ds: Dataset, where: str) -> None:
    from pydicom.pixels.utils import get_expected_length

    if "PixelData" not in ds:
        return
    expected = get_expected_length(ds, "bytes")
    actual = len(ds.PixelData)
    if actual < expected:
        raise CorruptScanError(
            f"{where} is truncated: its pixel data hold {actual} bytes where the image size "
            f"needs {expected}. Copy or export the file again (the transfer was incomplete)."
        )


def _rescale_items(ds: Dataset, n_frames: int) -> list[tuple[float, float]] | None:
    """Per-frame (slope, intercept) from functional groups, or ``None`` when absent."""
    shared = ds.get("SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared_item = _pvt(shared[0]) if shared else None
    if per_frame is None and shared_item is None:
        return None
    out = []
    for i in range(n_frames):
        item = _pvt(per_frame[i]) if per_frame is not None and i < len(per_frame) else None
        out.append(item or shared_item or (1.0, 0.0))
    return out


def _pvt(group: Dataset) -> tuple[float, float] | None:
    seq = group.get("PixelValueTransformationSequence")
    if not seq:
        return None
    item = seq[0]
    if "RescaleSlope" not in item and "RescaleIntercept" not in item:
        return None
    return _float(item, "RescaleSlope", 1.0), _float(item, "RescaleIntercept", 0.0)


def _float(ds: Dataset, keyword: str, default: float) -> float:
    value = ds.get(keyword, default)
    try:
        return float(value or default)
    except (TypeError, ValueError) as exc:  # several values, or not a number
        raise CorruptScanError(
            f"The header element {keyword} is damaged (not a single number). "
            "Export the image again."
        ) from exc


def _stored_range(ds: Dataset) -> tuple[float, float]:
    bits = _int(ds, "BitsStored", _int(ds, "BitsAllocated", 16))
    if _int(ds, "PixelRepresentation", 0) == 1:
        return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    return 0.0, float(2**bits - 1)


def _apply_modality(
    ds: Dataset,
    raw: np.ndarray,
    out: np.ndarray,
) -> tuple[float, float]:
    """Write modality values of ``raw`` (frames, rows, cols) into ``out``; return the
    modality-unit range representable by the bit depth (for MONOCHROME1 inversion)."""
    lo, hi = _stored_range(ds)
    n = raw.shape[0]
    per_frame = _rescale_items(ds, n)
    if per_frame is not None:
        for i in range(n):
            slope, intercept = per_frame[i]
            _linear(raw[i], slope, intercept, out[i])
        slope, intercept = per_frame[0]
        return tuple(sorted((lo * slope + intercept, hi * slope + intercept)))  # type: ignore[return-value]
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        out[...] = apply_modality_lut(raw, ds)
        # The LUT outputs of the two ends of the stored range bound the inversion.
        ends = apply_modality_lut(np.array([lo, hi]).astype(raw.dtype), ds)
        return float(np.min(ends)), float(np.max(ends))
    slope = _float(ds, "RescaleSlope", 1.0)
    intercept = _float(ds, "RescaleIntercept", 0.0)
    _linear(raw, slope, intercept, out)
    return tuple(sorted((lo * slope + intercept, hi * slope + intercept)))  # type: ignore[return-value]


def _linear(raw: np.ndarray, slope: float, intercept: float, out: np.ndarray) -> None:
    if not (np.isfinite(slope) and np.isfinite(intercept)):
        raise CorruptScanError("The rescale slope or intercept is not a finite number.")
    np.copyto(out, raw, casting="unsafe")
    if slope != 1.0:
        out *= np.float32(slope)
    if intercept != 0.0:
        out += np.float32(intercept)


def _window(ds: Dataset) -> Window | None:
    source: Dataset = ds
    if "WindowCenter" not in ds:
        for seq_name in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
            seq = ds.get(seq_name)
            voi = seq[0].get("FrameVOILUTSequence") if seq else None
            if voi:
                source = voi[0]
                break
    center, width = source.get("WindowCenter"), source.get("WindowWidth")
    if center is None or width is None:
        return None
    try:
        c = float(center[0] if isinstance(center, pydicom.multival.MultiValue) else center)
        w = float(width[0] if isinstance(width, pydicom.multival.MultiValue) else width)
    except (TypeError, ValueError, IndexError):
        return None
    if not (np.isfinite(c) and np.isfinite(w)) or w <= 0:
        return None
    return Window(center=c, width=w, name="from file")


def decode_frames(
    ds: Dataset,
    where: str = "The file",
    *,
    out: np.ndarray | None = None,
    limits: DecodeLimits | None = None,
) -> DecodedFrames:
    """Decode a dataset's pixels into modality units, MONOCHROME2, float32.

    Args:
        ds: an image dataset (see :func:`check_image`).
        where: how to name the file in messages.
        out: optional preallocated ``float32`` array ``(frames, rows, cols)`` to fill (saves
            a copy when stacking a series).
        limits: size caps checked from the header first (default: from the environment).

    Returns:
        :class:`DecodedFrames` with ``frames`` of shape ``(frames, rows, cols)``.

    Raises:
        ScanError: a subclass only (missing decoder, corrupt or truncated data, palette
            colour, too large).
    """
    try:
        return _decode(ds, where, out, limits)
    except ScanError:
        raise
    except MemoryError as exc:
        raise ImageTooLargeError(f"{where} is too large to decode in memory.") from exc
    except BaseException as exc:  # Rust decoders (pyo3) panic as BaseException
        if not is_decoder_failure(exc):
            log_unexpected(logger, exc, "decoding DICOM pixel data")
            raise
        raise CorruptScanError(
            f"{where}: the pixel data could not be decoded ({type(exc).__name__}); the file is "
            "probably damaged or truncated. Export it again."
        ) from exc


def _decode(
    ds: Dataset, where: str, out: np.ndarray | None, limits: DecodeLimits | None
) -> DecodedFrames:
    check_image(ds, where)
    rows, cols, n_frames, samples = image_size(ds, where, limits)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "").strip().upper()
    if photometric == "PALETTE COLOR":
        raise UnsupportedImageError(
            f"{where} is a PALETTE COLOR image: its values index a pseudo-colour palette and "
            "are not measurements, so medtl does not load it. Export the greyscale original."
        )
    if photometric not in _COLOR and photometric not in ("MONOCHROME1", "MONOCHROME2", ""):
        raise UnsupportedImageError(
            f"{where} has an unsupported photometric interpretation; medtl loads greyscale "
            "(MONOCHROME1/2) and RGB/YBR colour images."
        )
    decoder = _decoder_for(ds, where)
    if str(transfer_syntax(ds)) == "1.2.840.10008.1.2.4.51" and _int(ds, "BitsStored", 8) > 8:
        # pydicom's permissive plugins (gdcm, pillow) refuse 12-bit JPEG Extended; only
        # pylibjpeg-libjpeg (GPL, deliberately not a dependency) decodes it.
        raise MissingDecoderError(
            f"{where} is 12-bit JPEG Extended, which the installed decoders cannot read. "
            "Re-export it uncompressed or losslessly compressed, or install "
            "pip install pylibjpeg pylibjpeg-libjpeg (GPL-3.0 licence; check it suits you)."
        )
    if decoder.is_native:
        _check_native_length(ds, where)
        fast = _native_fast(ds, rows, cols, n_frames, samples, photometric)
        if fast is not None:
            return _finish_grey(ds, fast, photometric, out)
    else:
        check_codestream_sizes(ds.PixelData, n_frames, rows, cols, where)
    plugin = PREFERRED_PLUGINS.get(str(transfer_syntax(ds)), "")
    if decoder.is_native or plugin not in decoder.available_plugins:
        plugin = ""
    if not plugin and str(transfer_syntax(ds)) in GDCM_ONLY:
        check_jpeg_headers(
            ds.PixelData, n_frames, (rows, cols, samples, _int(ds, "BitsAllocated", 16)), where
        )
    raw, props = decoder.as_array(ds, as_rgb=True, decoding_plugin=plugin)
    warnings: list[str] = []
    color = samples == 3 or photometric in _COLOR
    if color:
        raw = raw.reshape((n_frames, rows, cols, 3))
        result_pi = str(props.get("photometric_interpretation", photometric))
        if result_pi.startswith("YBR"):
            from pydicom.pixels import convert_color_space

            raw = convert_color_space(raw, result_pi, "RGB")
        rgb = raw.astype(np.float32, copy=False)
        luminance = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
        target = out if out is not None else np.empty((n_frames, rows, cols), np.float32)
        target[...] = luminance
        warnings.append(
            f"Colour ({photometric}) image converted to greyscale luminance (ITU-R BT.601)."
        )
        return DecodedFrames(target, _window(ds), warnings)
    return _finish_grey(ds, raw.reshape((n_frames, rows, cols)), photometric, out)


def _native_fast(
    ds: Dataset, rows: int, cols: int, n_frames: int, samples: int, photometric: str
) -> np.ndarray | None:
    """Stored values of common native greyscale data straight from the buffer, or ``None``.

    pydicom's decoder sets up and validates a runner per call (about 1 ms per 512x512
    slice); for plain little-endian 8/16/32-bit greyscale the bytes already are the array.
    Values are only used when every one already fits BitsStored (no masking or sign
    extension needed), which gives exactly pydicom's result; otherwise pydicom decodes.
    """
    bits = _int(ds, "BitsAllocated", 0)
    if (
        samples != 1
        or bits not in (8, 16, 32)
        or "PixelData" not in ds
        or not transfer_syntax(ds).is_little_endian
        or transfer_syntax(ds).is_deflated
        or photometric not in ("MONOCHROME1", "MONOCHROME2", "")
    ):
        return None
    signed = _int(ds, "PixelRepresentation", 0) == 1
    stored = _int(ds, "BitsStored", bits)
    count = rows * cols * n_frames
    raw = np.frombuffer(
        ds.PixelData, dtype=f"<{'i' if signed else 'u'}{bits // 8}", count=count
    ).reshape((n_frames, rows, cols))
    if stored < bits:
        lo, hi = _stored_range(ds)
        if raw.size and (raw.min() < lo or raw.max() > hi):
            return None
    elif stored > bits:
        return None
    return raw


def _finish_grey(
    ds: Dataset, raw: np.ndarray, photometric: str, out: np.ndarray | None
) -> DecodedFrames:
    warnings: list[str] = []
    target = out if out is not None else np.empty(raw.shape, np.float32)
    lo, hi = _apply_modality(ds, raw, target)
    window = _window(ds)
    if photometric == "MONOCHROME1":
        np.subtract(np.float32(lo + hi), target, out=target)
        if window is not None:
            window = Window(center=lo + hi - window.center, width=window.width, name=window.name)
    if raw.dtype.kind == "f" and not np.all(np.isfinite(target)):
        warnings.append("The image contains non-finite (NaN or infinite) pixel values.")
    return DecodedFrames(target, window, warnings)
