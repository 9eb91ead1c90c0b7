"""NIfTI-1/NIfTI-2 loading (``.nii``, ``.nii.gz``) with nibabel.

Orientation contract (see :mod:`medtl.io.scan`):

* **Volumes** are reoriented (axis flips and permutations only, never resampled) so the
  array is ``(slices, rows, columns)`` with slices going inferior -> superior, rows
  anterior -> posterior and columns right -> left: the layout of an axial DICOM CT.
  The affine is converted from NIfTI's RAS+ world to DICOM LPS (x and y negated) and its
  columns permuted to that axis order, so ``scan.affine @ [k, j, i, 1]`` is the LPS
  position of ``scan.array[k, j, i]``. An oblique acquisition keeps its oblique affine;
  the axes are reordered to the closest anatomical axes (``nibabel.io_orientation``).
* **2D images** (or volumes with one slice) become ``(rows, columns)`` in radiological
  display order: axial -> rows anterior->posterior, columns right->left; coronal -> rows
  superior->inferior, columns right->left; sagittal -> rows superior->inferior, columns
  anterior->posterior. The affine maps ``(row, column, 0, 1)``; its third column is the
  through-plane direction times the slice thickness.
* **4D**: only the first volume is kept (a warning is added when the 4th dimension is
  larger than 1). **5D and more**: :class:`~medtl.io.errors.UnsupportedImageError`.
* Intensities are ``scl_slope``/``scl_inter`` scaled (``get_fdata(dtype=float32)``).
* Modality is the caller's hint, else ``"OT"``: NIfTI has no modality field and its
  free-text ``descrip`` is not trusted (and never copied: it may carry PHI, as may
  ``db_name``, ``aux_file`` and header extensions).
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.orientations import (
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt_transform,
)
from nibabel.spatialimages import HeaderDataError

from medtl.io.errors import (
    CorruptScanError,
    ImageTooLargeError,
    UnsupportedFormatError,
    UnsupportedImageError,
)
from medtl.io.scan import Scan

logger = logging.getLogger(__name__)

#: Largest decompressed file (bytes) accepted; guards against gzip bombs.
DEFAULT_MAX_BYTES = 4 * 1024**3
#: Largest number of voxels decoded (float32 array of 2 GiB).
DEFAULT_MAX_VOXELS = 512 * 1024**2
#: Largest slice (pixels), as for DICOM frames (:class:`medtl.io.limits.DecodeLimits`).
DEFAULT_MAX_SLICE_PIXELS = 100_000_000

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1024 * 1024
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
_XFORM_NAMES = {0: "unknown", 1: "scanner", 2: "aligned", 3: "talairach", 4: "mni", 5: "template"}


def _check_declared_size(head: bytes, max_slice_pixels: int, max_voxels: int) -> None:
    """Refuse a header that declares too many pixels per slice or voxels per volume, before
    the voxel data are inflated. Headers nibabel cannot read are left to :func:`_parse`."""
    size_le = int.from_bytes(head[:4], "little")
    size_be = int.from_bytes(head[:4], "big")
    klass: Any = nib.Nifti2Header if 540 in (size_le, size_be) else nib.Nifti1Header
    need = 540 if klass is nib.Nifti2Header else 348
    if len(head) < need:
        return
    try:
        dim = [int(d) for d in klass(binaryblock=head[:need], check=False)["dim"]]
    except (HeaderDataError, ValueError, TypeError):
        return
    ndim = dim[0]
    if not 1 <= ndim <= 7 or any(d < 1 for d in dim[1 : ndim + 1]):
        return
    shape = [*dim[1 : ndim + 1], 1, 1]
    if shape[0] * shape[1] > max_slice_pixels:
        raise ImageTooLargeError(
            f"The NIfTI header declares slices of {shape[0]} x {shape[1]} voxels, above the "
            f"limit of {max_slice_pixels} pixels per slice. Crop or downsample it first."
        )
    if shape[0] * shape[1] * shape[2] > max_voxels:
        raise ImageTooLargeError(
            f"The NIfTI header declares a volume of {shape[0] * shape[1] * shape[2]} voxels, "
            f"above the limit of {max_voxels}. Crop or downsample it before loading."
        )


def _read_capped(
    source: Path | bytes, max_bytes: int, check: Callable[[bytes], None] | None = None
) -> bytes:
    """Return the uncompressed file content, refusing more than ``max_bytes``.

    ``check`` sees the first 540 uncompressed bytes (the header) before anything else is
    inflated; a gzip stream is then inflated in chunks, stopping at ``max_bytes``."""
    if isinstance(source, bytes | bytearray | memoryview):
        raw = bytes(source)
    else:
        path = Path(source)
        with path.open("rb") as fh:
            raw = fh.read(max_bytes + 1)
    too_large = ImageTooLargeError(
        f"The NIfTI file expands to more than {max_bytes / 1024**3:.1f} GiB; "
        "crop or downsample it before loading."
    )
    if len(raw) > max_bytes:
        raise too_large
    if raw[:2] == _GZIP_MAGIC:
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
                chunks = [gz.read(540)]
                if check is not None:
                    check(chunks[0])
                total = len(chunks[0])
                while total <= max_bytes and (chunk := gz.read(_CHUNK)):
                    total += len(chunk)
                    chunks.append(chunk)
                if total > max_bytes:
                    raise too_large
                data = b"".join(chunks)
        except (EOFError, OSError, zlib.error) as exc:
            raise CorruptScanError(
                "The .nii.gz file is truncated or damaged (the gzip stream is incomplete). "
                "Copy or export the file again."
            ) from exc
    else:
        data = raw
        if check is not None:
            check(data[:540])
    if len(data) > max_bytes:
        raise too_large
    return data


def _parse(data: bytes) -> nib.Nifti1Image | nib.Nifti2Image:
    if len(data) < 348:
        raise CorruptScanError(
            "The NIfTI file is too short to hold a header; it is truncated. Export it again."
        )
    size_le = int.from_bytes(data[:4], "little")
    size_be = int.from_bytes(data[:4], "big")
    if 540 in (size_le, size_be):
        klass: Any = nib.Nifti2Image
        magic = data[4:8]
    elif 348 in (size_le, size_be):
        klass = nib.Nifti1Image
        magic = data[344:348]
    else:
        raise UnsupportedFormatError(
            "This file does not have a NIfTI-1 or NIfTI-2 header. Upload a .nii or .nii.gz file."
        )
    if magic[:3] == b"ni1" or magic[:3] == b"ni2":
        raise UnsupportedImageError(
            "This is a two-file NIfTI header (.hdr/.img pair). Convert it to a single .nii file "
            "(e.g. with nibabel or dcm2niix) and upload that."
        )
    try:
        return klass.from_bytes(data)
    except (HeaderDataError, ImageFileError, ValueError, EOFError, OSError) as exc:
        raise CorruptScanError(
            f"The NIfTI header is invalid ({type(exc).__name__}). Export the file again."
        ) from exc


def _target_shape(img: Any, warnings: list[str]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) > 4:
        raise UnsupportedImageError(
            f"The NIfTI image has {len(shape)} dimensions {shape}; medtl loads 2D images, 3D "
            "volumes and the first volume of 4D series. Split it into 3D volumes first."
        )
    if len(shape) == 4:
        warnings.append(
            f"The NIfTI file holds {shape[3]} volumes (4D); only the first volume was loaded."
        )
    if any(s < 1 for s in shape):
        raise CorruptScanError("The NIfTI header declares an empty image dimension.")
    return shape


def _voxel_data(img: Any, shape: tuple[int, ...], max_voxels: int) -> np.ndarray:
    dtype = img.header.get_data_dtype()
    if dtype.kind == "c" or dtype.fields is not None:
        raise UnsupportedImageError(
            "The NIfTI image stores complex or RGB voxels; medtl loads scalar (greyscale) "
            "images only. Convert it to magnitude or greyscale first."
        )
    spatial = shape[:3]
    if int(np.prod(spatial)) > max_voxels:
        raise ImageTooLargeError(
            f"The NIfTI volume has {int(np.prod(spatial))} voxels, above the limit of "
            f"{max_voxels}. Crop or downsample it before loading."
        )
    try:
        if len(img.shape) > 3:
            index = (slice(None),) * 3 + (0,) * (len(img.shape) - 3)
            data = np.asarray(img.dataobj[index], dtype=np.float32)
        else:
            data = img.get_fdata(dtype=np.float32)
    except (ValueError, OSError, EOFError, zlib.error) as exc:
        raise CorruptScanError(
            "The NIfTI file is truncated: it holds fewer voxels than its header declares. "
            "Copy or export the file again."
        ) from exc
    data = np.asarray(data, dtype=np.float32)
    while data.ndim < 3:
        data = data[..., np.newaxis]
    return data


def _flip_axis0(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flipped = affine.copy()
    flipped[:3, 3] = affine[:3, 3] + affine[:3, 0] * (array.shape[0] - 1)
    flipped[:3, 0] = -affine[:3, 0]
    return np.ascontiguousarray(array[::-1]), flipped


def reorient_to_lps(data: np.ndarray, affine_ras: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorder a 3D NIfTI array to ``(S, P, L)`` axes and give its LPS index affine.

    Args:
        data: voxel array indexed ``(i, j, k)`` as stored in the file.
        affine_ras: the file's voxel-to-RAS+ affine.

    Returns:
        ``(array, affine)``: the array with axes ``(inferior->superior,
        anterior->posterior, right->left)`` and the 4x4 matrix mapping
        ``(slice, row, column, 1)`` to LPS millimetres.
    """
    current = io_orientation(affine_ras)
    transform = ornt_transform(current, axcodes2ornt(("L", "P", "S")))
    reoriented = apply_orientation(data, transform)
    affine_lps_ijk = _RAS_TO_LPS @ affine_ras @ inv_ornt_aff(transform, data.shape)
    array = np.ascontiguousarray(reoriented.transpose(2, 1, 0))
    affine = np.eye(4)
    affine[:3, 0] = affine_lps_ijk[:3, 2]
    affine[:3, 1] = affine_lps_ijk[:3, 1]
    affine[:3, 2] = affine_lps_ijk[:3, 0]
    affine[:3, 3] = affine_lps_ijk[:3, 3]
    return array, affine


