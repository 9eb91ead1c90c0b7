"""``domain_guard.json``: the domain guard's expectations and threshold (in a model package).

Written and read by :mod:`medtl.inference.domain` (which versions it with
``format_version``); the model here checks the file both ways and gives its JSON Schema. The
guard's arrays are in ``domain_guard.safetensors``.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from medtl.artifacts.base import DocumentModel

__all__ = ["DomainGuardFile"]

_Range = Annotated[
    list[Annotated[float, Field(gt=0.0, allow_inf_nan=False)]],
    Field(min_length=2, max_length=2),
]
#: written together once the guard is fitted on features (absent, or null, before)
_FITTED = ("threshold", "threshold_source", "shrinkage", "n_train", "n_reference", "feature_dim")


class DomainGuardFile(DocumentModel):
    """The JSON half of a saved domain guard.

    Attributes:
        format_version: file format version.
        spatial_dims: 2 or 3.
        modalities: DICOM modality codes expected (empty: any).
        assumed_modality: the modality a file that records none (PNG, JPEG, NIfTI) is taken
            as, with no caution: the model's training images were such files, declared
            this modality (``medtl data import --modality``). ``None``: such files warn.
        body_parts: body parts expected (empty: any).
        spacing_range_mm: accepted pixel spacing range ``[low, high]`` in mm.
        aspect_ratio_range: accepted image aspect ratios ``[low, high]``.
        quantile: quantile of the reference distances that sets the threshold.
        threshold: Mahalanobis distance above which features are out of distribution
            (with the five fields below: present once the guard is fitted on features).
        threshold_source: split the threshold was set on.
        shrinkage: covariance shrinkage (Ledoit-Wolf), in [0, 1].
        n_train: training images the guard was fitted on.
        n_reference: reference distances stored.
        feature_dim: pooled feature size.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"dependentRequired": {"threshold": list(_FITTED[1:])}},
    )

    FORMAT_VERSION: ClassVar[int] = 1

    format_version: int = Field(ge=1, le=FORMAT_VERSION)
    spatial_dims: int = Field(ge=2, le=3)
    modalities: list[Annotated[str, Field(pattern=r"^[A-Z0-9]{1,16}$")]]
    assumed_modality: Annotated[str, Field(pattern=r"^[A-Z0-9]{1,16}$")] | None = None
    body_parts: list[Annotated[str, Field(min_length=1)]]
    spacing_range_mm: _Range | None = None
    aspect_ratio_range: _Range | None = None
    quantile: float = Field(gt=0, lt=1)
    threshold: float | None = Field(None, ge=0.0, allow_inf_nan=False)
    threshold_source: Literal["validation", "training", "unknown"] | None = None
    shrinkage: float | None = Field(None, ge=0.0, le=1.0)
    n_train: int | None = Field(None, ge=1)
    n_reference: int | None = Field(None, ge=1)
    feature_dim: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for name in ("spacing_range_mm", "aspect_ratio_range"):
            pair = getattr(self, name)
            if pair is not None and pair[0] > pair[1]:
                raise ValueError(f"{name}: low {pair[0]} is above high {pair[1]}")
        if self.threshold is not None:
            missing = [f for f in _FITTED[1:] if getattr(self, f) is None]
            if missing:
                raise ValueError(f"a fitted guard (threshold set) also states {missing}")
        return self
