"""Case status and blinded reading.

Case status, from each reader's latest review **of the case's current AI result** (its
newest; every review names the result it judged, ``reviews.prediction_pk``). A new result
on a case reopens it: the status goes back to ``awaiting_review`` for the new result, while
the earlier result and its reviews stay stored and shown, labelled with their result.

* ``new``: no AI result yet; ``awaiting_review``: AI result, no review of it;
* ``agreed``: every reader agrees with the AI; ``disagreed``: at least one reader disagrees;
* ``uncertain``: no one disagrees but at least one reader is uncertain.

The status is stored in ``cases.status`` (indexed, so the worklist filters and pages in
SQL) and kept current by :func:`refresh_status`, which every write that adds an AI result or
a review calls in its own transaction, with the case row locked (``SELECT ... FOR UPDATE``
on PostgreSQL; SQLite serialises writers).

Blinded reading: a clinician who has not yet submitted their own review of a case sees
neither other readers' verdicts nor anything derived from them (status, readers,
agreement): such a case shows as ``new`` or ``awaiting_review`` ("awaiting your read") with
no readers. Researchers, admins and the local operator (``None``) see it all. The default
viewer, :data:`BLIND`, sees the least.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from medtl.review.auth import UserInfo
from medtl.review.models import Case, Review

STATUSES: tuple[str, ...] = ("new", "awaiting_review", "agreed", "disagreed", "uncertain")
#: Roles that see every reader's verdict and the agreement between readers.
UNBLINDED_ROLES: tuple[str, ...] = ("researcher", "admin")


class _Blind:
    """An unnamed viewer who has reviewed nothing: sees the least (the safe default)."""

    def __repr__(self) -> str:
        return "BLIND"


#: Default viewer of ``case_info`` and ``ReviewStore.get_case``: fully blinded.
BLIND: Final = _Blind()
#: Who is looking: a user, ``None`` for the local operator (sees all), or :data:`BLIND`.
Viewer = UserInfo | _Blind | None


def current_result_id(case: Case) -> int | None:
    """The ID of the case's current (newest) AI result, ``None`` without one."""
    return max((p.id for p in case.predictions), default=None)


def bound_to(review: Review, result_id: int | None) -> bool:
    """Whether ``review`` judged the AI result ``result_id``.

    A review without a result (rows written outside the store before results were bound)
    counts for the current result, as it always did.
    """
    return review.prediction_pk is None or review.prediction_pk == result_id


def current_reviews(case: Case) -> list[Review]:
    """The reviews of the case's current AI result (empty without one)."""
    current = current_result_id(case)
    if current is None:
        return []
    return [r for r in case.reviews if bound_to(r, current)]


def latest_decisions(reviews: Iterable[Review]) -> dict[str, str]:
    """Each reader's latest decision (by review id), keyed by user name."""
    latest: dict[str, tuple[int, str]] = {}
    for review in reviews:
        name = review.reader.username
        if name not in latest or review.id > latest[name][0]:
            latest[name] = (review.id, review.decision)
    return {name: decision for name, (_, decision) in sorted(latest.items())}


def status_of(has_prediction: bool, decisions: Iterable[str]) -> str:
    """The status of a case with or without an AI result and these latest decisions."""
    if not has_prediction:
        return "new"
    found = set(decisions)
    if not found:
        return "awaiting_review"
    if "disagree" in found:
        return "disagreed"
    if "uncertain" in found:
        return "uncertain"
    return "agreed"


def case_status(case: Case) -> str:
    """Derive a case's status from its loaded predictions and the reviews of the current
    result."""
    return status_of(bool(case.predictions), latest_decisions(current_reviews(case)).values())


def refresh_status(case: Case) -> str:
    """Recompute and set ``case.status`` (call after adding an AI result or a review).

    The new row must be in ``case.predictions`` / ``case.reviews`` (set its ``case``
    relationship, which appends it), and the case row locked by the caller.
    """
    case.status = case_status(case)
    return case.status


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
