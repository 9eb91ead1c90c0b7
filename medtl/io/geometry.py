"""DICOM geometry: per-frame positions/orientations, slice sorting, spacing checks, affines.

Conventions follow :mod:`medtl.io.scan`: the affine maps ``(slice, row, column, 1)`` (or
``(row, column, 0, 1)`` for 2D images) to LPS patient coordinates in mm.

* ``PixelSpacing`` is ``[row spacing, column spacing]``: moving one *row* down goes
  ``PixelSpacing[0]`` mm along the *column* direction cosines (IOP[3:6]); moving one column
  right goes ``PixelSpacing[1]`` mm along the row direction cosines (IOP[0:3]).
* Slices are sorted by ImagePositionPatient projected on the slice normal (row cosines x
  column cosines), never by InstanceNumber or file name. The slice spacing is the median
  distance between consecutive projected positions.
* The slice column of the affine is the actual step between slices (so a gantry tilt
  appears as a shear), scaled so that its component along the normal equals the spacing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset

from medtl.io.errors import SeriesError, UnsupportedImageError

#: Orientation cosines differing by more than this are "different orientations".
ORIENTATION_TOL = 1e-3
#: Positions closer than this (mm, along the normal) are duplicates.
DUPLICATE_TOL_MM = 1e-3
#: Relative spread of slice gaps tolerated before warning about non-uniform spacing.
UNIFORM_REL_TOL = 0.01
#: Gantry tilt (degrees) below which no warning is given.
TILT_TOL_DEG = 0.05

_LETTERS = {
    "L": (1, 0, 0),
    "R": (-1, 0, 0),
    "P": (0, 1, 0),
    "A": (0, -1, 0),
    "H": (0, 0, 1),
    "F": (0, 0, -1),
}


@dataclass
class FrameGeometry:
    """Where one frame (2D image) sits in the patient.

    Attributes:
        position: ImagePositionPatient (3,) or ``None``.
        orientation: ImageOrientationPatient (6,) or ``None``.
        pixel_spacing: ``(row spacing, column spacing)`` in mm or ``None``.
        spacing_note: a warning about where the pixel spacing came from, if not PixelSpacing.
        slice_thickness: SliceThickness (mm) or ``None``.
        spacing_between_slices: SpacingBetweenSlices (mm) or ``None``.
    """

    position: np.ndarray | None = None
    orientation: np.ndarray | None = None
    pixel_spacing: tuple[float, float] | None = None
    spacing_note: str | None = None
    slice_thickness: float | None = None
    spacing_between_slices: float | None = None


@dataclass
class VolumeGeometry:
    """Result of stacking frames: sort order, spacing, affine and warnings."""

    order: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    warnings: list[str] = field(default_factory=list)


def _floats(value: object, n: int) -> np.ndarray | None:
    if value is None:
        return None
    try:
        arr = np.asarray([float(v) for v in value], dtype=np.float64)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return None
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        return None
    return arr


def _positive(value: object) -> float | None:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) and out > 0 else None


def _spacing_pair(value: object) -> tuple[float, float] | None:
    arr = _floats(value, 2)
    if arr is None or np.any(arr <= 0):
        return None
    return float(arr[0]), float(arr[1])


def _group_item(ds: Dataset, index: int, seq_name: str) -> Dataset | None:
    """First item of ``seq_name`` in per-frame group ``index``, else in the shared group."""
    for group_name, i in (
        ("PerFrameFunctionalGroupsSequence", index),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        groups = ds.get(group_name)
        if groups is not None and i < len(groups):
            seq = groups[i].get(seq_name)
            if seq:
                return seq[0]
    return None


def _classic_spacing(ds: Dataset) -> tuple[tuple[float, float] | None, str | None]:
    spacing = _spacing_pair(ds.get("PixelSpacing"))
    if spacing is not None:
        return spacing, None
    imager = _spacing_pair(ds.get("ImagerPixelSpacing"))
    if imager is not None:
        magnification = _positive(ds.get("EstimatedRadiographicMagnificationFactor"))
        if magnification:
            return (
                (imager[0] / magnification, imager[1] / magnification),
                "Pixel spacing is ImagerPixelSpacing corrected by the estimated "
                "radiographic magnification factor.",
            )
        return imager, (
            "Pixel spacing is ImagerPixelSpacing (at the detector, not corrected "
            "for geometric magnification)."
        )
    scanned = _spacing_pair(ds.get("NominalScannedPixelSpacing"))
    if scanned is not None:
        return scanned, "Pixel spacing is NominalScannedPixelSpacing (digitised film)."
    return None, None


def frame_geometries(ds: Dataset, n_frames: int) -> list[FrameGeometry]:
    """Return the geometry of each frame of ``ds``.

    Enhanced multi-frame images take position, orientation and pixel measures from the
    Per-frame (else Shared) Functional Groups; classic images from the top level (a classic
    multi-frame image gets the top-level position for frame 0 only, and no position for
    the other frames).

    Args:
        ds: the dataset.
        n_frames: its number of frames.

    Returns:
        One :class:`FrameGeometry` per frame.
    """
    top_spacing, note = _classic_spacing(ds)
    top = FrameGeometry(
        position=_floats(ds.get("ImagePositionPatient"), 3),
        orientation=_floats(ds.get("ImageOrientationPatient"), 6),
        pixel_spacing=top_spacing,
        spacing_note=note,
        slice_thickness=_positive(ds.get("SliceThickness")),
        spacing_between_slices=_positive(ds.get("SpacingBetweenSlices")),
    )
    enhanced = "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds
    if not enhanced:
        if n_frames == 1:
            return [top]
        rest = [
            FrameGeometry(
                orientation=top.orientation,
                pixel_spacing=top.pixel_spacing,
                spacing_note=note,
                slice_thickness=top.slice_thickness,
                spacing_between_slices=top.spacing_between_slices,
            )
            for _ in range(n_frames - 1)
        ]
        return [top, *rest]
    out = []
    for i in range(n_frames):
        pos = _group_item(ds, i, "PlanePositionSequence")
        ori = _group_item(ds, i, "PlaneOrientationSequence")
        meas = _group_item(ds, i, "PixelMeasuresSequence")
        spacing = _spacing_pair(meas.get("PixelSpacing")) if meas is not None else None
        position = _floats(pos.get("ImagePositionPatient"), 3) if pos is not None else None
        orientation = _floats(ori.get("ImageOrientationPatient"), 6) if ori is not None else None
        out.append(
            FrameGeometry(
                position=position if position is not None else (top.position if i == 0 else None),
                orientation=orientation if orientation is not None else top.orientation,
                pixel_spacing=spacing or top.pixel_spacing,
                spacing_note=None if spacing else note,
                slice_thickness=(
                    _positive(meas.get("SliceThickness")) if meas is not None else None
                )
                or top.slice_thickness,
                spacing_between_slices=(
                    _positive(meas.get("SpacingBetweenSlices")) if meas is not None else None
                )
                or top.spacing_between_slices,
            )
        )
    return out


def _unit(vec: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else vec


def _in_plane(geom: FrameGeometry, ds: Dataset | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Return (column-direction, row-direction) unit vectors (i.e. the directions of
    increasing row index and increasing column index) and warnings."""
    if geom.orientation is not None:
        return _unit(geom.orientation[3:]), _unit(geom.orientation[:3]), []
    codes = ds.get("PatientOrientation") if ds is not None else None
    if codes is not None and len(codes) == 2:
        vecs = []
        for code in codes:
            vec = np.zeros(3)
            for letter in str(code).upper():
                vec += np.asarray(_LETTERS.get(letter, (0, 0, 0)), dtype=float)
            vecs.append(_unit(vec))
        # PatientOrientation gives the direction of the row (increasing column), then of
        # the column (increasing row).
        if all(np.any(v) for v in vecs):
            return vecs[1], vecs[0], []
    return (
        np.array([1.0, 0.0, 0.0]),
        np.array([0.0, 1.0, 0.0]),
        [
            "Patient orientation unknown (no ImageOrientationPatient or PatientOrientation): "
            "the affine maps rows to x and columns to y."
        ],
    )


