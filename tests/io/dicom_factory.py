"""Write real DICOM test files with pydicom.

A small, documented toolkit other tests import to build DICOM objects from numpy arrays. Its
core (:func:`image_dataset`, :func:`to_bytes`, :func:`write`, the fake patient fields) is the
package's one synthetic-DICOM factory, :mod:`medtl.io.testing`, re-exported here; this module
adds the richer builders the io tests need:

* :func:`image_dataset` - any single- or multi-frame image (CT, MR, CR, DX, SC...).
* :func:`ct_slice`, :func:`mr_slice`, :func:`cr_image`, :func:`dx_image` - common shortcuts.
* :func:`ct_series` - one dataset per slice of a volume, with correct IPP/IOP (optional gantry
  tilt, dropped slices, scrambled InstanceNumbers).
* :func:`multiframe` - a classic multi-frame image (frames, no per-frame geometry).
* :func:`enhanced_multiframe` - an Enhanced CT/MR image whose geometry and rescale live only in
  the Shared/Per-frame Functional Groups.
* :func:`non_image` - SEG, SR, RTSTRUCT, KO or presentation state objects.
* :func:`encode` - re-encode a dataset in any transfer syntax (native, deflated, RLE, JPEG
  baseline via Pillow, JPEG-LS, JPEG 2000).
* :func:`gdcm_encode` - JPEG Lossless (process 14, SV1) and JPEG Extended, which pydicom
  cannot encode, via python-gdcm.
* :func:`to_bytes` / :func:`write` / :func:`write_series` - serialise (with or without preamble
  and file meta).

JPEG 2000 encoding (openjpeg) needs images of at least 32 x 32 pixels.

Every dataset carries fake but PHI-shaped patient fields (:data:`PATIENT_NAME`,
:data:`PATIENT_ID`, :data:`PATIENT_BIRTH_DATE`) so tests can assert they never leak.

Example::

    vol = np.arange(4 * 8 * 8, dtype=np.int16).reshape(4, 8, 8)
    paths = write_series(ct_series(vol, spacing=(2.5, 0.7, 0.7)), tmp_path, shuffle_seed=1)
"""

from __future__ import annotations

import copy
import io
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)

from medtl.io.testing import (
    AXIAL,
    FAKE_PATIENT,
    SOP_CLASS,
    base_dataset,
    image_dataset,
    set_pixels,
    to_bytes,
    write,
)

__all__ = [
    "AXIAL",
    "PATIENT_BIRTH_DATE",
    "PATIENT_ID",
    "PATIENT_NAME",
    "SOP_CLASS",
    "cr_image",
    "ct_series",
    "ct_slice",
    "dx_image",
    "encode",
    "enhanced_multiframe",
    "gdcm_encode",
    "image_dataset",
    "mr_slice",
    "multiframe",
    "non_image",
    "to_bytes",
    "write",
    "write_series",
]

PATIENT_NAME = FAKE_PATIENT["PatientName"]
PATIENT_ID = FAKE_PATIENT["PatientID"]
PATIENT_BIRTH_DATE = FAKE_PATIENT["PatientBirthDate"]


def ct_slice(
    pixels: np.ndarray,
    *,
    rescale: tuple[float, float] = (1.0, -1024.0),
    position: Sequence[float] = (0.0, 0.0, 0.0),
    orientation: Sequence[float] = AXIAL,
    **kwargs: object,
) -> Dataset:
    """One axial CT slice (int16 stored values, HU = stored * slope + intercept)."""
    kwargs.setdefault("slice_thickness", 1.0)
    return image_dataset(
        pixels, modality="CT", rescale=rescale, position=position, orientation=orientation, **kwargs
    )


def mr_slice(
    pixels: np.ndarray,
    *,
    position: Sequence[float] = (0.0, 0.0, 0.0),
    orientation: Sequence[float] = AXIAL,
    **kwargs: object,
) -> Dataset:
    """One MR slice (no rescale unless given)."""
    return image_dataset(
        pixels, modality="MR", position=position, orientation=orientation, **kwargs
    )


def cr_image(pixels: np.ndarray, **kwargs: object) -> Dataset:
    """A computed radiograph (no patient geometry)."""
    kwargs.setdefault("pixel_spacing", (0.2, 0.2))
    return image_dataset(pixels, modality="CR", **kwargs)


