"""Case status, the worklist query and the audit query of the review store.

Case status (derived, never stored), from each reader's latest review:

* ``new``: no AI result yet; ``awaiting_review``: AI result, no review;
* ``agreed``: every reader agrees with the AI; ``disagreed``: at least one reader disagrees;
* ``uncertain``: no one disagrees but at least one reader is uncertain.

Blinded reading: a clinician who has not yet submitted their own review of a case sees
neither other readers' verdicts nor anything derived from them (status, readers, agreement):
:func:`case_info` reports such a case as ``new`` or ``awaiting_review`` ("awaiting your
read") with no readers. Researchers, admins and the local operator (``None``) see it all.
The default viewer, :data:`BLIND`, sees the least.

These functions run inside a session opened by :class:`~medtl.review.store.ReviewStore`,
which checks roles and arguments first.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from medtl.review.auth import UserInfo
from medtl.review.models import AuditEvent, Case, Prediction, Review, User
from medtl.review.schemas import AuditInfo, CaseInfo, PredictionInfo, ReviewInfo

STATUSES: tuple[str, ...] = ("new", "awaiting_review", "agreed", "disagreed", "uncertain")
#: Roles that see every reader's verdict and the agreement between readers.
UNBLINDED_ROLES: tuple[str, ...] = ("researcher", "admin")


class _Blind:
    """An unnamed viewer who has reviewed nothing: sees the least (the safe default)."""

    def __repr__(self) -> str:
        return "BLIND"


#: Default viewer of :func:`case_info` and ``ReviewStore.get_case``: fully blinded.
BLIND: Final = _Blind()
#: Who is looking: a user, ``None`` for the local operator (sees all), or :data:`BLIND`.
Viewer = UserInfo | _Blind | None


def sees_everything(viewer: Viewer) -> bool:
    """True for the local operator (``None``), researchers and admins."""
    if viewer is None:
        return True
    if isinstance(viewer, _Blind):
        return False
    return viewer.role in UNBLINDED_ROLES


def blinded_for(viewer: Viewer, reader_ids: Iterable[int]) -> bool:
    """True when ``viewer`` must not see the verdicts of a case read by ``reader_ids``."""
    if sees_everything(viewer):
        return False
    return isinstance(viewer, _Blind) or viewer.id not in set(reader_ids)


def blind_status(status: str) -> str:
    """What a blinded viewer sees: ``new`` or ``awaiting_review``, never a verdict."""
    return "new" if status == "new" else "awaiting_review"


def latest_decisions(reviews: Iterable[Review]) -> dict[str, str]:
    """Each reader's latest decision (by review id), keyed by user name."""
    latest: dict[str, tuple[int, str]] = {}
    for review in reviews:
        name = review.reader.username
        if name not in latest or review.id > latest[name][0]:
            latest[name] = (review.id, review.decision)
    return {name: decision for name, (_, decision) in sorted(latest.items())}


def case_status(case: Case) -> str:
    """Derive a case's status (see module docstring); needs predictions and reviews loaded."""
    if not case.predictions:
        return "new"
    decisions = set(latest_decisions(case.reviews).values())
    if not decisions:
        return "awaiting_review"
    if "disagree" in decisions:
        return "disagreed"
    if "uncertain" in decisions:
        return "uncertain"
    return "agreed"


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
        The summary; blinded (see module docstring) unless ``viewer`` sees everything or
        has reviewed this case.
    """
    latest = prediction_info(case.predictions[-1], case.case_id) if case.predictions else None
    status = case_status(case)
    if blinded_for(viewer, (r.reader_pk for r in case.reviews)):
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
        tuple(latest_decisions(case.reviews)),
        latest,
    )


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
    viewer: Viewer = BLIND,
) -> list[CaseInfo]:
    """Cases whose status, as ``viewer`` sees it, is in ``wanted``, oldest first.

    Date, model and reader filters run in SQL; the status is derived per case in Python
    (it depends on each reader's latest review). A blinded viewer's rows are blinded (see
    :func:`case_info`), their status filter matches the blinded status, and a ``reader``
    filter matches only cases the viewer has reviewed too (who else read a case is not
    theirs to know before they read it).
    """
    query = (
        select(Case)
        .options(
            selectinload(Case.images),
            selectinload(Case.predictions),
            selectinload(Case.reviews).selectinload(Review.reader),
        )
        .order_by(Case.created_at, Case.id)
    )
    if since is not None:
        query = query.where(Case.created_at >= since)
    if until is not None:
        query = query.where(Case.created_at < until)
    if model is not None:
        query = query.where(Case.predictions.any(Prediction.model_name == model))
    if reader is not None:
        query = query.where(
            Case.reviews.any(Review.reader.has(User.username == reader.strip().lower()))
        )
    if not_reviewed_by is not None:
        query = query.where(
            ~Case.reviews.any(Review.reader.has(User.username == not_reviewed_by.strip().lower()))
        )
    out = []
    for case in session.scalars(query):
        info = case_info(case, viewer=viewer)
        if info.status in wanted and not (reader is not None and info.blinded):
            out.append(info)
            if limit is not None and len(out) >= limit:
                break
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
