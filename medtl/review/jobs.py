"""A queue of analysis jobs in the review database, shared by ``medtl worker`` processes.

Each job has a status (``queued``, ``running``, ``failed``, ``done``, or ``refused`` when the
model package refused the input: final, never retried), a count of attempts,
and while running a lease: the worker that claimed it must renew the lease
(:meth:`JobQueue.renew`) or the job is taken again by the next worker once the lease
expires, so a killed worker's job is not lost. Jobs are idempotent by their ``key`` (e.g.
a keyed pseudonym of study and model): enqueuing the same key again returns the existing
job. The payload is opaque text chosen by the caller (the PACS layer seals it).

Claiming is one write transaction: ``BEGIN IMMEDIATE`` on SQLite serialises workers; on
PostgreSQL the candidate row is locked with ``FOR UPDATE SKIP LOCKED`` so workers on
several machines never claim the same job.

The table lives in its own ``MetaData``; schema version 6 of the review store creates it
(:mod:`medtl.review.migrations`, frozen copy of this definition), and it is still created
when missing (``CREATE TABLE IF NOT EXISTS``) for a database opened without the store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Integer, MetaData, String, Table, Text, insert, or_, select, update

from medtl.review.models import UTCDateTime

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy.orm import Session

    from medtl.review.db import Database

logger = logging.getLogger(__name__)

JOB_STATUSES = ("queued", "running", "failed", "done", "refused")

metadata = MetaData()
jobs_table = Table(
    "jobs",
    metadata,
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
    Column("case_id", String(64), nullable=True, index=True),
    Column("created_at", UTCDateTime, nullable=False, index=True),
    Column("updated_at", UTCDateTime, nullable=False),
)


@dataclass(frozen=True)
class JobInfo:
    """One job as the queue sees it (the payload stays opaque)."""

    id: int
    kind: str
    key: str
    model: str
    payload: str
    status: str
    attempts: int
    max_attempts: int
    lease_owner: str | None
    lease_until: datetime | None
    last_error: str | None
    case_id: str | None
    created_at: datetime
    updated_at: datetime


def _info(row: Any) -> JobInfo:
    return JobInfo(**{c.name: getattr(row, c.name) for c in jobs_table.columns})


class JobQueue:
    """The job queue on a review database.

    Args:
        db: the review store's :class:`~medtl.review.db.Database`.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._ready = False

    def _ensure(self) -> None:
        if not self._ready:
            metadata.create_all(self.db.engine, checkfirst=True)
            self._ready = True

    def enqueue(
        self, kind: str, key: str, model: str, payload: str, *, max_attempts: int = 3
    ) -> tuple[JobInfo, bool]:
        """Add a job unless one with ``key`` exists.

        Args:
            kind: what the job does (the worker dispatches on it), e.g. ``pacs-study``.
            key: idempotency key (no PHI: e.g. a keyed pseudonym of study and model).
            model: the model package to run.
            payload: opaque text the worker needs (sealed by the caller if sensitive).
            max_attempts: tries before the job is marked failed for good.

        Returns:
            ``(job, created)``; ``created`` is ``False`` when the key was already queued.
        """
        self._ensure()
        t = jobs_table

        def work(session: Session) -> tuple[JobInfo, bool]:
            row = session.execute(select(t).where(t.c.key == key)).first()
            if row is not None:
                return _info(row), False
            now = self.db.now()
            new_id = session.execute(
                insert(t).values(
                    kind=kind,
                    key=key,
                    model=model,
                    payload=payload,
                    status="queued",
                    attempts=0,
                    max_attempts=max_attempts,
                    created_at=now,
                    updated_at=now,
                )
            ).inserted_primary_key[0]
            return _info(session.execute(select(t).where(t.c.id == new_id)).one()), True

        return self.db.write(work, what="job enqueue")

    def claim(self, worker: str, lease_s: float) -> JobInfo | None:
        """Take the oldest queued job, or a running one whose lease expired.

        Args:
            worker: the claiming worker's ID (host and process).
            lease_s: seconds the claim holds without renewal.

        Returns:
            The claimed job (status ``running``, attempts counted), or ``None``.
        """
        self._ensure()
        t = jobs_table

        def work(session: Session) -> JobInfo | None:
            now = self.db.now()
            query = (
                select(t)
                .where(
                    or_(
                        (t.c.status == "queued")
                        & (t.c.lease_until.is_(None) | (t.c.lease_until <= now)),
                        (t.c.status == "running") & (t.c.lease_until < now),
                    )
                )
                .order_by(t.c.id)
                .limit(1)
            )
            if not self.db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            row = session.execute(query).first()
            if row is None:
                return None
            if row.status == "running" and row.attempts >= row.max_attempts:
                session.execute(
                    update(t)
                    .where(t.c.id == row.id)
                    .values(
                        status="failed",
                        lease_owner=None,
                        lease_until=None,
                        updated_at=now,
                        last_error=f"lease expired on attempt {row.attempts} (worker lost)",
                    )
                )
                return work(session)
            if row.status == "running":
                logger.warning("jobs: job %d's lease expired; taking it again", row.id)
            session.execute(
                update(t)
                .where(t.c.id == row.id)
                .values(
                    status="running",
                    attempts=row.attempts + 1,
                    lease_owner=worker,
                    lease_until=now + timedelta(seconds=lease_s),
                    updated_at=now,
                )
            )
            return _info(session.execute(select(t).where(t.c.id == row.id)).one())

        return self.db.write(work, what="job claim")

    def _finish(self, job_id: int, worker: str, values: dict[str, object]) -> bool:
        self._ensure()
        t = jobs_table

        def work(session: Session) -> bool:
            result = session.execute(
                update(t)
                .where(
                    t.c.id == job_id,
                    t.c.status == "running",
                    t.c.lease_owner == worker,
                )
                .values(updated_at=self.db.now(), **values)
            )
            return bool(result.rowcount)

        return self.db.write(work, what="job update")

    def renew(self, job_id: int, worker: str, lease_s: float) -> bool:
        """Extend the lease of a job this worker holds; ``False`` if it lost it."""
        return self._finish(
            job_id, worker, {"lease_until": self.db.now() + timedelta(seconds=lease_s)}
        )

    def complete(self, job_id: int, worker: str, case_id: str | None = None) -> bool:
        """Mark a held job done (with the case it produced)."""
        return self._finish(
            job_id,
            worker,
            {
                "status": "done",
                "lease_owner": None,
                "lease_until": None,
                "case_id": case_id,
                "last_error": None,
            },
        )

    def refuse(self, job_id: int, worker: str, reasons: str) -> bool:
        """Mark a held job ``refused`` for good: the model refused its input (no result,
        no case); ``reasons`` (no PHI) is shown by ``medtl pacs jobs`` and the app."""
        return self._finish(
            job_id,
            worker,
            {
                "status": "refused",
                "lease_owner": None,
                "lease_until": None,
                "case_id": None,
                "last_error": reasons[:500],
            },
        )

    def fail(
        self,
        job_id: int,
        worker: str,
        error: str,
        *,
        retry: bool = True,
        retry_after_s: float = 0.0,
    ) -> bool:
        """Record a failed attempt: queued again while attempts remain, else ``failed``.

        Args:
            job_id: the job.
            worker: the worker holding it.
            error: the reason (short, no PHI); shown by ``medtl pacs jobs``.
            retry: queue it again if attempts remain.
            retry_after_s: not claimed again before this many seconds (back-off; a queued
                job's ``lease_until`` is its earliest next start).
        """
        job = self.get(job_id)
        again = retry and job is not None and job.attempts < job.max_attempts
        not_before = self.db.now() + timedelta(seconds=retry_after_s) if again else None
        return self._finish(
            job_id,
            worker,
            {
                "status": "queued" if again else "failed",
                "lease_owner": None,
                "lease_until": not_before if retry_after_s > 0 else None,
                "last_error": error[:500],
            },
        )

    def get(self, job_id: int) -> JobInfo | None:
        """One job, or ``None``."""
        self._ensure()
        t = jobs_table
        row = self.db.read(lambda s: s.execute(select(t).where(t.c.id == job_id)).first())
        return _info(row) if row is not None else None

    def list_jobs(self, status: str | None = None) -> list[JobInfo]:
        """Jobs, oldest first, optionally of one status."""
        self._ensure()
        t = jobs_table
        query = select(t).order_by(t.c.id)
        if status is not None:
            query = query.where(t.c.status == status)
        return self.db.read(lambda s: [_info(r) for r in s.execute(query)])

    def pending(self) -> int:
        """Jobs queued or running (a worker with ``--until-empty`` waits for these)."""
        self._ensure()
        t = jobs_table
        return self.db.read(
            lambda s: len(
                s.execute(select(t.c.id).where(t.c.status.in_(("queued", "running")))).all()
            )
        )
