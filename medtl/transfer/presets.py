"""Intensity and augmentation presets by modality, built from MONAI transforms.

The specs themselves are typed hand-offs in :mod:`medtl.artifacts` and the MONAI transforms
they describe are built in :mod:`medtl.data.preprocessing`; both are re-exported here so
``from medtl.transfer.presets import PreprocessingSpec, build_preprocessing`` keeps working.

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

from medtl.artifacts.preprocessing import (
    AugmentationSpec,
    IntensitySpec,
    ModalityFamily,
    PreprocessingSpec,
)
from medtl.data.preprocessing import build_augmentation, build_preprocessing

__all__ = [
    "AugmentationSpec",
    "IntensitySpec",
    "ModalityFamily",
    "PreprocessingSpec",
    "build_augmentation",
    "build_preprocessing",
    "default_augmentation",
    "default_intensity",
    "default_preprocessing",
]


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
