"""Case summaries, the worklist query (filtered and paged in SQL) and the audit query.

The worklist filters on the stored, indexed ``cases.status`` (see
:mod:`medtl.review.status`), the creation time, the model and the readers in SQL, sorts by
creation time then row ID, and pages with a keyset (``after``: the last case of the
previous page), so a page costs the same with 1,000 or 100,000 cases. Images, the latest
AI result and readers are then loaded for the rows of that page only.

Blinded reading (see :mod:`medtl.review.status`): for a clinician, the status that filters
and shows is the blinded one until they have reviewed the case, and readers stay hidden.

These functions run inside a session opened by :class:`~medtl.review.store.ReviewStore`,
which checks roles and arguments first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, func, literal, or_, select
from sqlalchemy.orm import Session

from medtl.review.errors import ReviewInputError
from medtl.review.models import AuditEvent, Case, Image, Prediction, Review, User
from medtl.review.schemas import AuditInfo, CaseInfo, PredictionInfo, ReviewInfo
from medtl.review.status import (
    BLIND,
    STATUSES,
    UNBLINDED_ROLES,
    Viewer,
    blind_status,
    blinded_for,
    case_status,
    current_reviews,
    latest_decisions,
    sees_everything,
)

__all__ = [
    "BLIND",
    "STATUSES",
    "UNBLINDED_ROLES",
    "Viewer",
    "blind_status",
    "blinded_for",
    "case_info",
    "case_status",
    "current_reviews",
    "latest_decisions",
    "prediction_info",
    "query_audit",
    "query_worklist",
    "review_info",
    "sees_everything",
]


def prediction_info(p: Prediction, case_id: str) -> PredictionInfo:
    """Plain-data copy of an AI result row."""
    return PredictionInfo(
        p.id,
        case_id,
        p.model_name,
        p.model_version,
        p.label,
        float(p.probability),
        p.threshold,
        p.created_at,
        p.details,
    )


def review_info(r: Review, case_id: str) -> ReviewInfo:
    """Plain-data copy of a review row."""
    return ReviewInfo(
        r.id,
        case_id,
        r.reader.username,
        r.decision,
        r.x,
        r.y,
        r.slice_index,
        r.comment,
        r.created_at,
        r.prediction_pk,
        r.submission_id,
    )


def case_info(case: Case, *, viewer: Viewer = BLIND) -> CaseInfo:
    """Summary of a case with status, readers and latest AI result, as ``viewer`` may see it.

    Args:
        case: the case row with images, predictions and reviews (and readers) loaded.
        viewer: who is looking (keyword-only; default :data:`BLIND`, the least privilege).

    Returns:
        The summary; blinded (see :mod:`medtl.review.status`) unless ``viewer`` sees
        everything or has reviewed this case.
    """
    latest = prediction_info(case.predictions[-1], case.case_id) if case.predictions else None
    status = case.status or case_status(case)
    reviews = current_reviews(case)
    if blinded_for(viewer, (r.reader_pk for r in reviews)):
        return CaseInfo(
            case.case_id,
            case.created_at,
            case.modality,
            blind_status(status),
            len(case.images),
            (),
            latest,
            blinded=True,
        )
    return CaseInfo(
        case.case_id,
        case.created_at,
        case.modality,
        status,
        len(case.images),
        tuple(latest_decisions(reviews)),
        latest,
    )


def _reviewed_by(user_id: int) -> ColumnElement[bool]:
    """SQL: the user has reviewed the case's current (newest) AI result."""
    current = (
        select(func.max(Prediction.id))
        .where(Prediction.case_pk == Case.id)
        .correlate(Case)
        .scalar_subquery()
    )
    return exists().where(
        Review.case_pk == Case.id,
        Review.reader_pk == user_id,
        or_(Review.prediction_pk.is_(None), Review.prediction_pk == current),
    )


def _visible_status(viewer: Viewer) -> Any:
    """SQL expression of the status ``viewer`` sees (see :func:`blind_status`)."""
    blinded = case((Case.status == "new", literal("new")), else_=literal("awaiting_review"))
    if sees_everything(viewer):
        return Case.status
    if viewer is BLIND:
        return blinded
    return case((_reviewed_by(viewer.id), Case.status), else_=blinded)


def _user_id(session: Session, username: str) -> int | None:
    return session.scalar(select(User.id).where(User.username == username.strip().lower()))


def _reader_filters(
    session: Session, viewer: Viewer, reader: str | None, not_reviewed_by: str | None
) -> list[ColumnElement[bool]] | None:
    """Clauses of the ``reader`` and ``not_reviewed_by`` filters (``None``: no match).

    Who read a case is not a clinician's to know before they have read it themselves, so
    for a blinded viewer a filter naming another reader matches only cases the viewer has
    reviewed.
    """
    where: list[ColumnElement[bool]] = []
    named: set[int] = set()
    if reader is not None:
        reader_id = _user_id(session, reader)
        if reader_id is None:
            return None
        where.append(_reviewed_by(reader_id))
        named.add(reader_id)
    if not_reviewed_by is not None:
        queue_id = _user_id(session, not_reviewed_by)
        if queue_id is not None:
            where.append(~_reviewed_by(queue_id))
            named.add(queue_id)
    if named and not sees_everything(viewer):
        if viewer is BLIND:
            return None
        if named - {viewer.id}:
            where.append(_reviewed_by(viewer.id))
    return where


