"""A loaded :class:`~medtl.io.Scan` -> network input, following a ``PreprocessingSpec``.

Most specs work on medtl's own grid: the array ``(slices, rows, columns)`` goes through
:func:`medtl.data.preprocessing.build_preprocessing` as it is. Foundation encoders trained
elsewhere expect their own geometry, recorded in the spec's ``orientation``,
``target_spacing`` and ``fit`` fields (the ``merlin`` preset: RAS, 1.5 x 1.5 x 3 mm,
pad + centre crop to 224 x 224 x 160). Those steps need the scan's affine, so they run here,
with MONAI's own ``Orientation`` and ``Spacing`` (the transforms Merlin's
``monai_transforms.py`` uses), before the recorded intensity and size steps.

medtl's affine maps array indices to **LPS** patient coordinates (x grows towards the
patient's left, y towards posterior); MONAI's world frame is **RAS** (NIfTI's: x grows
towards the right, y towards anterior), so the affine handed to MONAI has its x and y rows
negated. After ``Orientation("RAS")`` the first array axis grows towards the patient's right,
the second towards anterior and the third towards superior, whatever order the file stored
its voxels in (a DICOM series, a NIfTI in RAS or LPS).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = [
    "input_grid_affine",
    "needs_geometry",
    "scan_to_input",
    "spatial_resample",
    "to_scan_grid",
]

#: LPS (DICOM patient) <-> RAS (NIfTI/MONAI world): negate x and y
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def needs_geometry(spec: Any) -> bool:
    """Whether a spec asks for reorientation or resampling (which need the affine)."""
    return bool(getattr(spec, "orientation", None) or getattr(spec, "target_spacing", None))


def spatial_resample(scan: Any, spec: Any, *, with_affine: bool = False) -> Any:
    """Reorient and resample a volume as the spec says, in modality units.

    Args:
        scan: a 3D :class:`medtl.io.Scan` (``array`` ``(slices, rows, columns)``, LPS affine).
        spec: a ``PreprocessingSpec`` with ``orientation`` and/or ``target_spacing``.
        with_affine: also return the RAS affine of the resampled grid.

    Returns:
        ``(1, *grid)`` float32 tensor (and its 4x4 RAS affine); with ``orientation="RAS"`` the
        grid axes are the RAS world axes (X, Y, Z), whatever order the file stored its voxels in.

    Raises:
        ValueError: the scan is not a volume.
    """
    from monai.data import MetaTensor
    from monai.transforms import Orientation, Spacing

    array = np.asarray(scan.array, dtype=np.float32)
    if array.ndim != 3:
        raise ValueError(f"this preprocessing needs a volume, got a {array.ndim}D image")
    affine = LPS_TO_RAS @ np.asarray(scan.affine, dtype=np.float64)
    x = MetaTensor(torch.from_numpy(np.ascontiguousarray(array))[None], affine=affine)
    if spec.orientation:
        # MONAI's classic labels (RAS world), as Merlin ran them
        x = Orientation(axcodes=spec.orientation, labels=(("L", "R"), ("P", "A"), ("I", "S")))(x)
    if spec.target_spacing:
        x = Spacing(pixdim=tuple(float(s) for s in spec.target_spacing), mode="bilinear")(x)
    out = x.as_tensor().float()
    if with_affine:
        return out, np.asarray(x.affine, dtype=np.float64)
    return out


def input_grid_affine(grid_affine: np.ndarray, grid: Sequence[int], spec: Any) -> np.ndarray:
    """RAS affine of the network input after ``fit="pad_crop"`` of a resampled grid.

    MONAI's ``SpatialPad`` (symmetric) puts ``(size - n) // 2`` voxels in front and
    ``CenterSpatialCrop`` starts at ``n // 2 - size // 2``; either way input voxel ``i`` is
    resampled voxel ``i - pad + start``.

    Args:
        grid_affine: affine of the resampled grid (from :func:`spatial_resample`).
        grid: its shape.
        spec: the spec (``fit`` must be ``pad_crop``).

    Returns:
        The 4x4 RAS affine of the input grid.
    """
    if spec.fit != "pad_crop":
        raise ValueError("only pad_crop inputs keep a voxel-for-voxel affine")
    shift = np.eye(4)
    for axis, (n, size) in enumerate(zip(grid, spec.spatial_size, strict=True)):
        padded = max(n, size)
        shift[axis, 3] = -(max(size - n, 0) // 2) + (padded // 2 - size // 2)
    return grid_affine @ shift


def to_scan_grid(volume: np.ndarray, affine: np.ndarray, scan: Any) -> np.ndarray:
    """Resample a map on a RAS grid (e.g. a heat map on the network input) onto the scan grid.

    Args:
        volume: ``(X, Y, Z)`` map.
        affine: its RAS affine (:func:`input_grid_affine`).
        scan: the scan whose ``(slices, rows, columns)`` grid to land on.

    Returns:
        float32 array of ``scan.shape`` (0 outside the input's field of view).
    """
    from monai.data import MetaTensor
    from monai.transforms import SpatialResample

    img = MetaTensor(torch.as_tensor(volume, dtype=torch.float32)[None], affine=affine)
    dst = torch.as_tensor(LPS_TO_RAS @ np.asarray(scan.affine, dtype=np.float64))
    out = SpatialResample(mode="bilinear", padding_mode="zeros")(
        img, dst_affine=dst, spatial_size=tuple(int(s) for s in scan.shape)
    )
    return np.asarray(out.as_tensor()[0], dtype=np.float32)


def scan_to_input(scan: Any, spec: Any) -> torch.Tensor:
    """The recorded preprocessing of one scan: ``(C, *spec.spatial_size)`` float32.

    Args:
        scan: a loaded :class:`medtl.io.Scan`.
        spec: the package's ``PreprocessingSpec``.

    Returns:
        The network input without batch axis (channels repeated to ``spec.in_channels``).
    """
    from medtl.data.preprocessing import build_preprocessing

    if needs_geometry(spec):
        x: Any = spatial_resample(scan, spec)
    else:
        array = np.asarray(scan.array, dtype=np.float32)
        if spec.spatial_dims == 2 and array.ndim == 3 and array.shape[0] == 1:
            array = array[0]
        x = array[None]
    out = build_preprocessing(spec)(x)
    if out.shape[0] == 1 and spec.in_channels > 1:
        out = out.expand(spec.in_channels, *out.shape[1:])
    return out
