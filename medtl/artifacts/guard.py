"""``domain_guard.json``: the domain guard's expectations and threshold (in a model package).

Written and read by :mod:`medtl.inference.domain` (which versions it with
``format_version``); the model here documents the file and gives its JSON Schema. The
guard's arrays are in ``domain_guard.safetensors``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DomainGuardFile"]


class DomainGuardFile(BaseModel):
    """The JSON half of a saved domain guard.

    Attributes:
        format_version: file format version.
        spatial_dims: 2 or 3.
        modalities: DICOM modality codes expected (empty: any).
        body_parts: body parts expected (empty: any).
        spacing_range_mm: accepted pixel spacing range.
        aspect_ratio_range: accepted image aspect ratios.
        quantile: quantile of the reference distances that sets the threshold.
        threshold: Mahalanobis distance above which features are out of distribution.
        threshold_source: split the threshold was set on.
        shrinkage: covariance shrinkage.
        n_train: training images the guard was fitted on.
        n_reference: reference distances stored.
        feature_dim: pooled feature size.
    """

    model_config = ConfigDict(extra="forbid")

    format_version: int = 1
    spatial_dims: int = Field(2, ge=2, le=3)
    modalities: list[str] = Field(default_factory=list)
    body_parts: list[str] = Field(default_factory=list)
    spacing_range_mm: list[float] | None = None
    aspect_ratio_range: list[float] | None = None
    quantile: float = Field(0.99, gt=0, lt=1)
    threshold: float | None = None
    threshold_source: str | None = None
    shrinkage: float | None = None
    n_train: int | None = None
    n_reference: int | None = None
    feature_dim: int | None = None