def _filters(
    session: Session,
    wanted: set[str],
    viewer: Viewer,
    *,
    since: datetime | None,
    until: datetime | None,
    model: str | None,
    reader: str | None,
    not_reviewed_by: str | None,
) -> list[ColumnElement[bool]] | None:
    """The WHERE clauses of a worklist query (``None``: nothing can match)."""
    where: list[ColumnElement[bool]] = []
    if set(STATUSES) - wanted:
        where.append(_visible_status(viewer).in_(sorted(wanted)))
    if since is not None:
        where.append(Case.created_at >= since)
    if until is not None:
        where.append(Case.created_at < until)
    if model is not None:
        where.append(exists().where(Prediction.case_pk == Case.id, Prediction.model_name == model))
    readers = _reader_filters(session, viewer, reader, not_reviewed_by)
    if readers is None:
        return None
    where += readers
    return where


def _after(session: Session, after: str) -> ColumnElement[bool]:
    """Keyset condition: rows strictly after the case ``after`` in (created_at, id) order."""
    row = session.execute(select(Case.created_at, Case.id).where(Case.case_id == after)).first()
    if row is None:
        raise ReviewInputError(f"after: no case {after!r}")
    created, pk = row
    return and_(Case.created_at >= created, or_(Case.created_at > created, Case.id > pk))


#: Rows whose details are loaded per query: SQLite allows 32,766 bound parameters.
DETAIL_CHUNK = 500


def _page_details(session: Session, rows: Sequence[Any], viewer: Viewer) -> list[CaseInfo]:
    """Build the summaries of one page, loading images, AI results and readers for it only."""
    pks = [r.id for r in rows]
    if not pks:
        return []
    n_images = dict(
        session.execute(
            select(Image.case_pk, func.count(Image.id))
            .where(Image.case_pk.in_(pks))
            .group_by(Image.case_pk)
        ).all()
    )
    newest = (
        select(func.max(Prediction.id))
        .where(Prediction.case_pk.in_(pks))
        .group_by(Prediction.case_pk)
    )
    latest = {
        p.case_pk: p for p in session.scalars(select(Prediction).where(Prediction.id.in_(newest)))
    }
    readers: dict[int, dict[int, str]] = defaultdict(dict)
    for case_pk, result_pk, user_id, name in session.execute(
        select(Review.case_pk, Review.prediction_pk, Review.reader_pk, User.username)
        .join(User, User.id == Review.reader_pk)
        .where(Review.case_pk.in_(pks))
        .distinct()
    ):
        current = latest.get(case_pk)
        if result_pk is None or (current is not None and result_pk == current.id):
            readers[case_pk][user_id] = name  # readers of the current result only
    out = []
    for r in rows:
        p = latest.get(r.id)
        info = prediction_info(p, r.case_id) if p is not None else None
        names = readers.get(r.id, {})
        n = int(n_images.get(r.id, 0))
        if blinded_for(viewer, names):
            out.append(
                CaseInfo(
                    r.case_id,
                    r.created_at,
                    r.modality,
                    blind_status(r.status),
                    n,
                    (),
                    info,
                    blinded=True,
                )
            )
        else:
            out.append(
                CaseInfo(
                    r.case_id,
                    r.created_at,
                    r.modality,
                    r.status,
                    n,
                    tuple(sorted(names.values())),
                    info,
                )
            )
    return out


def query_worklist(
    session: Session,
    wanted: set[str],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    model: str | None = None,
    reader: str | None = None,
    not_reviewed_by: str | None = None,
    limit: int | None = None,
    after: str | None = None,
    viewer: Viewer = BLIND,
) -> list[CaseInfo]:
    """One page of cases whose status, as ``viewer`` sees it, is in ``wanted``, oldest first.

    See ``ReviewStore.worklist`` for the filters. A blinded viewer's rows are blinded,
    their status filter matches the blinded status, and a ``reader`` filter matches only
    cases the viewer has reviewed too.
    """
    where = _filters(
        session,
        wanted,
        viewer,
        since=since,
        until=until,
        model=model,
        reader=reader,
        not_reviewed_by=not_reviewed_by,
    )
    if where is None:
        return []
    if after is not None:
        where.append(_after(session, after))
    query = (
        select(Case.id, Case.case_id, Case.created_at, Case.modality, Case.status)
        .where(*where)
        .order_by(Case.created_at, Case.id)
    )
    if limit is not None:
        query = query.limit(limit)
    rows = session.execute(query).all()
    out: list[CaseInfo] = []
    for i in range(0, len(rows), DETAIL_CHUNK):  # an unlimited list comes in chunks
        out += _page_details(session, rows[i : i + DETAIL_CHUNK], viewer)
    return out


def query_audit(
    session: Session,
    *,
    case_id: str | None = None,
    action: str | None = None,
    username: str | None = None,
    since: datetime | None = None,
) -> list[AuditInfo]:
    """Audit events matching every given filter, in insertion order."""
    query = select(AuditEvent).order_by(AuditEvent.id)
    if case_id is not None:
        query = query.where(AuditEvent.case_id == case_id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if username is not None:
        query = query.where(AuditEvent.username == username.strip().lower())
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    return [
        AuditInfo(e.id, e.at, e.action, e.username, e.case_id, e.details)
        for e in session.scalars(query)
    ]
