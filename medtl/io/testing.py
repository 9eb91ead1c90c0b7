"""Synthetic DICOM written with pydicom: one factory for tests, benchmarks and simulators.

Support code, not part of loading scans: nothing in :mod:`medtl.io` imports it. It builds real
DICOM objects from numpy arrays, so the code under test reads real bytes:

* :func:`image_dataset` - any single- or multi-frame image (CT, MR, CR, DX, SC...);
* :func:`radiograph_dataset` - a chest radiograph (CR or DX, PA view) from MONOCHROME2-polarity
  stored values, inverted for MONOCHROME1;
* :func:`chest_pixels` - a chest-like 12-bit image (two dark lungs in a bright body);
* :func:`base_dataset` and :func:`set_pixels` - the pieces the builders share (for other
  objects, e.g. SEG or SR in the tests' richer factory);
* :func:`to_bytes` and :func:`write` - serialise, with or without preamble and file meta.

No data of real people. By default the patient and study fields hold invented but
*PHI-shaped* values (:data:`FAKE_PATIENT`), so tests can assert that they never leak past
de-identification; pass ``patient=NO_PATIENT`` (empty values) for synthetic images meant to
be shared, as the CXR simulator does.

Example::

    from medtl.io.testing import chest_pixels, radiograph_dataset, to_bytes

    data = to_bytes(radiograph_dataset(chest_pixels(256), photometric="MONOCHROME1"))
"""

from __future__ import annotations

import copy
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

__all__ = [
    "AXIAL",
    "FAKE_PATIENT",
    "NO_PATIENT",
    "SOP_CLASS",
    "base_dataset",
    "chest_pixels",
    "image_dataset",
    "radiograph_dataset",
    "set_pixels",
    "to_bytes",
    "write",
]

#: Invented, PHI-shaped patient and study fields (no real person's data).
FAKE_PATIENT: Mapping[str, str] = {
    "PatientName": "Doe^Jane^Secret",
    "PatientID": "PID-98765-PHI",
    "PatientBirthDate": "19450317",
    "PatientSex": "F",
    "StudyDate": "20240102",
    "StudyTime": "101500",
    "AccessionNumber": "ACC-PHI-1",
    "ReferringPhysicianName": "Who^Doctor",
    "InstitutionName": "General Hospital PHI",
}
#: The same fields, empty (type 2 attributes present without a value).
NO_PATIENT: Mapping[str, str] = dict.fromkeys(FAKE_PATIENT, "")

#: SOP Class UIDs by modality or object kind.
SOP_CLASS: Mapping[str, str] = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
    "SC": "1.2.840.10008.5.1.4.1.1.7",
    "OT": "1.2.840.10008.5.1.4.1.1.7",
    "ENHANCED_CT": "1.2.840.10008.5.1.4.1.1.2.1",
    "ENHANCED_MR": "1.2.840.10008.5.1.4.1.1.4.1",
    "SEG": "1.2.840.10008.5.1.4.1.1.66.4",
    "SR": "1.2.840.10008.5.1.4.1.1.88.11",
    "RTSTRUCT": "1.2.840.10008.5.1.4.1.1.481.3",
    "KO": "1.2.840.10008.5.1.4.1.1.88.59",
    "PR": "1.2.840.10008.5.1.4.1.1.11.1",
}

#: ImageOrientationPatient of an axial slice.
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def base_dataset(
    modality: str,
    sop_class_uid: str,
    *,
    series_uid: str | None = None,
    study_uid: str | None = None,
    sop_instance_uid: str | None = None,
    patient: Mapping[str, str] = FAKE_PATIENT,
) -> Dataset:
    """A dataset with file meta (explicit VR little endian), UIDs and patient/study fields.

    Args:
        modality: Modality code.
        sop_class_uid: SOP Class UID.
        series_uid: SeriesInstanceUID (new one by default).
        study_uid: StudyInstanceUID (new one by default).
        sop_instance_uid: SOPInstanceUID (new one by default).
        patient: patient and study attributes by keyword.

    Returns:
        The dataset, without pixels.
    """
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    ds.SOPClassUID = UID(sop_class_uid)
    ds.SOPInstanceUID = UID(sop_instance_uid) if sop_instance_uid else generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    for key, value in patient.items():
        setattr(ds, key, value)
    ds.Modality = modality
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.Manufacturer = "medtl-tests"
    return ds


