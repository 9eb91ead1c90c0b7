"""Schema version 6 of the review store takes over the PACS tables and the job queue."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text

from medtl.pacs.records import PushRecord, list_pushes, mark_push
from medtl.review.db import Database
from medtl.review.jobs import JobQueue
from medtl.review.migrations import schema_version, upgrade
from medtl.review.store import ReviewStore

PACS_TABLES = {"pacs_links", "pacs_pushes", "jobs"}


def _tables(db: Database) -> set[str]:
    with db.engine.connect() as conn:
        return set(inspect(conn).get_table_names())


def test_fresh_store_has_the_pacs_tables_at_version_6(tmp_path: Path) -> None:
    store = ReviewStore.open(f"sqlite:///{tmp_path / 'fresh.sqlite'}")
    try:
        assert schema_version(store.db) >= 6
        assert _tables(store.db) >= PACS_TABLES
        with store.db.engine.connect() as conn:
            desc = conn.exec_driver_sql(
                "SELECT description FROM schema_version WHERE version = 6"
            ).scalar()
            job_indexes = {i["name"] for i in inspect(conn).get_indexes("jobs")}
        assert "pacs_pushes" in desc and "jobs" in desc
        assert "ix_jobs_case_id" in job_indexes
    finally:
        store.close()


def test_v5_database_with_first_use_tables_keeps_its_rows(tmp_path: Path) -> None:
    """A database of the last medtl (v5, PACS tables created on first use, rows in them)
    is upgraded: the rows stay, the job table gets the case index, version 6 is recorded."""
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    db = Database.open(url)
    assert upgrade(db, target=5) == 5
    assert not PACS_TABLES & _tables(db)
    mark_push(db, "CASE-00000000AA", 7, "failed", error="HTTP 503", attempted=True)
    _job, created = JobQueue(db).enqueue("pacs-study", "JOB-1", "m@1", "sealed")
    assert created
    with db.engine.connect() as conn:  # the first-use table of v5's medtl had no case index
        conn.exec_driver_sql("DROP INDEX ix_jobs_case_id")
        conn.commit()
    db.dispose()

    store = ReviewStore.open(url)
    try:
        assert schema_version(store.db) >= 6
        pushes = list_pushes(store.db)
        assert [(p.case_id, p.status, p.attempts, p.last_error) for p in pushes] == [
            ("CASE-00000000AA", "failed", 1, "HTTP 503")
        ]
        assert isinstance(pushes[0], PushRecord)
        assert [j.key for j in JobQueue(store.db).list_jobs()] == ["JOB-1"]
        with store.db.engine.connect() as conn:
            assert "ix_jobs_case_id" in {i["name"] for i in inspect(conn).get_indexes("jobs")}
            versions = [r[0] for r in conn.execute(text("SELECT version FROM schema_version"))]
        assert versions.count(6) == 1
        # the upgraded tables take new rows
        mark_push(store.db, "CASE-00000000BB", 8, "done", attempted=True)
        assert len(list_pushes(store.db, "done")) == 1
    finally:
        store.close()
