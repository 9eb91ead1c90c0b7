"""Exports of the review store: reviews as CSV, AI results as DICOM SR, reader agreement.

* :func:`export_reviews_csv`: one :class:`~medtl.review.schemas.ReviewExportRow` per review.
  Free-text cells that a spreadsheet would run as a formula (starting with ``= + - @``, tab or
  carriage return, also in their full-width or other compatibility forms, and after leading
  blanks or invisible format characters) are prefixed with ``'`` (OWASP CSV injection advice).
* :func:`export_sr`: the AI result of a case as a DICOM Comprehensive 3D SR (TID 1500
  Measurement Report) referencing the case's de-identified DICOM image; needs ``highdicom``
  (imported lazily) and a case stored from DICOM bytes.
* :func:`agreement_report`: per-case agreement between readers, pairwise Cohen's kappa
  (scikit-learn) and Fleiss' kappa (:func:`fleiss_kappa`) across readers.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import unicodedata
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from medtl.review.auth import UserInfo, require_role
from medtl.review.models import DECISIONS, Case, Prediction, Review, add_audit
from medtl.review.schemas import ReviewExportRow
from medtl.review.worklist import case_status, latest_decisions

if TYPE_CHECKING:  # pragma: no cover
    from medtl.review.store import ReviewStore

logger = logging.getLogger(__name__)

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: Private coding scheme of medtl's SR concepts (DICOM reserves ``99`` prefixes for this).
CODING_SCHEME = "99MEDTL"


def _formula_like(text: str) -> bool:
    """True when a spreadsheet could read ``text`` as a formula.

    NFKC folds compatibility forms first (full-width ``＝`` U+FF1D, small ``﹦`` U+FE66 ...
    become ``=``), since some spreadsheet programs accept them as formula starters; leading
    spaces and invisible format characters (zero-width space, BOM) are skipped too.
    """
    if text.startswith(_FORMULA_START):
        return True
    folded = unicodedata.normalize("NFKC", text)
    i = 0
    while i < len(folded) and (folded[i] == " " or unicodedata.category(folded[i]) in ("Cf", "Zs")):
        i += 1
    return folded[i:].startswith(_FORMULA_START)


def _safe_cell(value: Any) -> Any:
    if isinstance(value, str) and _formula_like(value):
        return "'" + value
    return value


def _rows(session: Session, include_comments: bool) -> list[ReviewExportRow]:
    cases = session.scalars(
        select(Case)
        .options(
            selectinload(Case.predictions),
            selectinload(Case.reviews).selectinload(Review.reader),
        )
        .order_by(Case.created_at, Case.id)
    )
    rows = []
    for case in cases:
        status = case_status(case)
        preds = {p.id: p for p in case.predictions}
        for r in case.reviews:
            p: Prediction | None = preds.get(r.prediction_pk) if r.prediction_pk else None
            rows.append(
                ReviewExportRow(
                    review_id=r.id,
                    case_id=case.case_id,
                    case_status=status,
                    reader=r.reader.username,
                    reader_role=r.reader.role,
                    decision=r.decision,
                    x=r.x,
                    y=r.y,
                    slice_index=r.slice_index,
                    comment=r.comment if include_comments else None,
                    reviewed_at=r.created_at,
                    prediction_id=r.prediction_pk,
                    model_name=p.model_name if p else None,
                    model_version=p.model_version if p else None,
                    ai_label=p.label if p else None,
                    ai_probability=p.probability if p else None,
                    ai_threshold=p.threshold if p else None,
                )
            )
    rows.sort(key=lambda row: row.review_id)
    return rows


def write_reviews_csv(rows: Sequence[ReviewExportRow], out: TextIO) -> None:
    """Write ``rows`` as CSV with a header (column order of :class:`ReviewExportRow`).

    Rows end with CRLF (RFC 4180): the csv module then quotes every cell holding a CR or LF,
    so a carriage return typed into a comment cannot split a row.
    """
    writer = csv.DictWriter(out, fieldnames=ReviewExportRow.columns(), lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        data = row.model_dump(mode="json")
        writer.writerow({k: "" if v is None else _safe_cell(v) for k, v in data.items()})


def export_reviews_csv(
    store: ReviewStore,
    actor: UserInfo | None,
    dest: Path | TextIO,
    *,
    include_comments: bool = True,
) -> int:
    """Export every review as CSV and record an ``export`` audit event.

    Args:
        store: the review store.
        actor: an admin or researcher (``None``: the local operator).
        dest: a file path (written atomically) or an open text stream.
        include_comments: ``False`` leaves the free-text column empty.

    Returns:
        The number of reviews written.
    """
    require_role(actor, "admin", "researcher")
    rows = store.db.read(lambda s: _rows(s, include_comments))
    buf = io.StringIO()
    write_reviews_csv(rows, buf)
    if isinstance(dest, str | Path):
        path = Path(dest)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(buf.getvalue(), encoding="utf-8", newline="")
        tmp.replace(path)
    else:
        dest.write(buf.getvalue())
    store.db.write(
        lambda s: add_audit(
            s,
            store.db.now(),
            "export",
            user=actor,
            details={"format": "csv", "rows": len(rows), "comments": include_comments},
        ),
        what="export record",
    )
    logger.info("review store: exported %d reviews as CSV", len(rows))
    return len(rows)


# --- DICOM SR ---------------------------------------------------------------------------
def export_sr(
    store: ReviewStore,
    actor: UserInfo | None,
    case_id: str,
    dest: Path,
    *,
    prediction_id: int | None = None,
) -> Path:
    """Write a case's AI result as a DICOM Comprehensive 3D SR (TID 1500 Measurement Report).

    The report holds the model (algorithm identification), the reported label as a
    qualitative evaluation and the probability as a measurement, and references the case's
    de-identified DICOM image as evidence (so it carries that image's pseudonymous patient
    and study, nothing else).

    Args:
        store: the review store.
        actor: the user exporting (any role).
        case_id: the case pseudonym.
        dest: output file or folder (then ``<case_id>-ai-sr.dcm``).
        prediction_id: which AI result (default: the latest).

    Returns:
        The written path.

    Raises:
        ImportError: ``highdicom`` is not installed.
        ValueError: the case has no AI result, or no DICOM image to reference.
    """
    require_role(actor, "clinician", "researcher", "admin")
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    detail = store.get_case(case_id)
    images = [i for i in store.get_images(case_id) if i.kind == "dicom"]
    predictions = store.db.read(
        lambda s: [
            (p.id, p.model_name, p.model_version, p.label, p.probability, p.image_pk)
            for p in s.scalars(
                select(Prediction).join(Case).where(Case.case_id == case_id).order_by(Prediction.id)
            )
        ]
    )
    if not predictions:
        raise ValueError(f"case {detail.case_id} has no AI result")
    chosen = (
        predictions[-1]
        if prediction_id is None
        else next((p for p in predictions if p[0] == prediction_id), None)
    )
    if chosen is None:
        raise ValueError(f"AI result {prediction_id} does not belong to case {case_id}")
    pid, model_name, model_version, label, probability, image_pk = chosen
    if not images:
        raise ValueError("a DICOM SR needs the case's image stored as de-identified DICOM")
    image = next((i for i in images if i.id == image_pk), images[0])
    source = pydicom.dcmread(image.path, stop_before_pixels=True)

    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name=model_name[:64], model_name=model_version[:64]
        ),
    )
    finding = hd.sr.CodedConcept(
        value="AIRESULT", scheme_designator=CODING_SCHEME, meaning="AI result"
    )
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(), identifier=f"AI result {pid}"
        ),
        algorithm_id=hd.sr.AlgorithmIdentification(name=model_name, version=model_version),
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(
                name=finding,
                value=hd.sr.CodedConcept(
                    value=label.upper()[:16], scheme_designator=CODING_SCHEME, meaning=label[:64]
                ),
            )
        ],
        measurements=[
            hd.sr.Measurement(
                name=hd.sr.CodedConcept(
                    value="PROB", scheme_designator=CODING_SCHEME, meaning="Calibrated probability"
                ),
                value=float(probability),
                unit=hd.sr.CodedConcept(value="1", scheme_designator="UCUM", meaning="no units"),
            )
        ],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=hd.sr.CodedConcept(
            value="363679005", scheme_designator="SCT", meaning="Imaging"
        ),
        imaging_measurements=[group],
    )
    with warnings.catch_warnings():
        # Pseudonymous patient names ("PSN-...") are single-component on purpose.
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person")
        sr = hd.sr.Comprehensive3DSR(
            evidence=[source],
            content=report[0],
            series_instance_uid=generate_uid(),
            series_number=900,
            sop_instance_uid=generate_uid(),
            instance_number=1,
            manufacturer="medtl",
            is_complete=True,
        )
    dest = Path(dest)
    path = dest / f"{detail.case_id}-ai-sr.dcm" if dest.is_dir() else dest
    sr.save_as(path)
    store.db.write(
        lambda s: add_audit(
            s,
            store.db.now(),
            "export",
            user=actor,
            case_id=detail.case_id,
            details={"format": "dicom-sr", "prediction_id": pid},
        ),
        what="export record",
    )
    return path


# --- reader agreement -------------------------------------------------------------------
@dataclass(frozen=True)
class CaseAgreement:
    """Agreement among the readers of one case (their latest decisions)."""

    case_id: str
    decisions: dict[str, str]
    counts: dict[str, int]
    #: share of reader pairs with the same decision (``None`` with fewer than 2 readers).
    pairwise_agreement: float | None
    unanimous: bool


@dataclass(frozen=True)
class PairKappa:
    """Cohen's kappa of two readers over the cases both read."""

    reader_a: str
    reader_b: str
    n_cases: int
    percent_agreement: float
    #: ``None`` when undefined (fewer than 2 shared cases, or one category only).
    kappa: float | None


