"""AI results and clinicians' reviews: input checks and the write transactions.

The functions here do the work of :meth:`~medtl.review.store.ReviewStore.record_prediction`
and :meth:`~medtl.review.store.ReviewStore.submit_review` (which check roles and document
the API). Each write records its audit event in the same transaction.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from medtl.review.auth import UserInfo
from medtl.review.cases import load_case
from medtl.review.errors import ReviewInputError
from medtl.review.models import DECISIONS, Prediction, Review, User, add_audit
from medtl.review.schemas import PredictionInfo, ReviewInfo
from medtl.review.status import refresh_status
from medtl.review.worklist import prediction_info, review_info

if TYPE_CHECKING:  # pragma: no cover
    from medtl.review.store import ReviewStore

MAX_COMMENT = 4000


@dataclass(frozen=True)
class PredictionInput:
    """An AI result to store (see :meth:`ReviewStore.record_prediction`)."""

    model_name: str
    model_version: str
    label: str
    probability: float
    threshold: float | None = None
    image_id: int | None = None
    details: dict[str, Any] | None = None

    def check(self) -> None:
        """Raise :class:`ReviewInputError` on a value the store must not keep."""
        p = self.probability
        if not (isinstance(p, int | float) and 0.0 <= float(p) <= 1.0):
            raise ReviewInputError("probability must be a number in [0, 1]")
        if not self.model_name or not self.model_version or not self.label:
            raise ReviewInputError("model_name, model_version and label are required")
        if self.details is not None:
            json.dumps(self.details)  # fail early on values the JSON column cannot hold
            if self.details.get("domain") == "refuse":
                # A refused scan has no AI result: nothing to review, nothing to send.
                raise ReviewInputError(
                    "the model refused this scan (domain check): a refused result is not stored"
                )

    @classmethod
    def of(cls, *args: Any, details: Any = None) -> PredictionInput:
        """Build from the store's arguments; details (typed, or a dict checked and completed
        as :class:`~medtl.artifacts.PredictionDetails`) become their validated JSON, so
        every stored value reads back with ``PredictionDetails.from_stored``."""
        if details is not None:
            from pydantic import ValidationError

            from medtl.artifacts.details import PredictionDetails

            if isinstance(details, dict):
                try:
                    details = PredictionDetails.model_validate(details)
                except ValidationError as err:
                    first = err.errors()[0]
                    where = ".".join(str(x) for x in first["loc"]) or "details"
                    raise ReviewInputError(f"details: {where}: {first['msg']}") from None
            if not isinstance(details, PredictionDetails):
                raise ReviewInputError("details must be PredictionDetails or a dict")
            details = details.to_json_dict()
        return cls(*args, details=details)


@dataclass(frozen=True)
class ReviewInput:
    """A reader's verdict to store (see :meth:`ReviewStore.submit_review`)."""

    decision: str
    x: float | None = None
    y: float | None = None
    slice_index: int | None = None
    comment: str | None = None
    prediction_id: int | None = None
    submission_id: str | None = None

    def check(self) -> None:
        """Raise :class:`ReviewInputError` naming the first invalid field."""
        if self.decision not in DECISIONS:
            raise ReviewInputError(f"decision must be one of {', '.join(DECISIONS)}")
        if (self.x is None) != (self.y is None):
            raise ReviewInputError("a finding location needs both x and y")
        for name, value in (("x", self.x), ("y", self.y)):
            if value is not None and not (math.isfinite(float(value)) and float(value) >= 0):
                raise ReviewInputError(f"{name} must be a finite, non-negative pixel position")
        s = self.slice_index
        if s is not None and (int(s) != s or s < 0):
            raise ReviewInputError("slice_index must be a non-negative integer")
        if self.comment is not None and len(self.comment) > MAX_COMMENT:
            raise ReviewInputError(f"comments are limited to {MAX_COMMENT} characters")
        if self.submission_id is not None and not 1 <= len(self.submission_id) <= 64:
            raise ReviewInputError("submission_id must be 1-64 characters")