def set_pixels(ds: Dataset, pixels: np.ndarray, photometric: str, bits_stored: int | None) -> None:
    """Store ``pixels`` natively and set the Image Pixel attributes that describe them.

    Args:
        ds: the dataset to fill.
        pixels: ``(rows, cols)``, ``(frames, rows, cols)``, or with a trailing sample axis of 3
            for colour photometrics; the dtype sets BitsAllocated and PixelRepresentation.
        photometric: PhotometricInterpretation.
        bits_stored: BitsStored (default: all allocated bits).
    """
    arr = np.ascontiguousarray(pixels)
    color = photometric not in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR")
    frames = arr.ndim == (4 if color else 3)
    if frames:
        ds.NumberOfFrames = int(arr.shape[0])
    rows, cols = arr.shape[1:3] if frames else arr.shape[0:2]
    ds.Rows, ds.Columns = int(rows), int(cols)
    ds.SamplesPerPixel = 3 if color else 1
    if color:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = arr.dtype.itemsize * 8
    ds.BitsStored = bits_stored or arr.dtype.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if arr.dtype.kind == "i" else 0
    ds.PixelData = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


def image_dataset(
    pixels: np.ndarray,
    *,
    modality: str = "CT",
    sop_class_uid: str | None = None,
    photometric: str = "MONOCHROME2",
    rescale: tuple[float, float] | None = None,
    pixel_spacing: Sequence[float | str] | None = (0.5, 0.5),
    position: Sequence[float] | None = None,
    orientation: Sequence[float] | None = None,
    slice_thickness: float | None = None,
    window: tuple[float, float] | None = None,
    bits_stored: int | None = None,
    series_uid: str | None = None,
    study_uid: str | None = None,
    sop_instance_uid: str | None = None,
    instance_number: int | None = 1,
    patient: Mapping[str, str] = FAKE_PATIENT,
    **extra: object,
) -> Dataset:
    """Build an image dataset in Explicit VR Little Endian.

    Args:
        pixels: stored values (see :func:`set_pixels`); int16 -> signed 16 bit, uint8 ->
            unsigned 8 bit.
        modality: Modality code.
        sop_class_uid: defaults to the storage class of ``modality`` (SC if unknown).
        photometric: PhotometricInterpretation.
        rescale: (RescaleSlope, RescaleIntercept), written when given.
        pixel_spacing: PixelSpacing ``[row spacing, column spacing]`` or ``None``.
        position: ImagePositionPatient of the first voxel.
        orientation: ImageOrientationPatient (row cosines then column cosines).
        slice_thickness: SliceThickness.
        window: (WindowCenter, WindowWidth).
        bits_stored: BitsStored (default: all allocated bits).
        series_uid: SeriesInstanceUID (new one by default).
        study_uid: StudyInstanceUID (new one by default).
        sop_instance_uid: SOPInstanceUID (new one by default).
        instance_number: InstanceNumber (``None`` to omit).
        patient: patient and study attributes (default :data:`FAKE_PATIENT`).
        **extra: further attributes by keyword (``SpacingBetweenSlices=2.0``...), set last.

    Returns:
        The dataset, with file meta.
    """
    ds = base_dataset(
        modality,
        sop_class_uid or SOP_CLASS.get(modality, SOP_CLASS["SC"]),
        series_uid=series_uid,
        study_uid=study_uid,
        sop_instance_uid=sop_instance_uid,
        patient=patient,
    )
    if instance_number is not None:
        ds.InstanceNumber = instance_number
    set_pixels(ds, pixels, photometric, bits_stored)
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
        ds.RescaleType = "HU" if modality == "CT" else "US"
    if pixel_spacing is not None:
        ds.PixelSpacing = list(pixel_spacing)
    if position is not None:
        ds.ImagePositionPatient = [float(v) for v in position]
    if orientation is not None:
        ds.ImageOrientationPatient = [float(v) for v in orientation]
    if slice_thickness is not None:
        ds.SliceThickness = slice_thickness
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    for key, value in extra.items():
        setattr(ds, key, value)
    return ds


