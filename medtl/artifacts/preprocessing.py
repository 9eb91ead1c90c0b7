"""Preprocessing and augmentation specs: what a model package records and training replays.

The specs are plain data; the MONAI transforms they describe are built by
:mod:`medtl.data.preprocessing`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AugmentationSpec", "IntensitySpec", "ModalityFamily", "PreprocessingSpec"]

ModalityFamily = Literal["ct", "mri", "cxr", "generic"]


class IntensitySpec(BaseModel):
    """How raw modality units become network input.

    Attributes:
        kind: ``window`` (clip ``lower..upper`` in modality units, e.g. HU, to [0, 1]),
            ``percentile`` (scale between the ``lower`` and ``upper`` percentiles) or
            ``zscore`` (zero mean, unit variance; bounds unused).
        lower: lower bound (units or percentile).
        upper: upper bound.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["window", "percentile", "zscore"] = "percentile"
    lower: float = 0.5
    upper: float = 99.5


class PreprocessingSpec(BaseModel):
    """The deterministic preprocessing recorded in every model package.

    Example:
        >>> PreprocessingSpec(modality="ct", spatial_dims=3, spatial_size=[64, 64, 64],
        ...     intensity={"kind": "window", "lower": -1000, "upper": 400}).intensity.kind
        'window'
    """

    model_config = ConfigDict(extra="forbid")

    modality: ModalityFamily = "generic"
    spatial_dims: Literal[2, 3] = 2
    spatial_size: list[int] = Field(default_factory=lambda: [256, 256])
    intensity: IntensitySpec = Field(default_factory=IntensitySpec)
    in_channels: int = 1
    # Geometry for foundation encoders (e.g. the `merlin` preset); the defaults keep medtl's
    # own (slices, rows, columns) grid and a plain resize.
    orientation: Literal["RAS"] | None = Field(
        None,
        description="Reorient volumes to these axis codes first (MONAI Orientation); the "
        "network input axes are then (X, Y, Z) in that world frame.",
    )
    target_spacing: list[float] | None = Field(
        None, description="Resample volumes to this voxel size in mm (bilinear), input axis order."
    )
    fit: Literal["resize", "pad_crop"] = Field(
        "resize",
        description="Reach spatial_size by resizing, or by padding (after intensity scaling, "
        "so the pad value is the window's lower bound) and a centre crop.",
    )


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