def record_prediction(
    store: ReviewStore, actor: UserInfo | None, case_id: str, result: PredictionInput
) -> PredictionInfo:
    """Store an AI result and its ``predict`` audit event."""
    result.check()

    def work(session: Session) -> PredictionInfo:
        case = load_case(session, case_id, for_update=True)
        if result.image_id is not None and result.image_id not in {i.id for i in case.images}:
            raise ReviewInputError(f"image {result.image_id} does not belong to case {case_id}")
        now = store.db.now()
        p = Prediction(
            case_pk=case.id,
            image_pk=result.image_id,
            model_name=result.model_name,
            model_version=result.model_version,
            label=result.label,
            probability=float(result.probability),
            threshold=result.threshold,
            details=result.details,
            created_at=now,
            created_by=getattr(actor, "id", None),
        )
        p.case = case  # appends to case.predictions for the status below
        session.add(p)
        session.flush()
        refresh_status(case)
        details = {
            "model": result.model_name,
            "version": result.model_version,
            "prediction_id": p.id,
        }
        add_audit(session, now, "predict", user=actor, case_id=case_id, details=details)
        return prediction_info(p, case_id)

    return store.db.write(work, what="AI result")


def _resubmitted(session: Session, actor: UserInfo, submission_id: str) -> ReviewInfo | None:
    done = session.scalar(select(Review).where(Review.submission_id == submission_id))
    if done is None:
        return None
    if done.reader_pk != actor.id:
        raise ReviewInputError("submission_id already used by another reader")
    return review_info(done, done.case.case_id)


def _same_as_latest(
    reviews: list[Review], reader_id: int, result_id: int, form: ReviewInput
) -> Review | None:
    """The reader's latest review of ``result_id`` when ``form`` says exactly the same.

    A reader may revise a review (agree, then disagree, then agree again stores three), but
    the same review saved twice in a row is one review.
    """
    mine = [r for r in reviews if r.reader_pk == reader_id and r.prediction_pk == result_id]
    if not mine:
        return None
    last = max(mine, key=lambda r: r.id)
    said = (
        form.decision,
        None if form.x is None else float(form.x),
        None if form.y is None else float(form.y),
        None if form.slice_index is None else int(form.slice_index),
        form.comment or None,
    )
    return last if (last.decision, last.x, last.y, last.slice_index, last.comment) == said else None


def _insert_review(
    store: ReviewStore, session: Session, actor: UserInfo, case_id: str, form: ReviewInput
) -> ReviewInfo:
    case = load_case(session, case_id, for_update=True)
    if not case.predictions:
        raise ReviewInputError(f"case {case_id} has no AI result to review yet")
    pred = form.prediction_id if form.prediction_id is not None else case.predictions[-1].id
    if pred not in {p.id for p in case.predictions}:
        raise ReviewInputError(f"AI result {pred} does not belong to case {case_id}")
    reader = session.get(User, actor.id)
    if reader is None or not reader.active:
        raise ReviewInputError("this account is disabled")
    same = _same_as_latest(case.reviews, actor.id, pred, form)
    if same is not None:  # a second click on Save: the review is stored once
        return review_info(same, case_id)
    now = store.db.now()
    review = Review(
        case_pk=case.id,
        prediction_pk=pred,
        reader_pk=actor.id,
        decision=form.decision,
        x=None if form.x is None else float(form.x),
        y=None if form.y is None else float(form.y),
        slice_index=None if form.slice_index is None else int(form.slice_index),
        comment=form.comment or None,
        created_at=now,
        submission_id=form.submission_id,
    )
    review.reader = reader
    review.case = case  # appends to case.reviews for the status below
    session.add(review)
    session.flush()
    refresh_status(case)
    details = {"decision": form.decision, "review_id": review.id, "prediction_id": pred}
    add_audit(session, now, "review", user=actor, case_id=case_id, details=details)
    return review_info(review, case_id)


def submit_review(
    store: ReviewStore, actor: UserInfo, case_id: str, form: ReviewInput
) -> ReviewInfo:
    """Store a review (idempotent by ``submission_id``) and its ``review`` audit event."""
    form.check()

    def work(session: Session) -> ReviewInfo:
        if form.submission_id is not None:
            done = _resubmitted(session, actor, form.submission_id)
            if done is not None:
                return done
        return _insert_review(store, session, actor, case_id, form)

    try:
        return store.db.write(work, what="review")
    except IntegrityError:
        if form.submission_id is None:
            raise
        # The same form was committed concurrently: return that review.
        return store.db.write(work, what="review")