def image_geometry(
    geom: FrameGeometry,
    ds: Dataset | None = None,
) -> tuple[tuple[float, float], np.ndarray, list[str]]:
    """Spacing, affine and warnings of a single 2D image.

    Args:
        geom: the frame's geometry.
        ds: the dataset (for PatientOrientation of projection radiographs).

    Returns:
        ``((row spacing, column spacing), 4x4 affine, warnings)``; the affine maps
        ``(row, column, 0, 1)``; its third column is the slice normal times the slice
        thickness (or 1 mm).
    """
    warnings: list[str] = []
    spacing = geom.pixel_spacing
    if spacing is None:
        spacing = (1.0, 1.0)
        warnings.append(
            "The image has no pixel spacing; 1 mm is assumed. Measurements in mm are not reliable."
        )
    elif geom.spacing_note:
        warnings.append(geom.spacing_note)
    down, right, notes = _in_plane(geom, ds)
    warnings.extend(notes)
    affine = np.eye(4)
    affine[:3, 0] = down * spacing[0]
    affine[:3, 1] = right * spacing[1]
    affine[:3, 2] = _unit(np.cross(right, down)) * (geom.slice_thickness or 1.0)
    if geom.position is not None:
        affine[:3, 3] = geom.position
    return (float(spacing[0]), float(spacing[1])), affine, warnings


