"""Schema versioning of the review store: an explicit version table and ordered upgrade steps.

The table ``schema_version`` holds one row per applied step (version, UTC time, description);
the database's version is the highest one. :func:`upgrade` applies the missing steps in
order, each step and its version row in the same transaction, so a crash never leaves a
half-upgraded schema. Opening a database written by a newer medtl (version above
:data:`CURRENT_VERSION`) is refused with :class:`SchemaVersionError` rather than risking
damage to data this version does not understand.

Each step uses *frozen* table definitions (the schema as it was at that version), never the
live ORM models, so upgrading an old file always replays exactly what happened to newer
ones. To change the schema: add a step, bump :data:`CURRENT_VERSION`, update
:mod:`medtl.review.models`; ``tests/review/test_migrations.py`` checks both agree.

Versions:

1. users, sessions, cases, images, predictions, reviews, audit events (+ append-only
   triggers).
2. ``login_failures`` (rate limiting across processes) and ``reviews.submission_id``
   (idempotent resubmission).
3. ``login_failures.client_hash``: sign-in back-off per client and account, so failures
   from one client cannot lock the account for others.
4. ``cases.status`` (maintained with each AI result and review, filled from the existing
   ones) and the worklist's indexes: status with creation time, model, reader.
5. ``user_sessions.method``: how a session was opened (``password``, or ``oidc`` for single
   sign-on; see :mod:`medtl.review.sessions`).
6. the PACS tables ``pacs_links`` (sealed link to the original study), ``pacs_pushes`` (SR
   push status) and the analysis queue ``jobs`` (:mod:`medtl.review.jobs`), which earlier
   medtl created on first use (kept as they are when present), and ``ix_jobs_case_id`` (the
   worklist shows each case's job).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    select,
)

from medtl.review.db import Database, ReviewStoreError
from medtl.review.models import UTCDateTime

logger = logging.getLogger(__name__)

CURRENT_VERSION = 6
VERSION_TABLE = "schema_version"


class SchemaVersionError(ReviewStoreError):
    """The database schema is newer than this medtl, or not a medtl review database."""


_version_md = MetaData()
version_table = Table(
    VERSION_TABLE,
    _version_md,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", UTCDateTime, nullable=False),
    Column("description", String(255), nullable=False),
)

# --- version 1 (frozen) ------------------------------------------------------------------
_v1 = MetaData()
Table(
    "users",
    _v1,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), unique=True, nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    CheckConstraint("role IN ('clinician', 'researcher', 'admin')", name="ck_users_role"),
)
Table(
    "user_sessions",
    _v1,
    Column("id", Integer, primary_key=True),
    Column("token_hash", String(64), unique=True, nullable=False),
    Column("user_id", ForeignKey("users.id"), nullable=False, index=True),
    Column("created_at", DateTime, nullable=False),
    Column("last_seen_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
    Column("revoked_at", DateTime, nullable=True),
)
Table(
    "cases",
    _v1,
    Column("id", Integer, primary_key=True),
    Column("case_id", String(64), unique=True, nullable=False),
    Column("created_at", DateTime, nullable=False, index=True),
    Column("created_by", ForeignKey("users.id"), nullable=True),
    Column("modality", String(16), nullable=True),
)
Table(
    "images",
    _v1,
    Column("id", Integer, primary_key=True),
    Column("case_pk", ForeignKey("cases.id"), nullable=False, index=True),
    Column("relpath", String(255), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("n_bytes", Integer, nullable=False),
    Column("modality", String(16), nullable=True),
    Column("created_at", DateTime, nullable=False),
)
Table(
    "predictions",
    _v1,
    Column("id", Integer, primary_key=True),
    Column("case_pk", ForeignKey("cases.id"), nullable=False, index=True),
    Column("image_pk", ForeignKey("images.id"), nullable=True),
    Column("model_name", String(128), nullable=False, index=True),
    Column("model_version", String(64), nullable=False),
    Column("label", String(64), nullable=False),
    Column("probability", Float, nullable=False),
    Column("threshold", Float, nullable=True),
    Column("details", JSON, nullable=True),
    Column("created_at", DateTime, nullable=False),
    Column("created_by", ForeignKey("users.id"), nullable=True),
)
Table(
    "reviews",
    _v1,
    Column("id", Integer, primary_key=True),
    Column("case_pk", ForeignKey("cases.id"), nullable=False, index=True),
    Column("prediction_pk", ForeignKey("predictions.id"), nullable=True),
    Column("reader_pk", ForeignKey("users.id"), nullable=False, index=True),
    Column("decision", String(16), nullable=False),
    Column("x", Float, nullable=True),
    Column("y", Float, nullable=True),
    Column("slice_index", Integer, nullable=True),
    Column("comment", Text, nullable=True),
    Column("created_at", DateTime, nullable=False),
    CheckConstraint("decision IN ('agree', 'disagree', 'uncertain')", name="ck_reviews_decision"),
)
Table(
    "audit_events",
    _v1,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime, nullable=False, index=True),
    Column("action", String(32), nullable=False, index=True),
    Column("user_id", ForeignKey("users.id"), nullable=True),
    Column("username", String(64), nullable=True),
    Column("case_id", String(64), nullable=True, index=True),
    Column("details", JSON, nullable=True),
)

_APPEND_ONLY_MESSAGE = "audit_events is append-only"


def _audit_triggers(conn: Connection) -> None:
    dialect = conn.dialect.name
    if dialect == "sqlite":
        for op in ("UPDATE", "DELETE"):
            conn.exec_driver_sql(
                f"CREATE TRIGGER audit_events_no_{op.lower()} BEFORE {op} ON audit_events "
                f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY_MESSAGE}'); END"
            )
    elif dialect == "postgresql":  # not exercised by the test suite (no server in CI)
        conn.exec_driver_sql(
            "CREATE OR REPLACE FUNCTION medtl_audit_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION "
            f"'{_APPEND_ONLY_MESSAGE}'; END $$"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION medtl_audit_append_only()"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
            "FOR EACH STATEMENT EXECUTE FUNCTION medtl_audit_append_only()"
        )
    else:
        logger.warning(
            "review store: no append-only trigger for dialect %s; the audit table is "
            "append-only through the API only",
            dialect,
        )


def _upgrade_to_1(conn: Connection) -> None:
    _v1.create_all(conn)
    _audit_triggers(conn)


# --- version 2 (frozen) ------------------------------------------------------------------
_v2 = MetaData()
Table(
    "login_failures",
    _v2,
    Column("id", Integer, primary_key=True),
    Column("username_hash", String(64), nullable=False, index=True),
    Column("at", DateTime, nullable=False),
)


def _upgrade_to_2(conn: Connection) -> None:
    _v2.create_all(conn)
    conn.exec_driver_sql("ALTER TABLE reviews ADD COLUMN submission_id VARCHAR(64)")
    conn.exec_driver_sql("CREATE UNIQUE INDEX ix_reviews_submission_id ON reviews (submission_id)")


# --- version 3 (frozen) ------------------------------------------------------------------
def _upgrade_to_3(conn: Connection) -> None:
    conn.exec_driver_sql("ALTER TABLE login_failures ADD COLUMN client_hash VARCHAR(64)")
    conn.exec_driver_sql(
        "CREATE INDEX ix_login_failures_name_client ON login_failures (username_hash, client_hash)"
    )


# --- version 4 (frozen) ------------------------------------------------------------------
def _latest(decision: str) -> str:
    """SQL: the case has a reader whose latest review says ``decision``."""
    return (
        "EXISTS (SELECT 1 FROM reviews r WHERE r.case_pk = cases.id AND r.decision = "
        f"'{decision}' AND r.id = (SELECT MAX(r2.id) FROM reviews r2 "
        "WHERE r2.case_pk = r.case_pk AND r2.reader_pk = r.reader_pk))"
    )


_STATUS_V4 = (
    "CASE WHEN NOT EXISTS (SELECT 1 FROM predictions p WHERE p.case_pk = cases.id) "
    "THEN 'new' "
    "WHEN NOT EXISTS (SELECT 1 FROM reviews r WHERE r.case_pk = cases.id) "
    "THEN 'awaiting_review' "
    f"WHEN {_latest('disagree')} THEN 'disagreed' "
    f"WHEN {_latest('uncertain')} THEN 'uncertain' "
    "ELSE 'agreed' END"
)


def _upgrade_to_4(conn: Connection) -> None:
    conn.exec_driver_sql("ALTER TABLE cases ADD COLUMN status VARCHAR(16) NOT NULL DEFAULT 'new'")
    conn.exec_driver_sql(f"UPDATE cases SET status = {_STATUS_V4}")
    for sql in (
        "CREATE INDEX ix_cases_status_created ON cases (status, created_at, id)",
        "CREATE INDEX ix_predictions_model_case ON predictions (model_name, case_pk)",
        "CREATE INDEX ix_reviews_reader_case ON reviews (reader_pk, case_pk)",
        "CREATE INDEX ix_reviews_case_reader ON reviews (case_pk, reader_pk)",
    ):
        conn.exec_driver_sql(sql)


# --- version 5 (frozen) ------------------------------------------------------------------
def _upgrade_to_5(conn: Connection) -> None:
    conn.exec_driver_sql(
        "ALTER TABLE user_sessions ADD COLUMN method VARCHAR(16) NOT NULL DEFAULT 'password'"
    )


# --- version 6 (frozen) ------------------------------------------------------------------
# The same definitions as medtl.pacs.records and medtl.review.jobs had when they created
# these tables on first use, so a database that already has them is left as it is.
_v6 = MetaData()
Table(
    "pacs_links",
    _v6,
    Column("case_id", String(64), primary_key=True),
    Column("sealed", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)
Table(
    "pacs_pushes",
    _v6,
    Column("id", Integer, primary_key=True),
    Column("case_id", String(64), nullable=False, index=True),
    Column("prediction_id", Integer, nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("attempts", Integer, nullable=False),
    Column("last_error", String(255), nullable=True),
    Column("unverified", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("case_id", "prediction_id", name="uq_pacs_push_case_prediction"),
)
Table(
    "jobs",
    _v6,
    Column("id", Integer, primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("key", String(128), nullable=False, unique=True),
    Column("model", String(255), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", UTCDateTime, nullable=True, index=True),
    Column("last_error", String(500), nullable=True),
    Column("case_id", String(64), nullable=True),
    Column("created_at", UTCDateTime, nullable=False, index=True),
    Column("updated_at", UTCDateTime, nullable=False),
)


def _upgrade_to_6(conn: Connection) -> None:
    _v6.create_all(conn, checkfirst=True)
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_jobs_case_id ON jobs (case_id)")


@dataclass(frozen=True)
class Step:
    """One upgrade step: brings the schema from ``version - 1`` to ``version``."""

    version: int
    description: str
    apply: Callable[[Connection], None]


STEPS: tuple[Step, ...] = (
    Step(
        1,
        "initial schema: users, sessions, cases, images, predictions, reviews, audit",
        _upgrade_to_1,
    ),
    Step(2, "login_failures table; reviews.submission_id (idempotent resubmission)", _upgrade_to_2),
    Step(3, "login_failures.client_hash (back-off per client and account)", _upgrade_to_3),
    Step(4, "cases.status (stored, indexed) and worklist indexes", _upgrade_to_4),
    Step(5, "user_sessions.method (password or single sign-on)", _upgrade_to_5),
    Step(6, "PACS tables (pacs_links, pacs_pushes) and the job queue (jobs)", _upgrade_to_6),
)


def _read_version(conn: Connection) -> int:
    names = set(inspect(conn).get_table_names())
    if VERSION_TABLE not in names:
        if names & {"users", "cases", "reviews", "audit_events"}:
            raise SchemaVersionError(
                "this database has review tables but no schema_version table; it was not "
                "created by medtl (or is damaged) and will not be modified"
            )
        return 0
    value = conn.execute(
        select(version_table.c.version).order_by(version_table.c.version.desc()).limit(1)
    ).scalar()
    return int(value or 0)


def schema_version(db: Database) -> int:
    """The database's schema version (0 for an empty database)."""
    return db.read(lambda s: _read_version(s.connection()))