def _to_2d(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squeeze the one-slice axis of an ``(S, P, L)`` array into display order."""
    through = next(axis for axis in range(3) if array.shape[axis] == 1)
    in_plane = [axis for axis in range(3) if axis != through]
    out_affine = np.eye(4)
    out_affine[:3, 0] = affine[:3, in_plane[0]]
    out_affine[:3, 1] = affine[:3, in_plane[1]]
    out_affine[:3, 2] = affine[:3, through]
    out_affine[:3, 3] = affine[:3, 3]
    image = np.squeeze(array, axis=through)
    if through != 0:  # coronal or sagittal: rows go head -> feet for display
        image, out_affine = _flip_axis0(image, out_affine)
    return np.ascontiguousarray(image), out_affine


def _intent(header: Any) -> str:
    try:
        return str(header.get_intent()[0])
    except (KeyError, ValueError):  # an intent code nibabel does not know
        return "unknown"


def _bad_orientation() -> CorruptScanError:
    return CorruptScanError(
        "The NIfTI header's orientation (qform/sform) is invalid. Fix the header (e.g. reset "
        "the qform/sform) and export the file again."
    )


def _orientation(img: Any, warnings: list[str]) -> tuple[np.ndarray, int, int]:
    """The RAS affine and the sform/qform codes, after sanity checks."""
    header = img.header
    try:
        sform_code = int(header.get_sform(coded=True)[1] or 0)
        qform_code = int(header.get_qform(coded=True)[1] or 0)
        affine_ras = np.asarray(img.affine, dtype=np.float64)
    except (ValueError, np.linalg.LinAlgError) as exc:  # e.g. a non-unit quaternion
        raise _bad_orientation() from exc
    if sform_code == 0 and qform_code == 0:
        warnings.append(
            "The NIfTI header has no orientation (qform and sform codes are 0); the voxel axes "
            "were assumed to be RAS. Check left/right before using the orientation."
        )
    if not np.all(np.isfinite(affine_ras)) or abs(np.linalg.det(affine_ras[:3, :3])) < 1e-12:
        raise _bad_orientation()
    return affine_ras, sform_code, qform_code


def load_nifti(
    source: str | os.PathLike[str] | bytes,
    *,
    modality: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_voxels: int = DEFAULT_MAX_VOXELS,
    max_slice_pixels: int = DEFAULT_MAX_SLICE_PIXELS,
) -> Scan:
    """Load a NIfTI-1 or NIfTI-2 file (``.nii`` or ``.nii.gz``, detected by content).

    Args:
        source: a path or the file's bytes (gzip-compressed or not).
        modality: DICOM modality code to record (``"CT"``, ``"MR"``...); default ``"OT"``.
        max_bytes: refuse files that decompress to more than this many bytes.
        max_voxels: refuse images with more voxels than this in the first volume.
        max_slice_pixels: refuse images with more pixels than this per slice. Both are
            checked from the header, before a ``.nii.gz`` is inflated.

    Returns:
        A :class:`~medtl.io.scan.Scan` in the LPS ``(slices, rows, columns)`` convention
        described in the module docstring (``(rows, columns)`` for 2D images).

    Raises:
        CorruptScanError: truncated or damaged file.
        UnsupportedImageError: 5D+ images, complex or RGB voxels, .hdr/.img pairs.
        ImageTooLargeError: above ``max_bytes`` or ``max_voxels``.
        UnsupportedFormatError: not a NIfTI header.

    Example:
        >>> scan = load_nifti("brain.nii.gz", modality="MR")  # doctest: +SKIP
        >>> scan.summary()["orientation"]  # doctest: +SKIP
        'HPL'
    """

    def check(head: bytes) -> None:
        _check_declared_size(head, max_slice_pixels, max_voxels)

    if isinstance(source, bytes | bytearray | memoryview):
        data = _read_capped(bytes(source), max_bytes, check)
    else:
        data = _read_capped(Path(source), max_bytes, check)
    img = _parse(data)
    warnings: list[str] = []
    shape = _target_shape(img, warnings)
    header = img.header
    affine_ras, sform_code, qform_code = _orientation(img, warnings)
    voxels = _voxel_data(img, shape, max_voxels)
    try:
        array, affine = reorient_to_lps(voxels, affine_ras)
    except ValueError as exc:  # nibabel cannot match the axes to anatomical directions
        raise _bad_orientation() from exc
    singletons = sum(1 for size in array.shape if size == 1)
    if singletons > 1:
        raise UnsupportedImageError(
            f"The NIfTI image has shape {shape}: fewer than two axes longer than one voxel, "
            "so it is not an image."
        )
    if singletons == 1:
        array, affine = _to_2d(array, affine)
    n_axes = array.ndim
    spacing = tuple(float(np.linalg.norm(affine[:3, axis])) for axis in range(n_axes))
    if not np.all(np.isfinite(array)):
        warnings.append("The image contains NaN or infinite values.")
    meta: dict[str, Any] = {
        "nifti_version": 2 if isinstance(img, nib.Nifti2Image) else 1,
        "original_shape": list(shape),
        "original_axcodes": "".join(nib.aff2axcodes(affine_ras)),
        "qform_code": _XFORM_NAMES.get(qform_code, str(qform_code)),
        "sform_code": _XFORM_NAMES.get(sform_code, str(sform_code)),
        "intent": _intent(header),
        "deidentified": True,
    }
    logger.debug("loaded NIfTI image %s -> array %s", shape, array.shape)
    return Scan(
        array=array,
        spacing=spacing,
        affine=affine,
        modality=(modality or "OT").upper(),
        source_format="nifti",
        meta=meta,
        window=None,
        warnings=warnings,
    )


__all__ = ["load_nifti", "reorient_to_lps"]
