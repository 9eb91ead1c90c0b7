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
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = ["needs_geometry", "scan_to_input", "spatial_resample"]

#: LPS (DICOM patient) <-> RAS (NIfTI/MONAI world): negate x and y
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def needs_geometry(spec: Any) -> bool:
    """Whether a spec asks for reorientation or resampling (which need the affine)."""
    return bool(getattr(spec, "orientation", None) or getattr(spec, "target_spacing", None))


def spatial_resample(scan: Any, spec: Any) -> torch.Tensor:
    """Reorient and resample a volume as the spec says, in modality units.

    Args:
        scan: a 3D :class:`medtl.io.Scan` (``array`` ``(slices, rows, columns)``, LPS affine).
        spec: a ``PreprocessingSpec`` with ``orientation`` and/or ``target_spacing``.

    Returns:
        ``(1, *grid)`` float32 tensor; with ``orientation="RAS"`` the grid axes are the RAS
        world axes (X, Y, Z), whatever the order the file stored its voxels in.

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
    return x.as_tensor().float()


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