def dx_image(
    pixels: np.ndarray,
    *,
    imager_pixel_spacing: tuple[float, float] = (0.15, 0.15),
    **kwargs: object,
) -> Dataset:
    """A digital radiograph with ImagerPixelSpacing only (no PixelSpacing)."""
    kwargs.setdefault("pixel_spacing", None)
    ds = image_dataset(pixels, modality="DX", **kwargs)
    ds.ImagerPixelSpacing = list(imager_pixel_spacing)
    return ds


def ct_series(
    volume: np.ndarray,
    *,
    spacing: tuple[float, float, float] = (2.0, 0.5, 0.5),
    origin: Sequence[float] = (-10.0, -20.0, 30.0),
    orientation: Sequence[float] = AXIAL,
    rescale: tuple[float, float] = (1.0, -1024.0),
    tilt_deg: float = 0.0,
    drop: Sequence[int] = (),
    scramble_instance_numbers: bool = True,
    modality: str = "CT",
    seed: int = 0,
    **kwargs: object,
) -> list[Dataset]:
    """One dataset per slice of ``volume`` (stored values, shape ``(slices, rows, cols)``).

    Slice ``k`` sits at ``origin + k * spacing[0] * normal`` (plus a shift along the column
    direction of ``tan(tilt_deg) * k * spacing[0]`` to mimic gantry tilt).

    Args:
        volume: stored values per slice.
        spacing: (slice spacing, row spacing, column spacing) in mm.
        origin: ImagePositionPatient of slice 0.
        orientation: ImageOrientationPatient.
        rescale: RescaleSlope and RescaleIntercept.
        tilt_deg: gantry tilt angle in degrees.
        drop: slice indices to omit (to simulate missing slices).
        scramble_instance_numbers: give InstanceNumbers in a random order (so a loader that
            sorts by them fails).
        modality: CT or MR.
        seed: random seed for the scrambling.
        **kwargs: passed to :func:`image_dataset`.

    Returns:
        The datasets, in slice order (drop-ped ones removed).
    """
    iop = np.asarray(orientation, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    series_uid = str(kwargs.pop("series_uid", None) or generate_uid())
    study_uid = str(kwargs.pop("study_uid", None) or generate_uid())
    numbers = list(range(1, volume.shape[0] + 1))
    if scramble_instance_numbers:
        random.Random(seed).shuffle(numbers)
    out = []
    for k in range(volume.shape[0]):
        if k in drop:
            continue
        shift = np.tan(np.radians(tilt_deg)) * k * spacing[0] * iop[3:]
        pos = np.asarray(origin, dtype=float) + k * spacing[0] * normal + shift
        kwargs.setdefault("slice_thickness", spacing[0])
        out.append(
            image_dataset(
                volume[k],
                modality=modality,
                rescale=rescale,
                pixel_spacing=spacing[1:],
                position=pos,
                orientation=orientation,
                series_uid=series_uid,
                study_uid=study_uid,
                instance_number=numbers[k],
                **kwargs,
            )
        )
    return out


def multiframe(frames: np.ndarray, *, modality: str = "MR", **kwargs: object) -> Dataset:
    """A classic multi-frame image: NumberOfFrames > 1, no per-frame geometry."""
    kwargs.setdefault("sop_class_uid", SOP_CLASS["SC"] if modality == "OT" else None)
    return image_dataset(frames, modality=modality, **kwargs)


def _item(**attrs: object) -> Dataset:
    item = Dataset()
    for key, value in attrs.items():
        setattr(item, key, value)
    return item


def enhanced_multiframe(
    volume: np.ndarray,
    *,
    modality: str = "CT",
    spacing: tuple[float, float, float] = (1.5, 0.8, 0.8),
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    orientation: Sequence[float] = AXIAL,
    shared_rescale: tuple[float, float] | None = (1.0, -1024.0),
    per_frame_rescale: Sequence[tuple[float, float]] | None = None,
    frame_order: Sequence[int] | None = None,
    **kwargs: object,
) -> Dataset:
    """An Enhanced CT/MR image: geometry and rescale only in functional groups.

    Args:
        volume: stored values ``(frames, rows, cols)`` in slice order.
        modality: ``CT`` or ``MR``.
        spacing: (slice spacing, row spacing, column spacing).
        origin: position of slice 0.
        orientation: ImageOrientationPatient (shared).
        shared_rescale: slope/intercept in the Shared group's PixelValueTransformationSequence.
        per_frame_rescale: slope/intercept per *slice* in the Per-frame groups (overrides shared).
        frame_order: order in which slices are stored as frames (default: slice order), to test
            that a loader sorts frames by position.
        **kwargs: passed to :func:`image_dataset`.

    Returns:
        The dataset (no top-level IPP/IOP/PixelSpacing/Rescale).
    """
    order = list(frame_order) if frame_order is not None else list(range(volume.shape[0]))
    sop = SOP_CLASS["ENHANCED_CT" if modality == "CT" else "ENHANCED_MR"]
    ds = image_dataset(
        volume[order], modality=modality, sop_class_uid=sop, pixel_spacing=None, **kwargs
    )
    iop = np.asarray(orientation, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    shared = _item(
        PixelMeasuresSequence=DicomSequence(
            [
                _item(
                    PixelSpacing=list(spacing[1:]),
                    SliceThickness=spacing[0],
                    SpacingBetweenSlices=spacing[0],
                )
            ]
        ),
        PlaneOrientationSequence=DicomSequence([_item(ImageOrientationPatient=list(iop))]),
    )
    if shared_rescale is not None:
        shared.PixelValueTransformationSequence = DicomSequence(
            [
                _item(
                    RescaleSlope=shared_rescale[0],
                    RescaleIntercept=shared_rescale[1],
                    RescaleType="HU" if modality == "CT" else "US",
                )
            ]
        )
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    per_frame = []
    for k in order:
        pos = np.asarray(origin, dtype=float) + k * spacing[0] * normal
        item = _item(
            PlanePositionSequence=DicomSequence(
                [_item(ImagePositionPatient=[float(v) for v in pos])]
            )
        )
        item.FrameContentSequence = DicomSequence([_item(InStackPositionNumber=k + 1)])
        if per_frame_rescale is not None:
            slope, intercept = per_frame_rescale[k]
            item.PixelValueTransformationSequence = DicomSequence(
                [_item(RescaleSlope=slope, RescaleIntercept=intercept, RescaleType="US")]
            )
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    return ds


def non_image(kind: str, *, with_pixels: bool = False) -> Dataset:
    """A non-image object: ``SEG``, ``SR``, ``RTSTRUCT``, ``KO`` or ``PR``.

    Args:
        kind: one of the keys above.
        with_pixels: give it (binary-segmentation-like) PixelData, so a loader must decide by
            SOP Class rather than by the absence of pixels.

    Returns:
        The dataset.
    """
    modality = {"PR": "PR", "KO": "KO", "SR": "SR", "SEG": "SEG", "RTSTRUCT": "RTSTRUCT"}[kind]
    ds = base_dataset(modality, SOP_CLASS[kind])
    ds.InstanceNumber = 1
    if kind in ("SR", "KO"):
        ds.ValueType = "CONTAINER"
        ds.ContentSequence = DicomSequence([_item(ValueType="TEXT", TextValue="finding")])
    if with_pixels:
        set_pixels(ds, np.zeros((2, 8, 8), dtype=np.uint8), "MONOCHROME2", None)
    return ds


def _jpeg_baseline(ds: Dataset, quality: int) -> None:
    from PIL import Image

    arr = np.asarray(ds.pixel_array)
    if arr.dtype != np.uint8:
        raise ValueError("JPEG baseline needs 8-bit data")
    frames = arr if int(ds.get("NumberOfFrames", 1) or 1) > 1 else arr[None]
    encoded = []
    for frame in frames:
        buf = io.BytesIO()
        mode = "RGB" if frame.ndim == 3 else "L"
        Image.fromarray(frame, mode=mode).save(buf, format="JPEG", quality=quality)
        encoded.append(buf.getvalue())
    ds.PixelData = encapsulate(encoded)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    if ds.SamplesPerPixel == 3:
        ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.LossyImageCompression = "01"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit


def encode(ds: Dataset, transfer_syntax: str, **kwargs: object) -> Dataset:
    """Return a copy of ``ds`` whose pixel data use ``transfer_syntax``.

    Native syntaxes (implicit/explicit little endian, explicit big endian, deflated) take
    effect when the dataset is written (:func:`to_bytes`); big endian pixel words are
    byte-swapped here. Compressed syntaxes use :meth:`pydicom.Dataset.compress` (RLE,
    JPEG-LS, JPEG 2000; pass ``jls_error=``, ``j2k_cr=`` or ``j2k_psnr=`` for lossy), and
    JPEG Baseline 8-bit is encoded with Pillow then encapsulated (``quality=`` keyword).

    Args:
        ds: an uncompressed (explicit VR little endian) dataset from this factory.
        transfer_syntax: the target Transfer Syntax UID.
        **kwargs: encoder options.

    Returns:
        A new dataset.
    """
    out = copy.deepcopy(ds)
    uid = UID(transfer_syntax)
    if uid in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian):
        out.file_meta.TransferSyntaxUID = uid
    elif uid == ExplicitVRBigEndian:
        arr = np.frombuffer(out.PixelData, dtype=f"<u{out.BitsAllocated // 8}")
        out.PixelData = arr.astype(arr.dtype.newbyteorder(">")).tobytes()
        out.file_meta.TransferSyntaxUID = uid
    elif uid == JPEGBaseline8Bit:
        _jpeg_baseline(out, int(kwargs.get("quality", 95)))  # type: ignore[call-overload]
    else:
        out.compress(uid, generate_instance_uid=False, **kwargs)  # type: ignore[arg-type]
    return out


_GDCM_SYNTAXES = {
    "1.2.840.10008.1.2.4.57": "JPEGLosslessProcess14",
    "1.2.840.10008.1.2.4.70": "JPEGLosslessProcess14_1",
    "1.2.840.10008.1.2.4.51": "JPEGExtendedProcess2_4",
    "1.2.840.10008.1.2.4.50": "JPEGBaselineProcess1",
}


def gdcm_encode(ds: Dataset, transfer_syntax: str) -> Dataset:
    """Return a copy of ``ds`` compressed by python-gdcm (JPEG Lossless / Extended).

    GDCM reads and writes files only, so this goes through a temporary folder.

    Args:
        ds: an uncompressed dataset from this factory.
        transfer_syntax: one of JPEG Lossless (``.57``), JPEG Lossless SV1 (``.70``) or JPEG
            Extended (``.51``).

    Returns:
        The compressed dataset, read back with pydicom.
    """
    import tempfile

    import gdcm
    import pydicom

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.dcm", Path(tmp) / "out.dcm"
        src.write_bytes(to_bytes(ds))
        reader = gdcm.ImageReader()
        reader.SetFileName(str(src))
        if not reader.Read():
            raise RuntimeError("gdcm could not read the dataset")
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(
            gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, _GDCM_SYNTAXES[str(transfer_syntax)]))
        )
        change.SetInput(reader.GetImage())
        if not change.Change():
            raise RuntimeError("gdcm could not encode the dataset")
        writer = gdcm.ImageWriter()
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        writer.SetFileName(str(dst))
        if not writer.Write():
            raise RuntimeError("gdcm could not write the dataset")
        return pydicom.dcmread(io.BytesIO(dst.read_bytes()))


def write_series(
    datasets: Sequence[Dataset],
    folder: Path,
    *,
    shuffle_seed: int | None = None,
    prefix: str = "img",
) -> list[Path]:
    """Write each dataset to ``folder/<prefix>NNNN.dcm``.

    Args:
        datasets: the datasets (e.g. from :func:`ct_series`).
        folder: destination folder (created).
        shuffle_seed: when given, file names are assigned in a shuffled order so that the
            lexical file order differs from the slice order.
        prefix: file-name prefix.

    Returns:
        The paths, in the order of ``datasets``.
    """
    names = list(range(len(datasets)))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(names)
    return [
        write(ds, Path(folder) / f"{prefix}{n:04d}.dcm")
        for ds, n in zip(datasets, names, strict=True)
    ]
