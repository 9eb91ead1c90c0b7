"""Preprocessing and augmentation specs: what a model package records and training replays.

The specs are plain data; the MONAI transforms they describe are built by
:mod:`medtl.data.preprocessing`.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Self

from pydantic import Field, model_validator

from medtl.artifacts.base import DocumentModel

__all__ = ["AugmentationSpec", "IntensitySpec", "ModalityFamily", "PreprocessingSpec"]

ModalityFamily = Literal["ct", "mri", "cxr", "generic"]

_PositiveInt = Annotated[int, Field(gt=0)]
_PositiveMm = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]


class IntensitySpec(DocumentModel):
    """How raw modality units become network input.

    Attributes:
        kind: ``window`` (clip ``lower..upper`` in modality units, e.g. HU, to [0, 1]),
            ``percentile`` (scale between the ``lower`` and ``upper`` percentiles) or
            ``zscore`` (zero mean, unit variance; bounds unused).
        lower: lower bound (units or percentile).
        upper: upper bound.
    """

    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = ("kind", "lower", "upper")

    kind: Literal["window", "percentile", "zscore"] = "percentile"
    lower: float = Field(0.5, allow_inf_nan=False)
    upper: float = Field(99.5, allow_inf_nan=False)

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.kind == "zscore":
            return self
        if not self.lower < self.upper:
            raise ValueError(f"intensity lower {self.lower} must be below upper {self.upper}")
        if self.kind == "percentile" and not (self.lower >= 0.0 and self.upper <= 100.0):
            raise ValueError("percentile bounds must lie in [0, 100]")
        return self


class PreprocessingSpec(DocumentModel):
    """The deterministic preprocessing recorded in every model package.

    Example:
        >>> PreprocessingSpec(modality="ct", spatial_dims=3, spatial_size=[64, 64, 64],
        ...     intensity={"kind": "window", "lower": -1000, "upper": 400}).intensity.kind
        'window'
    """

    # every spec medtl wrote has these; orientation, target_spacing and fit came later
    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = (
        "modality",
        "spatial_dims",
        "spatial_size",
        "intensity",
        "in_channels",
    )

    modality: ModalityFamily = "generic"
    spatial_dims: Literal[2, 3] = 2
    spatial_size: list[_PositiveInt] = Field(
        default_factory=lambda: [256, 256], min_length=2, max_length=3
    )
    intensity: IntensitySpec = Field(default_factory=IntensitySpec)
    in_channels: int = Field(1, gt=0)
    # Geometry for foundation encoders (e.g. the `merlin` preset); the defaults keep medtl's
    # own (slices, rows, columns) grid and a plain resize.
    orientation: Literal["RAS"] | None = Field(
        None,
        description="Reorient volumes to these axis codes first (MONAI Orientation); the "
        "network input axes are then (X, Y, Z) in that world frame.",
    )
    target_spacing: list[_PositiveMm] | None = Field(
        None,
        min_length=2,
        max_length=3,
        description="Resample volumes to this voxel size in mm (bilinear), input axis order.",
    )
    fit: Literal["resize", "pad_crop"] = Field(
        "resize",
        description="Reach spatial_size by resizing, or by padding (after intensity scaling, "
        "so the pad value is the window's lower bound) and a centre crop.",
    )

    @model_validator(mode="after")
    def _one_size_per_axis(self) -> Self:
        if len(self.spatial_size) != self.spatial_dims:
            raise ValueError(
                f"spatial_size {self.spatial_size} has {len(self.spatial_size)} axes; "
                f"spatial_dims is {self.spatial_dims}"
            )
        return self


class AugmentationSpec(DocumentModel):
    """Random training-time augmentation; every value 0 disables that transform (a config
    section: every field keeps its default)."""

    rotate_deg: float = Field(0.0, ge=0.0, le=180.0, description="Maximum rotation, degrees.")
    scale: float = Field(0.0, ge=0.0, lt=1.0, description="Maximum relative zoom.")
    translate: float = Field(
        0.0, ge=0.0, lt=0.5, description="Maximum shift, as a fraction of each image side."
    )
    flip_axes: list[Annotated[int, Field(ge=0, le=2)]] = Field(default_factory=list)
    intensity_scale: float = Field(0.0, ge=0.0)
    intensity_shift: float = Field(0.0, ge=0.0)
    gamma: float = Field(0.0, ge=0.0, lt=1.0, description="Contrast gamma drawn in 1 ± gamma.")
    noise_std: float = Field(0.0, ge=0.0)
    prob: float = Field(0.5, ge=0.0, le=1.0, description="Probability of each transform.")
