"""Shared machinery of the demo dataset builders (MRI source set, CT target set).

* :class:`SizeSpec`: voxel spacing and patch shapes of the ``tiny`` / ``demo`` / ``full``
  builds. MRI and CT patches of one size share their physical geometry, so a backbone
  pretrained on MRI patches sees CT patches of the same shape and scale.
* Deformations for virtual subjects: parameters are drawn from a seeded generator
  (:func:`draw_warp`), then applied by a deterministic function (:func:`apply_warp`).
* Patch files: NIfTI written with nibabel in LPS display orientation (columns towards the
  patient's left, rows towards posterior, slices towards the head); 2D patches are 2D NIfTI
  images (``dim[0] = 2``). :func:`read_patch` returns arrays in ``(slices, rows, columns)`` /
  ``(rows, columns)`` order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SIZES = ("tiny", "demo", "full")


@dataclass(frozen=True)
class SizeSpec:
    """Geometry of one build size.

    Attributes:
        name: ``tiny``, ``demo`` or ``full``.
        spacing: voxel size ``(z, y, x)`` in mm of the resampled volumes and of every patch.
        patch2d: ``(rows, columns)`` of 2D patches.
        patch3d: ``(slices, rows, columns)`` of 3D patches.
    """

    name: str
    spacing: tuple[float, float, float]
    patch2d: tuple[int, int]
    patch3d: tuple[int, int, int]

    def patch_shape(self, ndim: int) -> tuple[int, ...]:
        """Patch shape for ``ndim`` 2 or 3."""
        if ndim not in (2, 3):
            raise ValueError(f"ndim must be 2 or 3, got {ndim}")
        return self.patch2d if ndim == 2 else self.patch3d


SIZE_SPECS: dict[str, SizeSpec] = {
    "tiny": SizeSpec("tiny", (5.0, 2.8125, 2.8125), (24, 24), (2, 16, 16)),
    "demo": SizeSpec("demo", (2.5, 1.40625, 1.40625), (48, 48), (6, 32, 32)),
    "full": SizeSpec("full", (2.5, 0.703125, 0.703125), (96, 96), (6, 64, 64)),
}


def size_spec(size: str) -> SizeSpec:
    """Return the :class:`SizeSpec` of ``size`` (``ValueError`` when unknown)."""
    try:
        return SIZE_SPECS[size]
    except KeyError:
        raise ValueError(f"unknown size {size!r}; use one of {', '.join(SIZES)}") from None


# ----------------------------------------------------------------------------- resampling
def resample(
    volume: np.ndarray,
    spacing_in: tuple[float, ...],
    spacing_out: tuple[float, ...],
    *,
    labels: bool = False,
) -> np.ndarray:
    """Resample a ``(z, y, x)`` volume to a new spacing.

    Images are low-pass filtered before downsampling (anti-aliasing) and interpolated
    linearly; label maps use nearest neighbours.

    Args:
        volume: the array.
        spacing_in: its voxel size in mm.
        spacing_out: the wanted voxel size in mm.
        labels: True for label maps.

    Returns:
        The resampled array (same dtype for labels, float32 for images).
    """
    from scipy import ndimage as ndi

    factors = [si / so for si, so in zip(spacing_in, spacing_out, strict=True)]
    if all(abs(f - 1.0) < 1e-6 for f in factors):
        return volume if labels else volume.astype(np.float32, copy=False)
    blocks = [1.0 / f for f in factors]
    if all(b >= 1 and abs(b - round(b)) < 1e-6 for b in blocks):
        return _block_downsample(volume, tuple(round(b) for b in blocks), labels)
    out_shape = tuple(max(1, round(n * f)) for n, f in zip(volume.shape, factors, strict=True))
    if labels:
        # nearest neighbour at the centres of the output voxels
        idx = [
            np.clip(((np.arange(m) + 0.5) / f - 0.5).round().astype(int), 0, n - 1)
            for m, f, n in zip(out_shape, factors, volume.shape, strict=True)
        ]
        return volume[np.ix_(*idx)]
    data = volume.astype(np.float32, copy=False)
    sigma = [max(0.0, (1.0 / f - 1.0) / 2.0) for f in factors]
    if any(s > 0 for s in sigma):
        data = ndi.gaussian_filter(data, sigma=sigma, mode="nearest")
    zoom = [m / n for m, n in zip(out_shape, volume.shape, strict=True)]
    return ndi.zoom(data, zoom, order=1, mode="nearest", grid_mode=True).astype(np.float32)


def _block_downsample(volume: np.ndarray, blocks: tuple[int, ...], labels: bool) -> np.ndarray:
    """Integer-factor downsampling: block mean for images, block majority for labels.

    Trailing voxels that do not fill a block are dropped (at most ``block - 1`` per axis).
    """
    trimmed = volume[
        tuple(slice(0, (n // b) * b) for n, b in zip(volume.shape, blocks, strict=True))
    ]
    shape = []
    for n, b in zip(trimmed.shape, blocks, strict=True):
        shape += [n // b, b]
    axes = tuple(range(1, 2 * len(blocks), 2))
    if not labels:
        return trimmed.astype(np.float32).reshape(shape).mean(axis=axes, dtype=np.float32)
    values = np.unique(trimmed)
    best = np.zeros(
        [n // b for n, b in zip(trimmed.shape, blocks, strict=True)], dtype=volume.dtype
    )
    best_count = np.full(best.shape, -1, dtype=np.int32)
    for v in values:
        count = (trimmed == v).reshape(shape).sum(axis=axes, dtype=np.int32)
        better = count > best_count
        best[better] = v
        best_count[better] = count[better]
    return best


# ---------------------------------------------------------------------------- deformation
@dataclass(frozen=True)
class WarpParams:
    """A drawn deformation: an affine (normalised coordinates) plus a smooth field.

    Attributes:
        matrix: ``(ndim, ndim + 1)`` affine of :func:`torch.nn.functional.affine_grid`.
        field: ``(ndim, *control_grid)`` displacements in normalised units (x, y[, z] order).
    """

    matrix: np.ndarray
    field: np.ndarray


def draw_warp(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    *,
    rotate_deg: float = 6.0,
    scale: float = 0.06,
    magnitude_vox: float = 2.0,
    control_spacing_vox: float = 12.0,
    in_plane_only: bool = False,
) -> WarpParams:
    """Draw a random affine + elastic deformation for an array of ``shape``.

    Args:
        rng: the generator (the only source of randomness).
        shape: ``(y, x)`` or ``(z, y, x)`` of the array to warp.
        rotate_deg: maximal rotation (in-plane, and about the other axes for 3D).
        scale: maximal relative scaling per axis.
        magnitude_vox: standard deviation of the elastic displacement, in voxels.
        control_spacing_vox: distance between control points of the elastic field.
        in_plane_only: for 3D, no rotation about in-plane axes, no z scaling or z
            displacement (keeps every voxel in its slice: used inside CT slabs).

    Returns:
        The :class:`WarpParams` to pass to :func:`apply_warp`.
    """
    ndim = len(shape)
    angles = np.deg2rad(rng.uniform(-rotate_deg, rotate_deg, size=3))
    scales = 1.0 + rng.uniform(-scale, scale, size=ndim)
    if ndim == 2:
        c, s = math.cos(angles[0]), math.sin(angles[0])
        rot = np.array([[c, -s], [s, c]])
    else:
        if in_plane_only:
            angles[1:] = 0.0
            scales[2] = 1.0  # the z axis is last in (x, y, z) order
        cz, sz = math.cos(angles[0]), math.sin(angles[0])
        cy, sy = math.cos(angles[1]), math.sin(angles[1])
        cx, sx = math.cos(angles[2]), math.sin(angles[2])
        rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
        ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
        rot = rz @ ry @ rx
    lin = rot @ np.diag(1.0 / scales)
    matrix = np.concatenate([lin, np.zeros((ndim, 1))], axis=1)
    ctrl = tuple(max(2, math.ceil(n / control_spacing_vox) + 1) for n in shape)
    field = rng.normal(0.0, magnitude_vox, size=(ndim, *ctrl))
    # voxel displacements -> normalised [-1, 1] units; field channel 0 is x (last axis)
    for axis in range(ndim):
        field[axis] *= 2.0 / max(shape[ndim - 1 - axis] - 1, 1)
    if ndim == 3 and in_plane_only:
        field[2] = 0.0
    return WarpParams(matrix=matrix.astype(np.float32), field=field.astype(np.float32))


def apply_warp(
    arrays: list[np.ndarray],
    params: WarpParams,
    modes: list[str],
    padding: str = "border",
) -> list[np.ndarray]:
    """Warp arrays of one shape with drawn parameters (deterministic).

    Written on :func:`torch.nn.functional.grid_sample` rather than MONAI's
    ``Rand3DElastic``, which smooths a full-resolution noise field and takes seconds per
    brain volume on one core; a coarse control-point field (as MONAI's ``Rand2DElastic``
    uses) gives an equally smooth deformation in a fraction of the time.

    Args:
        arrays: ``(C, *spatial)`` or ``(*spatial)`` arrays sharing the spatial shape.
        params: from :func:`draw_warp` for that spatial shape.
        modes: ``bilinear`` (images) or ``nearest`` (labels), one per array.
        padding: ``border`` or ``zeros`` (grid_sample padding mode).

    Returns:
        The warped arrays, same shapes and dtypes.
    """
    ndim = params.matrix.shape[0]
    spatial = arrays[0].shape[-ndim:]
    theta = torch.from_numpy(params.matrix)[None]
    grid = F.affine_grid(theta, [1, 1, *spatial], align_corners=True)
    field = torch.from_numpy(params.field)[None]
    interp = "bilinear" if ndim == 2 else "trilinear"
    dense = F.interpolate(field, size=tuple(spatial), mode=interp, align_corners=True)
    grid = grid + dense.movedim(1, -1)
    out = []
    for arr, mode in zip(arrays, modes, strict=True):
        extra = arr.shape[:-ndim]
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).reshape(1, -1, *spatial)
        warped = F.grid_sample(t, grid, mode=mode, padding_mode=padding, align_corners=True)
        res = warped.reshape(*extra, *spatial).numpy()
        out.append(res.astype(arr.dtype) if mode == "nearest" else res)
    return out


# ----------------------------------------------------------------------------- intensity
def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], ctrl: int = 4) -> np.ndarray:
    """A smooth random field with zero mean and unit standard deviation at control points."""
    coarse = torch.from_numpy(rng.normal(size=(1, 1, *([ctrl] * len(shape)))).astype(np.float32))
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    return F.interpolate(coarse, size=shape, mode=mode, align_corners=True)[0, 0].numpy()


# ------------------------------------------------------------------------------- sampling
def valid_centre_mask(shape: tuple[int, ...], patch: tuple[int, ...]) -> np.ndarray:
    """Boolean mask of voxels that can be the centre of a patch wholly inside ``shape``.

    The centre of an even-sized patch is voxel ``size // 2`` of the patch.
    """
    mask = np.zeros(shape, dtype=bool)
    slices = []
    for n, p in zip(shape, patch, strict=True):
        lo, hi = p // 2, n - (p - p // 2)
        slices.append(slice(lo, hi + 1) if hi >= lo else slice(0, 0))
    mask[tuple(slices)] = True
    return mask


def crop_at(array: np.ndarray, centre: tuple[int, ...], patch: tuple[int, ...]) -> np.ndarray:
    """Crop ``patch`` around ``centre`` (the centre lands at index ``size // 2``)."""
    sl = tuple(slice(c - p // 2, c - p // 2 + p) for c, p in zip(centre, patch, strict=True))
    out = array[sl]
    if out.shape != tuple(patch):
        raise ValueError(f"patch at {centre} leaves the array {array.shape}")
    return out


# ---------------------------------------------------------------------------------- files
def write_patch(
    path: Path,
    array: np.ndarray,
    spacing: tuple[float, ...],
    on_disk: type[np.generic] | None = None,
) -> None:
    """Write a ``(rows, cols)`` or ``(slices, rows, cols)`` array as NIfTI (LPS display).

    Args:
        path: ``.nii.gz`` target (folders are created).
        array: the data, in display order; its dtype is kept.
        spacing: mm per axis, same order as ``array``.
        on_disk: stored dtype (e.g. ``np.int16`` for float data: nibabel then picks a scale
            factor); default: the array's dtype.
    """
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(array).T  # NIfTI index order (i=column, j=row, k=slice)
    zooms = list(reversed(spacing))
    affine = np.eye(4)
    # RAS affine: columns go towards patient left (-x), rows posterior (-y), slices head (+z)
    affine[0, 0], affine[1, 1] = -zooms[0], -zooms[1]
    if len(zooms) == 3:
        affine[2, 2] = zooms[2]
    img = nib.Nifti1Image(data, affine)
    img.header.set_zooms(zooms)
    img.header.set_xyzt_units("mm")
    if on_disk is not None:
        img.set_data_dtype(on_disk)
    nib.save(img, str(path))


def read_patch(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """Read a patch written by :func:`write_patch`.

    Returns:
        ``(array in display order, spacing in mm in the same order)``.
    """
    import nibabel as nib

    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj).T
    zooms = tuple(float(z) for z in reversed(img.header.get_zooms()[: data.ndim]))
    return np.ascontiguousarray(data), zooms


__all__ = [
    "SIZES",
    "SIZE_SPECS",
    "SizeSpec",
    "WarpParams",
    "apply_warp",
    "crop_at",
    "draw_warp",
    "read_patch",
    "resample",
    "size_spec",
    "smooth_field",
    "valid_centre_mask",
    "write_patch",
]