def stack_unpositioned(
    geoms: list[FrameGeometry],
    ds: Dataset | None = None,
) -> VolumeGeometry:
    """Geometry of frames stacked in stored order (a multi-frame image without positions).

    The slice spacing is SpacingBetweenSlices, else SliceThickness, else 1 mm, with a
    warning that the slice geometry is not known from the file.
    """
    first = geoms[0]
    (row_sp, col_sp), affine, warnings = image_geometry(first, ds)
    step = first.spacing_between_slices or first.slice_thickness
    source = (
        "SpacingBetweenSlices"
        if first.spacing_between_slices
        else "SliceThickness"
        if first.slice_thickness
        else None
    )
    if step is None:
        step = 1.0
        warnings.append(
            f"The {len(geoms)} frames have no per-frame positions and no slice "
            "spacing: stacked in stored order with 1 mm assumed between frames; "
            "3D measurements are not reliable."
        )
    else:
        warnings.append(
            f"The {len(geoms)} frames have no per-frame positions: stacked in "
            f"stored order with {step:g} mm between frames (from {source}); the "
            "slice geometry is not verified."
        )
    vol_affine = np.eye(4)
    vol_affine[:3, 0] = _unit(affine[:3, 2]) * step
    vol_affine[:3, 1] = affine[:3, 0]
    vol_affine[:3, 2] = affine[:3, 1]
    vol_affine[:3, 3] = affine[:3, 3]
    return VolumeGeometry(
        np.arange(len(geoms)), (float(step), row_sp, col_sp), vol_affine, warnings
    )


def _gap_warnings(real: np.ndarray, median: float) -> list[str]:
    """Warnings about missing slices and non-uniform spacing (``real``: sorted gaps in mm)."""
    warnings = []
    missing_at = np.nonzero(real > 1.5 * median)[0]
    for idx in missing_at:
        k = round(float(real[idx]) / median) - 1
        warnings.append(
            f"About {max(k, 1)} slice(s) appear to be missing after sorted slice {idx + 1} "
            f"(gap {real[idx]:.3g} mm where the median spacing is {median:.3g} mm). Check the "
            "export is complete; the volume is not resampled."
        )
    regular = np.delete(real, missing_at)
    if regular.size and (regular.max() - regular.min()) > max(UNIFORM_REL_TOL * median, 1e-3):
        warnings.append(
            f"Slice spacing is not uniform ({regular.min():.4g} to {regular.max():.4g} mm; "
            f"median {median:.4g} mm used). Resample before measuring in 3D."
        )
    return warnings