@dataclass(frozen=True)
class AgreementReport:
    """Reader agreement for admins."""

    cases: list[CaseAgreement]
    pairs: list[PairKappa]
    #: Fleiss' kappa over cases with at least 2 readers (``None`` when undefined).
    fleiss_kappa: float | None
    n_cases_multi_reader: int


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa of a subjects x categories count matrix.

    Each row counts how many raters put that subject in each category. Rows may have
    different totals (>= 2): the per-subject agreement is normalised by its own number of
    raters, which reduces to Fleiss (1971) when all totals are equal. Written here because
    scikit-learn has only Cohen's kappa, and statsmodels (whose ``fleiss_kappa`` needs equal
    totals) is not a dependency.

    Args:
        counts: integer array of shape ``(n_subjects, n_categories)``.

    Returns:
        Kappa, or ``None`` when undefined (no subjects, or chance agreement is 1).
    """
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2 or counts.shape[0] == 0:
        return None
    n_i = counts.sum(axis=1)
    if np.any(n_i < 2):
        raise ValueError("every subject needs at least 2 ratings")
    p_i = (np.sum(counts**2, axis=1) - n_i) / (n_i * (n_i - 1))
    p_bar = float(p_i.mean())
    p_j = counts.sum(axis=0) / n_i.sum()
    p_e = float(np.sum(p_j**2))
    if np.isclose(p_e, 1.0):
        return None
    return (p_bar - p_e) / (1.0 - p_e)


def pair_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two aligned decision lists (scikit-learn); ``None`` if undefined."""
    from sklearn.metrics import cohen_kappa_score

    if len(a) < 2 or len(set(a) | set(b)) < 2:
        return None
    return float(cohen_kappa_score(list(a), list(b), labels=list(DECISIONS)))


