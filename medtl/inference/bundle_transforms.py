"""A package's preprocessing as MONAI transform configs, for exports that run without medtl.

Two parts, both plain MONAI bundle config (``_target_`` components, ``$`` expressions):

* :func:`load_transforms`: a scan file -> channel-first array in modality units on medtl's
  grid. ``LoadImage`` with :class:`~medtl.inference.bundle_runtime.PositionSortedDicomReader`
  for DICOM (slices sorted along the normal, MONOCHROME1 flipped, as ``medtl.io`` does) and
  MONAI's own readers for NIfTI and PNG/JPEG; then the axis order medtl's loader gives:
  2D images ``(rows, columns)`` (MONAI's readers give ``(columns, rows)``), volumes
  ``(slices, rows, columns)`` sorted along the slice normal (``Orientation("LPS")`` then the
  axes reversed: the same grid for axial series and for every NIfTI, which ``medtl.io``
  reorients to (S, P, L)), or, for specs that reorient and resample (the ``merlin``
  preset), MONAI's ``Orientation`` and ``Spacing`` on the reader's RAS affine, as
  :func:`medtl.data.scan_input.spatial_resample` runs them.
* :func:`array_transforms`: that array -> network input, the steps of
  :func:`medtl.data.preprocessing.build_preprocessing` (resize, intensity scaling, or the
  ``pad_crop`` fit), then the channels repeated to ``in_channels``.

Known differences from ``medtl predict``: sagittal or coronal DICOM series reach the
windowed 3D packages in canonical (S, P, L) order rather than their acquisition order;
colour images other than RGB, multi-frame DICOM without per-frame positions, compressed
DICOM needing a decoder pydicom lacks, and the domain guard are medtl's alone.
"""

from __future__ import annotations

from typing import Any

__all__ = ["array_transforms", "describe_preprocessing", "load_transforms"]

#: MONAI's classic labels (RAS world), as medtl's spatial_resample passes them
_LABELS = [["L", "R"], ["P", "A"], ["I", "S"]]
#: the reader module's dotted path inside an exported bundle (scripts/runtime.py)
READER = "scripts.runtime.PositionSortedDicomReader"
_GREY = "$lambda x: x if x.shape[0] == 1 else 0.299 * x[0:1] + 0.587 * x[1:2] + 0.114 * x[2:3]"


def _t(name: str, **args: Any) -> dict[str, Any]:
    return {"_target_": f"monai.transforms.{name}", **args}


def _geometry(spec: Any) -> bool:
    return bool(getattr(spec, "orientation", None) or getattr(spec, "target_spacing", None))


def load_transforms(spec: Any) -> list[dict[str, Any]]:
    """Scan file -> ``(1, *grid)`` array in modality units on medtl's grid (MONAI configs).

    Args:
        spec: the package's ``PreprocessingSpec``.

    Returns:
        The transform configs, ``LoadImage`` first.
    """
    steps = [
        _t(
            "LoadImage",
            reader={"_target_": READER},
            image_only=True,
            ensure_channel_first=True,
        )
    ]
    if spec.spatial_dims == 2:
        # RGB -> luminance (ITU-R BT.601, as medtl.io), then (columns, rows) -> (rows, columns)
        return [*steps, _t("Lambda", func=_GREY), _t("Transpose", indices=[0, 2, 1])]
    if _geometry(spec):
        if spec.orientation:
            steps.append(_t("Orientation", axcodes=spec.orientation, labels=_LABELS))
        if spec.target_spacing:
            pixdim = [float(s) for s in spec.target_spacing]
            steps.append(_t("Spacing", pixdim=pixdim, mode="bilinear"))
        return steps
    return [
        *steps,
        _t("Orientation", axcodes="LPS", labels=_LABELS),
        _t("Transpose", indices=[0, 3, 2, 1]),
    ]


def array_transforms(spec: Any) -> list[dict[str, Any]]:
    """Array in modality units -> network input, as ``build_preprocessing`` does (MONAI configs).

    Args:
        spec: the package's ``PreprocessingSpec``.

    Returns:
        The transform configs: ``(1, *grid)`` -> ``(in_channels, *spatial_size)`` float32.
    """
    intensity = spec.intensity
    if intensity.kind == "window":
        scale = _t(
            "ScaleIntensityRange", a_min=float(intensity.lower), a_max=float(intensity.upper),
            b_min=0.0, b_max=1.0, clip=True,
        )  # fmt: skip
    elif intensity.kind == "percentile":
        scale = _t(
            "ScaleIntensityRangePercentiles", lower=float(intensity.lower),
            upper=float(intensity.upper), b_min=0.0, b_max=1.0, clip=True,
        )  # fmt: skip
    else:
        scale = _t("NormalizeIntensity", nonzero=False)
    size = [int(s) for s in spec.spatial_size]
    mode = "area" if spec.spatial_dims == 2 else "trilinear"
    if spec.fit == "pad_crop":
        fit = [scale, _t("SpatialPad", spatial_size=size), _t("CenterSpatialCrop", roi_size=size)]
    else:
        fit = [_t("Resize", spatial_size=size, mode=mode), scale]
    steps = [
        _t("EnsureType", data_type="tensor", dtype="$torch.float32"),
        *fit,
        _t("EnsureType", data_type="tensor", dtype="$torch.float32", track_meta=False),
    ]
    if int(spec.in_channels) > 1:
        steps.append(_t("RepeatChannel", repeats=int(spec.in_channels)))
    return steps


def describe_preprocessing(spec: Any) -> list[str]:
    """The preprocessing in words, one step a line (for sidecars and READMEs).

    Args:
        spec: the package's ``PreprocessingSpec``.

    Returns:
        The steps, in order.
    """
    size = " x ".join(str(int(s)) for s in spec.spatial_size)
    if spec.spatial_dims == 2:
        steps = [
            "read the image in modality units (DICOM rescale applied), MONOCHROME2 polarity "
            "(MONOCHROME1 flipped), greyscale (RGB -> 0.299 R + 0.587 G + 0.114 B), as a "
            "(rows, columns) array"
        ]
    else:
        steps = [
            "read the volume in modality units (HU for CT), slices sorted along the slice "
            "normal, as a (slices, rows, columns) array"
        ]
    if spec.orientation:
        steps.append(f"reorient to {spec.orientation} (axes become X, Y, Z of that frame)")
    if spec.target_spacing:
        mm = " x ".join(f"{float(s):g}" for s in spec.target_spacing)
        steps.append(f"resample to {mm} mm voxels (bilinear)")
    intensity = spec.intensity
    if intensity.kind == "window":
        what = f"clip to the window [{intensity.lower:g}, {intensity.upper:g}] and map it to [0, 1]"
    elif intensity.kind == "percentile":
        what = (
            f"map the {intensity.lower:g}th..{intensity.upper:g}th percentiles of the image "
            "to [0, 1], clipped"
        )
    else:
        what = "z-score the intensities (zero mean, unit variance over the image)"
    if spec.fit == "pad_crop":
        steps += [what, f"pad with 0 (symmetric) and centre-crop to {size}"]
    else:
        mode = "area" if spec.spatial_dims == 2 else "trilinear"
        steps += [f"resize to {size} ({mode} interpolation)", what]
    channels = int(spec.in_channels)
    steps.append(
        f"float32 tensor of shape ({channels}, {size.replace(' x ', ', ')})"
        + (f", the one channel repeated {channels} times" if channels > 1 else "")
        + "; a batch axis in front"
    )
    return steps