def stack_positioned(geoms: list[FrameGeometry]) -> VolumeGeometry:
    """Sort frames along the slice normal and check the spacing.

    Args:
        geoms: frames that all have a position and an orientation.

    Returns:
        The :class:`VolumeGeometry` (``order`` indexes ``geoms``).

    Raises:
        SeriesError: mixed orientations or pixel spacings.
        UnsupportedImageError: all frames at one position (a time series, not a volume).
    """
    orientations = np.stack([g.orientation for g in geoms])  # type: ignore[misc]
    if np.max(np.abs(orientations - orientations[0])) > ORIENTATION_TOL:
        n_distinct = len({tuple(np.round(o, 3)) for o in orientations})
        raise SeriesError(
            f"The series mixes {n_distinct} image orientations (e.g. axial and sagittal "
            "images, or a localiser), so its slices cannot be stacked into one volume. Export "
            "the images of one orientation as their own series."
        )
    warnings: list[str] = []
    spacings = [g.pixel_spacing for g in geoms]
    if all(s is None for s in spacings):
        spacings = [(1.0, 1.0)] * len(geoms)
        warnings.append(
            "The series has no pixel spacing; 1 mm is assumed in-plane. "
            "Measurements in mm are not reliable."
        )
    if (
        any(s is None for s in spacings)
        or np.max(np.abs(np.asarray(spacings, dtype=float) - np.asarray(spacings[0]))) > 1e-4
    ):
        raise SeriesError(
            "The slices of the series have different (or missing) pixel spacings, so they "
            "cannot be stacked without resampling. Export one reconstruction per series."
        )
    iop = orientations[0]
    normal = _unit(np.cross(iop[:3], iop[3:]))
    positions = np.stack([g.position for g in geoms])  # type: ignore[misc]
    proj = positions @ normal
    order = np.argsort(proj, kind="stable")
    gaps = np.diff(proj[order])
    duplicates = int(np.sum(gaps <= DUPLICATE_TOL_MM))
    real = gaps[gaps > DUPLICATE_TOL_MM]
    if real.size == 0:
        raise UnsupportedImageError(
            f"All {len(geoms)} images are at the same position (a time series or repeated "
            "acquisition, not a volume). Load a single image, or export a volume series."
        )
    if duplicates:
        warnings.append(
            f"{duplicates} slice(s) share a position with another slice (duplicates, or "
            "several acquisitions in one series); they are kept in file order. Check the series."
        )
    median = float(np.median(real))
    warnings.extend(_gap_warnings(real, median))
    first, last = positions[order[0]], positions[order[-1]]
    offset = last - first
    along = float(offset @ normal)
    across = float(np.linalg.norm(offset - along * normal))
    tilt = float(np.degrees(np.arctan2(across, abs(along))))
    if tilt > TILT_TOL_DEG:
        warnings.append(
            f"Gantry tilt: slice positions move {tilt:.2f} degrees away from the slice normal. "
            "The affine includes the shear; resample to an orthogonal grid before 3D use."
        )
    step = offset * (median / along) if along > 0 else normal * median
    row_sp, col_sp = spacings[0]  # type: ignore[misc]
    affine = np.eye(4)
    affine[:3, 0] = step
    affine[:3, 1] = _unit(iop[3:]) * row_sp
    affine[:3, 2] = _unit(iop[:3]) * col_sp
    affine[:3, 3] = first
    return VolumeGeometry(order, (median, float(row_sp), float(col_sp)), affine, warnings)
