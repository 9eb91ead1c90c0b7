"""Small typed hand-offs of the PACS layer (no network, no heavy imports)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any


class PacsError(RuntimeError):
    """A PACS request failed (the message says which path and why; never PHI)."""


class StudyRefusedError(PacsError):
    """The model package refused the study (domain guard ``refuse``, wrong modality or
    dimensionality, unreadable images): there is no AI result, no case is created and
    nothing can be sent back to the PACS.

    Attributes:
        reasons: why, in words a clinician can act on (no PHI).
    """

    def __init__(self, reasons: list[str] | tuple[str, ...]) -> None:
        self.reasons = [str(r) for r in reasons] or ["the model gave no result"]
        super().__init__("refused by the model: " + "; ".join(self.reasons))


@dataclass(frozen=True)
class EchoResult:
    """The outcome of testing one path to the PACS."""

    path: str  # "dicomweb" or "dimse"
    ok: bool
    detail: str


@dataclass(frozen=True)
class StudyQuery:
    """Search keys of ``medtl pacs find`` (all optional, combined with AND)."""

    patient_id: str | None = None
    accession: str | None = None
    modality: str | None = None
    since: date | None = None
    limit: int = 100


@dataclass(frozen=True)
class StudyHit:
    """A study the PACS returned. Holds identifiers: show it, never store or log it."""

    study_uid: str
    patient_id: str | None = None
    patient_name: str | None = None
    study_date: str | None = None
    accession: str | None = None
    modalities: tuple[str, ...] = ()
    description: str | None = None
    n_series: int | None = None
    n_instances: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (for ``--json``)."""
        out = asdict(self)
        out["modalities"] = list(self.modalities)
        return out


@dataclass
class SourceLink:
    """The link back to the original study; stored only encrypted (see :mod:`.records`)."""

    study_uid: str
    series_uid: str
    sop_instance_uids: list[str] = field(default_factory=list)
    via: str = "dicomweb"