def _refuse_newer(version: int) -> None:
    if version > CURRENT_VERSION:
        raise SchemaVersionError(
            f"the review database has schema version {version}, newer than this medtl "
            f"understands ({CURRENT_VERSION}); upgrade medtl instead of opening it with an "
            f"older version"
        )


def upgrade(db: Database, target: int | None = None) -> int:
    """Bring the schema to ``target`` (default :data:`CURRENT_VERSION`), applying steps in order.

    Runs in one write transaction (``BEGIN IMMEDIATE`` on SQLite), so two processes opening a
    fresh database at the same time do not both create it.

    Args:
        db: the database.
        target: the version to reach (tests use ``1`` to build an old database).

    Returns:
        The schema version after the upgrade.

    Raises:
        SchemaVersionError: the database is newer than this medtl, or not a medtl database.
    """
    target = CURRENT_VERSION if target is None else target
    if not 0 <= target <= CURRENT_VERSION:
        raise ValueError(f"target must be in [0, {CURRENT_VERSION}], got {target}")

    def work(session: object) -> int:
        conn: Connection = session.connection()  # type: ignore[attr-defined]
        version = _read_version(conn)
        _refuse_newer(version)
        if version == 0 and target > 0:
            _version_md.create_all(conn)
        for step in STEPS:
            if version < step.version <= target:
                logger.info(
                    "review store: upgrading schema to v%d (%s)", step.version, step.description
                )
                step.apply(conn)
                conn.execute(
                    version_table.insert().values(
                        version=step.version, applied_at=db.now(), description=step.description
                    )
                )
                version = step.version
        return version

    return db.write(work, what="schema upgrade")


def check_version(db: Database) -> int:
    """Raise unless the database is exactly at :data:`CURRENT_VERSION`; return the version.

    Raises:
        SchemaVersionError: newer than this medtl, older (needs :func:`upgrade`), or empty.
    """
    version = schema_version(db)
    _refuse_newer(version)
    if version < CURRENT_VERSION:
        raise SchemaVersionError(
            f"the review database has schema version {version}; this medtl needs "
            f"{CURRENT_VERSION}. Run the upgrade (ReviewStore.open(upgrade=True))."
        )
    return version
