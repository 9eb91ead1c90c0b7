"""Exports of the review store: reviews as CSV, AI results as DICOM SR, reader agreement.

* :func:`export_reviews_csv`: one :class:`~medtl.review.schemas.ReviewExportRow` per review.
  Free-text cells that a spreadsheet would run as a formula (starting with ``= + - @``, tab or
  carriage return, also in their full-width or other compatibility forms, and after leading
  blanks or invisible format characters) are prefixed with ``'`` (OWASP CSV injection advice).
* :func:`export_sr` (in :mod:`medtl.review.sr`): the AI result of a case as a DICOM SR.
* :func:`agreement_report`: per-case agreement between readers, pairwise Cohen's kappa
  (scikit-learn) and Fleiss' kappa (:func:`fleiss_kappa`) across readers.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from medtl.review.auth import UserInfo, require_role
from medtl.review.files import write_private
from medtl.review.models import DECISIONS, Case, Prediction, Review, add_audit
from medtl.review.schemas import ReviewExportRow
from medtl.review.sr import CODING_SCHEME, export_sr
from medtl.review.worklist import case_status, current_reviews, latest_decisions

if TYPE_CHECKING:  # pragma: no cover
    from medtl.review.store import ReviewStore

logger = logging.getLogger(__name__)

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
__all__ = [
    "CODING_SCHEME",
    "AgreementReport",
    "CaseAgreement",
    "PairKappa",
    "agreement_report",
    "export_reviews_csv",
    "export_sr",
    "fleiss_kappa",
    "pair_kappa",
    "write_reviews_csv",
]


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
        dest: a file path (written atomically, mode 0600) or an open text stream.
        include_comments: ``False`` leaves the free-text column empty.

    Returns:
        The number of reviews written.
    """
    require_role(actor, "admin", "researcher")
    rows = store.db.read(lambda s: _rows(s, include_comments))
    buf = io.StringIO()
    write_reviews_csv(rows, buf)
    if isinstance(dest, str | Path):
        write_private(Path(dest), buf.getvalue().encode("utf-8"))  # atomic, mode 0600
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
            .options(
                selectinload(Case.predictions),
                selectinload(Case.reviews).selectinload(Review.reader),
            )
            .order_by(Case.created_at, Case.id)
        )
        # Readers agree or not on the same AI result: the case's current one.
        per_case = [(c.case_id, latest_decisions(current_reviews(c))) for c in cases]
        return [(case_id, decisions) for case_id, decisions in per_case if decisions]

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