def radiograph_dataset(
    image: np.ndarray,
    *,
    modality: str = "CR",
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    pixel_spacing: Sequence[float | str] | None = (0.2, 0.2),
    imager_pixel_spacing: Sequence[float | str] | None = None,
    window: tuple[float, float] | None = None,
    view: str = "PA",
    body_part: str = "CHEST",
    **kwargs: object,
) -> Dataset:
    """A chest radiograph, CR or DX, from stored values in MONOCHROME2 polarity.

    Args:
        image: ``(rows, cols)`` stored values, bigger = more attenuation (bone bright); cast
            to uint16. For ``MONOCHROME1`` they are inverted (``2**bits_stored - 1 - v``), so
            that a loader that honours the photometric gets ``image`` back.
        modality: ``CR`` or ``DX`` (DX adds the For Presentation attributes).
        photometric: ``MONOCHROME1`` or ``MONOCHROME2``.
        bits_stored: BitsStored.
        pixel_spacing: PixelSpacing (at the patient), or ``None``.
        imager_pixel_spacing: ImagerPixelSpacing (at the detector), written when given.
        window: (center, width) in MONOCHROME2 values (the center is inverted with the
            pixels for MONOCHROME1).
        view: ViewPosition.
        body_part: BodyPartExamined.
        **kwargs: passed to :func:`image_dataset` (``patient=``, UIDs, further attributes).

    Returns:
        The dataset.

    Raises:
        ValueError: on another modality or photometric.
    """
    if modality not in ("CR", "DX"):
        raise ValueError(f"modality must be CR or DX, not {modality!r}")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"photometric must be MONOCHROME1/2, not {photometric!r}")
    top = (1 << bits_stored) - 1
    pixels = np.asarray(image).astype(np.uint16)
    if photometric == "MONOCHROME1":
        pixels = (top - pixels).astype(np.uint16)
        if window is not None:
            window = (top - window[0], window[1])
    ds = image_dataset(
        pixels,
        modality=modality,
        photometric=photometric,
        bits_stored=bits_stored,
        pixel_spacing=pixel_spacing,
        BodyPartExamined=body_part,
        ViewPosition=view,
        **kwargs,  # type: ignore[arg-type]
    )
    if imager_pixel_spacing is not None:
        ds.ImagerPixelSpacing = list(imager_pixel_spacing)
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = (f"{v:.0f}" for v in window)
    if modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = 1 if photometric == "MONOCHROME2" else -1
    return ds


def chest_pixels(size: int = 256, seed: int = 0, noise: float = 40.0) -> np.ndarray:
    """A chest-like 12-bit image: two dark lungs in a bright body, MONOCHROME2 polarity.

    Args:
        size: rows = columns.
        seed: seed of the Gaussian noise.
        noise: noise standard deviation, in stored values.

    Returns:
        ``(size, size)`` uint16 values in ``[0, 4095]``.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    lungs = np.exp(-(((xx - 0.3) / 0.15) ** 2 + ((yy - 0.5) / 0.3) ** 2)) + np.exp(
        -(((xx - 0.7) / 0.15) ** 2 + ((yy - 0.5) / 0.3) ** 2)
    )
    attenuation = 2600 - 1600 * lungs + rng.normal(0, noise, (size, size))
    return np.clip(attenuation, 0, 4095).astype(np.uint16)


def to_bytes(ds: Dataset, *, preamble: bool = True, file_meta: bool = True) -> bytes:
    """Serialise ``ds``.

    Args:
        ds: the dataset (its file meta TransferSyntaxUID sets the encoding).
        preamble: write the 128-byte preamble and ``DICM`` prefix (with ``file_meta``).
        file_meta: write the File Meta Information group; when ``False`` the bare dataset is
            written in its transfer syntax's encoding (only sensible for little endian).

    Returns:
        The bytes of the file.
    """
    buf = io.BytesIO()
    if file_meta:
        ds.save_as(buf, enforce_file_format=True)
        data = buf.getvalue()
        return data if preamble else data[128:]
    tsyntax = ds.file_meta.TransferSyntaxUID
    bare = copy.copy(ds)
    del bare.file_meta
    bare.save_as(
        buf,
        implicit_vr=tsyntax.is_implicit_VR,
        little_endian=tsyntax.is_little_endian,
        enforce_file_format=False,
    )
    return buf.getvalue()


def write(ds: Dataset, path: Path, **kwargs: bool) -> Path:
    """Write ``ds`` to ``path`` (keywords as in :func:`to_bytes`; folders made) and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(to_bytes(ds, **kwargs))
    return path
