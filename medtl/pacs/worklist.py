"""What the worklist shows about PACS work: each case's analysis job and SR push, and the
jobs that have not produced a case yet.

:func:`case_pacs_status` answers for one page of cases with two queries (``IN`` on the
indexed ``case_id`` columns of ``jobs`` and ``pacs_pushes``), never one query per row and
never the whole tables. :func:`open_jobs` lists queued, running and failed jobs that have no
case yet (a study still being retrieved, or one that failed before its case was created).

Example::

    page = store.worklist(user, limit=50)
    status = case_pacs_status(store.db, [c.case_id for c in page])
    status["CASE-0A1B2C3D4E"].job_label        # "done", "failed: HTTPError: ..." ...
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

if TYPE_CHECKING:  # pragma: no cover
    from medtl.review.db import Database
    from medtl.review.jobs import JobInfo

#: how the page names a push status
PUSH_LABELS = {"pending": "sending", "failed": "send failed", "done": "sent"}


@dataclass(frozen=True)
class CasePacsStatus:
    """A case's latest analysis job and latest SR push (``None`` when it has none)."""

    case_id: str
    job_status: str | None = None
    job_attempts: int = 0
    job_error: str | None = None
    push_status: str | None = None
    push_attempts: int = 0
    push_error: str | None = None

    @property
    def job_label(self) -> str:
        """``queued``, ``running``, ``done``, ``failed: <reason>`` or empty."""
        if self.job_status == "failed":
            return f"failed: {self.job_error or 'unknown reason'}"
        if self.job_status == "queued" and self.job_error:  # waiting to be retried
            return f"queued (retry {self.job_attempts + 1}): {self.job_error}"
        return self.job_status or ""

    @property
    def push_label(self) -> str:
        """``sending``, ``sent``, ``send failed (n attempts): <reason>`` or empty."""
        if self.push_status is None:
            return ""
        label = PUSH_LABELS.get(self.push_status, self.push_status)
        if self.push_status == "failed":
            n = self.push_attempts
            return f"{label} ({n} attempt{'s' * (n != 1)}): {self.push_error or 'unknown reason'}"
        return label


def _latest_by_case(session: Any, table: Any, case_ids: list[str]) -> dict[str, Any]:
    """The row with the highest ID per case, for the given cases (one query)."""
    latest = (
        select(func.max(table.c.id))
        .where(table.c.case_id.in_(case_ids))
        .group_by(table.c.case_id)
        .scalar_subquery()
    )
    rows = session.execute(select(table).where(table.c.id.in_(latest))).all()
    return {row.case_id: row for row in rows}


def case_pacs_status(db: Database, case_ids: Sequence[str]) -> dict[str, CasePacsStatus]:
    """The latest job and push of each of ``case_ids`` (a page of the worklist).

    Args:
        db: the review database (schema v6, which :meth:`ReviewStore.open` brings it to,
            holds the tables).
        case_ids: the case pseudonyms shown.

    Returns:
        Every requested case ID, with empty fields where it has no job or push.
    """
    from medtl.pacs.records import pushes_table
    from medtl.review.jobs import jobs_table

    wanted = list(dict.fromkeys(case_ids))
    if not wanted:
        return {}

    def read(session: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        return (
            _latest_by_case(session, jobs_table, wanted),
            _latest_by_case(session, pushes_table, wanted),
        )

    jobs, pushes = db.read(read)
    out = {}
    for case_id in wanted:
        job, push = jobs.get(case_id), pushes.get(case_id)
        out[case_id] = CasePacsStatus(
            case_id,
            job_status=job.status if job is not None else None,
            job_attempts=job.attempts if job is not None else 0,
            job_error=job.last_error if job is not None else None,
            push_status=push.status if push is not None else None,
            push_attempts=push.attempts if push is not None else 0,
            push_error=push.last_error if push is not None else None,
        )
    return out


def open_jobs(db: Database, limit: int = 20) -> tuple[dict[str, int], list[JobInfo]]:
    """Jobs without a case yet: counts by status, and the newest ``limit`` of them. A
    ``refused`` job (the model refused the study) never gets a case.

    Returns:
        ``({"queued": n, "running": n, "failed": n, "refused": n}, jobs newest first)``.
    """
    from medtl.review.jobs import JobInfo, jobs_table

    t = jobs_table
    without_case = t.c.case_id.is_(None) & (t.c.status != "done")

    def read(session: Any) -> tuple[dict[str, int], list[JobInfo]]:
        query = select(t.c.status, func.count()).where(without_case).group_by(t.c.status)
        counts = {status: n for status, n in session.execute(query)}
        rows = session.execute(select(t).where(without_case).order_by(t.c.id.desc()).limit(limit))
        return counts, [JobInfo(**{c.name: getattr(r, c.name) for c in t.columns}) for r in rows]

    counts, jobs = db.read(read)
    statuses = ("queued", "running", "failed", "refused")
    return {s: int(counts.get(s, 0)) for s in statuses}, jobs
