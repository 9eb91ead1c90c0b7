"""MONAI transforms built from the preprocessing and augmentation specs.

The deterministic part (:func:`build_preprocessing`) is exactly what a model package records
(a :class:`~medtl.artifacts.PreprocessingSpec`) and what :class:`~medtl.inference.Predictor`
replays at inference; the random part (:func:`build_augmentation`) runs only in training,
after any cache. The modality presets that fill the specs live in
:mod:`medtl.transfer.presets`.
"""

from __future__ import annotations

from medtl.artifacts.preprocessing import AugmentationSpec, PreprocessingSpec

__all__ = ["build_augmentation", "build_preprocessing"]


def build_preprocessing(spec: PreprocessingSpec):  # -> monai.transforms.Compose
    """Deterministic transform: channel-first array in modality units -> network input.

    Input is a ``(C, *spatial)`` array (use ``scan.array[None]``); output a float32 tensor of
    shape ``(C, *spec.spatial_size)`` in roughly [0, 1].
    """
    from monai.transforms import (
        Compose,
        EnsureType,
        NormalizeIntensity,
        Resize,
        ScaleIntensityRange,
        ScaleIntensityRangePercentiles,
    )

    intensity = spec.intensity
    if intensity.kind == "window":
        scale = ScaleIntensityRange(
            a_min=intensity.lower, a_max=intensity.upper, b_min=0.0, b_max=1.0, clip=True
        )
    elif intensity.kind == "percentile":
        scale = ScaleIntensityRangePercentiles(
            lower=intensity.lower, upper=intensity.upper, b_min=0.0, b_max=1.0, clip=True
        )
    else:
        scale = NormalizeIntensity(nonzero=False)
    mode = "area" if spec.spatial_dims == 2 else "trilinear"
    # Resize first, then scale intensities: percentiles of a 2000x2000 radiograph cost more
    # than the network's forward pass, and on the resized image they are the same statistic
    # up to interpolation. Training and inference share this exact pipeline.
    size = tuple(spec.spatial_size)
    steps = [Resize(spatial_size=size, mode=mode), scale]
    if spec.fit == "pad_crop":
        from monai.transforms import CenterSpatialCrop, SpatialPad

        # Merlin's order: intensity first, so the zero padding is the window's lower bound
        steps = [scale, SpatialPad(spatial_size=size), CenterSpatialCrop(roi_size=size)]
    return Compose(
        [
            EnsureType(data_type="tensor", dtype=_float32()),
            *steps,
            EnsureType(data_type="tensor", dtype=_float32(), track_meta=False),
        ]
    )


def build_augmentation(
    spec: AugmentationSpec,
    spatial_dims: int,
    seed: int | None = None,
    spatial_size: list[int] | tuple[int, ...] | None = None,
):
    """Random transform applied after preprocessing (and after any cache).

    Args:
        spec: what to randomise.
        spatial_dims: 2 or 3.
        seed: seeds the transforms' random state, so a run can be replayed.
        spatial_size: the network input size (needed when ``spec.translate`` is set).

    Returns:
        A MONAI ``Compose`` (identity when ``spec`` disables everything).
    """
    import math

    from monai.transforms import (
        Compose,
        RandAdjustContrast,
        RandAffine,
        RandFlip,
        RandGaussianNoise,
        RandScaleIntensity,
        RandShiftIntensity,
    )

    transforms = []
    if spec.rotate_deg or spec.scale or spec.translate:
        radians = math.radians(spec.rotate_deg)
        rotate_range = (radians,) if spatial_dims == 2 else (radians, radians, radians)
        translate_range = None
        if spec.translate:
            if spatial_size is None:
                raise ValueError("augmentation with translate needs the spatial_size")
            # MONAI's translate_range is in pixels; ours is a fraction of the image side, so
            # one config works at any input size.
            translate_range = tuple(spec.translate * n for n in spatial_size)
        transforms.append(
            RandAffine(
                prob=spec.prob,
                rotate_range=rotate_range,
                scale_range=(spec.scale,) * spatial_dims,
                translate_range=translate_range,
                padding_mode="border",
            )
        )
    for axis in spec.flip_axes:
        transforms.append(RandFlip(prob=spec.prob, spatial_axis=axis))
    if spec.intensity_scale:
        transforms.append(RandScaleIntensity(factors=spec.intensity_scale, prob=spec.prob))
    if spec.intensity_shift:
        transforms.append(RandShiftIntensity(offsets=spec.intensity_shift, prob=spec.prob))
    if spec.gamma:
        transforms.append(
            RandAdjustContrast(prob=spec.prob, gamma=(1.0 - spec.gamma, 1.0 + spec.gamma))
        )
    if spec.noise_std:
        transforms.append(RandGaussianNoise(prob=spec.prob, std=spec.noise_std))
    compose = Compose(transforms)
    if seed is not None:
        compose.set_random_state(seed=seed)
    return compose


def _float32():
    import torch

    return torch.float32
