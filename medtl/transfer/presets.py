"""Intensity and augmentation presets by modality, built from MONAI transforms.

The deterministic part (:func:`build_preprocessing`) is exactly what a model package records
and what :class:`~medtl.inference.Predictor` replays at inference; the random part
(:func:`build_augmentation`) runs only in training, after any cache.

Defaults follow common practice:

* **CT**: clip to a HU window and scale to [0, 1] (default −1000..1000 HU, wide enough for
  lung, soft tissue and bone).
* **MRI**: intensities have no absolute unit, so scale between the 0.5th and 99.5th
  percentiles of each image.
* **CXR**: exposure and processing vary between devices, so percentile scaling as well.

Augmentation: CXR gets small rotations, scaling and intensity changes but **no left-right
flip** by default (anatomy is lateralised: the heart is on the left); CT/MRI volumes get flips
and rotations per axis (configurable) and intensity shifts.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ModalityFamily = Literal["ct", "mri", "cxr", "generic"]


class IntensitySpec(BaseModel):
    """How raw modality units become network input."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["window", "percentile", "zscore"] = "percentile"
    lower: float = 0.5
    upper: float = 99.5


class PreprocessingSpec(BaseModel):
    """The deterministic preprocessing recorded in every model package."""

    model_config = ConfigDict(extra="forbid")

    modality: ModalityFamily = "generic"
    spatial_dims: Literal[2, 3] = 2
    spatial_size: list[int] = Field(default_factory=lambda: [256, 256])
    intensity: IntensitySpec = Field(default_factory=IntensitySpec)
    in_channels: int = 1


class AugmentationSpec(BaseModel):
    """Random training-time augmentation; every value 0 disables that transform."""

    model_config = ConfigDict(extra="forbid")

    rotate_deg: float = 0.0
    scale: float = 0.0
    translate: float = Field(
        0.0, ge=0.0, lt=0.5, description="Maximum shift, as a fraction of each image side."
    )
    flip_axes: list[int] = Field(default_factory=list)
    intensity_scale: float = 0.0
    intensity_shift: float = 0.0
    gamma: float = 0.0
    noise_std: float = 0.0
    prob: float = 0.5


def default_intensity(modality: ModalityFamily) -> IntensitySpec:
    """The intensity preset of a modality family."""
    if modality == "ct":
        return IntensitySpec(kind="window", lower=-1000.0, upper=1000.0)
    return IntensitySpec(kind="percentile", lower=0.5, upper=99.5)


def default_preprocessing(
    modality: ModalityFamily, spatial_size: list[int] | tuple[int, ...]
) -> PreprocessingSpec:
    """Preprocessing preset for a modality family and input size."""
    return PreprocessingSpec(
        modality=modality,
        spatial_dims=len(spatial_size),  # type: ignore[arg-type]
        spatial_size=list(spatial_size),
        intensity=default_intensity(modality),
    )


def default_augmentation(modality: ModalityFamily, spatial_dims: int) -> AugmentationSpec:
    """Augmentation preset of a modality family (see module docstring)."""
    if modality == "cxr":
        return AugmentationSpec(
            rotate_deg=7.0,
            scale=0.08,
            intensity_scale=0.1,
            intensity_shift=0.05,
            gamma=0.2,
            noise_std=0.01,
            prob=0.5,
        )
    if modality in ("ct", "mri"):
        return AugmentationSpec(
            rotate_deg=10.0,
            scale=0.1,
            flip_axes=list(range(spatial_dims)) if spatial_dims == 3 else [],
            intensity_scale=0.1,
            intensity_shift=0.05,
            gamma=0.0,
            noise_std=0.01,
            prob=0.5,
        )
    return AugmentationSpec()


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
    return Compose(
        [
            EnsureType(data_type="tensor", dtype=_float32()),
            Resize(spatial_size=tuple(spec.spatial_size), mode=mode),
            scale,
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