def agreement_report(store: ReviewStore) -> AgreementReport:
    """Per-case and across-reader agreement of every reviewed case (latest decision per reader).

    Args:
        store: the review store (callers check the admin role).

    Returns:
        The report.
    """

    def load(session: Session) -> list[tuple[str, dict[str, str]]]:
        cases = session.scalars(
            select(Case)
            .options(selectinload(Case.reviews).selectinload(Review.reader))
            .order_by(Case.created_at, Case.id)
        )
        return [(c.case_id, latest_decisions(c.reviews)) for c in cases if c.reviews]

    per_case = store.db.read(load)
    cases = []
    for case_id, decisions in per_case:
        values = list(decisions.values())
        pairs = list(itertools.combinations(values, 2))
        share = sum(x == y for x, y in pairs) / len(pairs) if pairs else None
        counts = Counter(values)
        cases.append(
            CaseAgreement(
                case_id,
                decisions,
                {d: counts.get(d, 0) for d in DECISIONS},
                share,
                len(counts) == 1 and len(values) >= 2,
            )
        )
    readers = sorted({r for _, d in per_case for r in d})
    pair_stats = []
    for ra, rb in itertools.combinations(readers, 2):
        shared = [(d[ra], d[rb]) for _, d in per_case if ra in d and rb in d]
        if not shared:
            continue
        a, b = zip(*shared, strict=True)
        pct = sum(x == y for x, y in shared) / len(shared)
        pair_stats.append(PairKappa(ra, rb, len(shared), pct, pair_kappa(a, b)))
    multi = [c for c in cases if len(c.decisions) >= 2]
    matrix = np.array([[c.counts[d] for d in DECISIONS] for c in multi], dtype=int)
    kappa = fleiss_kappa(matrix) if multi else None
    return AgreementReport(cases, pair_stats, kappa, len(multi))
