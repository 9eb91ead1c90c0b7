"""SQLAlchemy 2 ORM models of the review store.

Tables: users, login failures (rate limiting), user sessions, cases, images, predictions,
reviews and the append-only audit log. Every timestamp is stored as UTC (naive in the
database, timezone-aware in Python, see :class:`UTCDateTime`).

Nothing here holds PHI: cases carry a pseudonymous ``case_id``; image files live under
``MEDTL_HOME/cases/<case_id>/`` with generated names; failed sign-ins store a hash of the
attempted user name, never the name itself.

The schema is created and upgraded by :mod:`medtl.review.migrations`, not by
``Base.metadata.create_all``; a test checks the two agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

ROLES: tuple[str, ...] = ("clinician", "researcher", "admin")
DECISIONS: tuple[str, ...] = ("agree", "disagree", "uncertain")
#: Audit actions. ``sign_in_failed`` and ``sign_in_locked`` are failed sign-ins.
AUDIT_ACTIONS: tuple[str, ...] = (
    "sign_in",
    "sign_in_failed",
    "sign_in_locked",
    "sign_out",
    "upload",
    "view",
    "predict",
    "review",
    "export",
    "user_add",
    "user_role",
    "user_disable",
    "user_enable",
    "user_password",
    "user_unlock",
)


def utcnow() -> datetime:
    """Timezone-aware current UTC time (the default clock)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as naive UTC and returned timezone-aware (UTC).

    SQLite has no timezone type; normalising on the way in means comparisons in SQL are
    correct whatever timezone the caller used.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware (UTC)")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of the review store."""


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class User(Base):
    """A local account. Users are never deleted, only disabled (the audit refers to them)."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_in("role", ROLES), name="ck_users_role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class LoginFailure(Base):
    """One failed sign-in, keyed by SHA-256 digests of the attempted user name and the client.

    ``client_hash`` is ``NULL`` for attempts without a client key (and rows written before
    schema version 3); see :mod:`medtl.review.throttle`.
    """

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_name_client", "username_hash", "client_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username_hash: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    client_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


class UserSession(Base):
    """A sign-in session. Only the SHA-256 of the token is stored.

    ``method`` says how it was opened: ``password`` or ``oidc`` (single sign-on, see
    :mod:`medtl.review.sessions`).
    """

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    method: Mapped[str] = mapped_column(String(16), nullable=False, default="password")

    user: Mapped[User] = relationship()


class Case(Base):
    """A de-identified case, known only by its pseudonymous ``case_id``.

    ``status`` is maintained with each AI result and review (see
    :mod:`medtl.review.status`); the worklist filters, sorts and pages on it in SQL.
    """

    __tablename__ = "cases"
    __table_args__ = (Index("ix_cases_status_created", "status", "created_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    modality: Mapped[str | None] = mapped_column(String(16), nullable=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="new")

    images: Mapped[list[Image]] = relationship(back_populates="case", order_by="Image.id")
    predictions: Mapped[list[Prediction]] = relationship(
        back_populates="case", order_by="Prediction.id"
    )
    reviews: Mapped[list[Review]] = relationship(back_populates="case", order_by="Review.id")


class Image(Base):
    """A de-identified file stored under ``cases/<case_id>/`` with a generated name."""

    __tablename__ = "images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_pk: Mapped[int] = mapped_column(ForeignKey("cases.id"), nullable=False, index=True)
    relpath: Mapped[str] = mapped_column(String(255), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    n_bytes: Mapped[int] = mapped_column(Integer, nullable=False)
    modality: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)

    case: Mapped[Case] = relationship(back_populates="images")


class Prediction(Base):
    """An AI result for a case (probability of the positive label from a named model)."""

    __tablename__ = "predictions"
    __table_args__ = (Index("ix_predictions_model_case", "model_name", "case_pk"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_pk: Mapped[int] = mapped_column(ForeignKey("cases.id"), nullable=False, index=True)
    image_pk: Mapped[int | None] = mapped_column(ForeignKey("images.id"), nullable=True)
    model_name: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    model_version: Mapped[str] = mapped_column(String(64), nullable=False)
    label: Mapped[str] = mapped_column(String(64), nullable=False)
    probability: Mapped[float] = mapped_column(Float, nullable=False)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)

    case: Mapped[Case] = relationship(back_populates="predictions")


class Review(Base):
    """One reader's verdict on a case's AI result. A reader may revise: the latest counts."""

    __tablename__ = "reviews"
    __table_args__ = (
        CheckConstraint(_in("decision", DECISIONS), name="ck_reviews_decision"),
        Index("ix_reviews_reader_case", "reader_pk", "case_pk"),
        Index("ix_reviews_case_reader", "case_pk", "reader_pk"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_pk: Mapped[int] = mapped_column(ForeignKey("cases.id"), nullable=False, index=True)
    prediction_pk: Mapped[int | None] = mapped_column(ForeignKey("predictions.id"), nullable=True)
    reader_pk: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False, index=True)
    decision: Mapped[str] = mapped_column(String(16), nullable=False)
    x: Mapped[float | None] = mapped_column(Float, nullable=True)
    y: Mapped[float | None] = mapped_column(Float, nullable=True)
    slice_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    #: client-chosen idempotency key: resubmitting the same form never stores it twice.
    submission_id: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)

    case: Mapped[Case] = relationship(back_populates="reviews")
    reader: Mapped[User] = relationship()
    prediction: Mapped[Prediction | None] = relationship()


class AuditEvent(Base):
    """An append-only audit record (UPDATE and DELETE are refused by database triggers)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    action: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    username: Mapped[str | None] = mapped_column(String(64), nullable=True)
    case_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


def add_audit(
    session: Any,
    at: datetime,
    action: str,
    *,
    user: Any = None,
    case_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event to ``session`` (the only way medtl writes the audit log).

    Args:
        session: the open SQLAlchemy session of the surrounding write transaction, so the
            event commits (or rolls back) together with the change it records.
        at: UTC time of the event.
        action: one of :data:`AUDIT_ACTIONS`.
        user: the acting user (an object with ``id`` and ``username``) or ``None``.
        case_id: the case pseudonym concerned, if any.
        details: small JSON-able, non-PHI details.

    Returns:
        The new (pending) event.
    """
    if action not in AUDIT_ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    event = AuditEvent(
        at=at,
        action=action,
        user_id=getattr(user, "id", None),
        username=getattr(user, "username", None),
        case_id=case_id,
        details=details or None,
    )
    session.add(event)
    return event
