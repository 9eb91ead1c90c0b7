"""Data shapes of the review store: what its API returns, and the review export row.

* Frozen dataclasses returned by :class:`~medtl.review.store.ReviewStore` (no ORM objects
  leave the store, so the app never touches a database session).
* :class:`ReviewExportRow`, one row of the CSV export; :func:`review_export_schema` returns
  its JSON Schema (``data_schemas/review_export``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


@dataclass(frozen=True)
class ImageInfo:
    """A stored de-identified file."""

    id: int
    case_id: str
    path: Path
    kind: str
    sha256: str
    n_bytes: int
    modality: str | None


@dataclass(frozen=True)
class PredictionInfo:
    """An AI result."""

    id: int
    case_id: str
    model_name: str
    model_version: str
    label: str
    probability: float
    threshold: float | None
    created_at: datetime
    details: dict[str, Any] | None


@dataclass(frozen=True)
class ReviewInfo:
    """One reader's review."""

    id: int
    case_id: str
    reader: str
    decision: str
    x: float | None
    y: float | None
    slice_index: int | None
    comment: str | None
    created_at: datetime
    prediction_id: int | None
    submission_id: str | None


@dataclass(frozen=True)
class CaseInfo:
    """A case with its derived status and latest AI result, as one viewer may see it.

    Blinded reading: until a clinician has submitted their own review of the case,
    ``blinded`` is true, ``status`` is only ``new`` or ``awaiting_review`` ("awaiting your
    read") and ``readers`` is empty, so nothing derived from other readers' verdicts shows.
    """

    case_id: str
    created_at: datetime
    modality: str | None
    status: str
    n_images: int
    readers: tuple[str, ...]
    latest_prediction: PredictionInfo | None
    blinded: bool = False


@dataclass(frozen=True)
class CaseDetail:
    """Everything the case page shows (reviews filtered by what the viewer may see)."""

    case: CaseInfo
    images: list[ImageInfo]
    predictions: list[PredictionInfo]
    reviews: list[ReviewInfo]


@dataclass(frozen=True)
class AuditInfo:
    """One audit event."""

    id: int
    at: datetime
    action: str
    username: str | None
    case_id: str | None
    details: dict[str, Any] | None


Decision = Literal["agree", "disagree", "uncertain"]
Role = Literal["clinician", "researcher", "admin"]
Status = Literal["new", "awaiting_review", "agreed", "disagreed", "uncertain"]


class ReviewExportRow(BaseModel):
    """One row of ``medtl reviews export`` (CSV column order = field order).

    Every identifier is pseudonymous: ``case_id`` is the case pseudonym, ``reader`` a local
    account name. ``comment`` is free text typed by the reader.
    """

    model_config = ConfigDict(extra="forbid")

    review_id: int = Field(description="Review number in the store.")
    case_id: str = Field(description="Pseudonymous case identifier.")
    case_status: Status = Field(description="Case status derived from all readers' reviews.")
    reader: str = Field(description="User name of the reader.")
    reader_role: Role = Field(description="Role of the reader at export time.")
    decision: Decision = Field(description="The reader's verdict on the AI result.")
    x: float | None = Field(default=None, description="Finding column (pixels), if marked.")
    y: float | None = Field(default=None, description="Finding row (pixels), if marked.")
    slice_index: int | None = Field(
        default=None, ge=0, description="Finding slice (volumes), if marked."
    )
    comment: str | None = Field(default=None, description="Reader comment (free text).")
    reviewed_at: datetime = Field(description="Review time, UTC (ISO 8601).")
    prediction_id: int | None = Field(default=None, description="Reviewed AI result.")
    model_name: str | None = Field(default=None, description="Model of the AI result.")
    model_version: str | None = Field(default=None, description="Model version.")
    ai_label: str | None = Field(default=None, description="Label the AI reported.")
    ai_probability: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Calibrated probability of the AI result."
    )
    ai_threshold: float | None = Field(
        default=None, description="Operating-point threshold used for the label."
    )

    @classmethod
    def columns(cls) -> list[str]:
        """CSV header, in order."""
        return list(cls.model_fields)


def review_export_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of one review export row."""
    schema = ReviewExportRow.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema.setdefault("title", "ReviewExportRow")
    return schema
