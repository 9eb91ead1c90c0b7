"""The job queue itself (medtl/review/jobs.py) on a real SQLite file and a real PostgreSQL
server: idempotent keys, leases that expire, attempts, and concurrent workers that never
claim the same job twice."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from medtl.review.db import Database
from medtl.review.jobs import JobQueue
from tests.review.postgres import PostgresServer, postgres_server_fixture


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    yield from postgres_server_fixture()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.sqlite'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database()


def test_idempotent_enqueue_lease_expiry_and_attempts(url) -> None:
    clock = Clock()
    db = Database.open(url, clock=clock)
    try:
        queue = JobQueue(db)
        job, created = queue.enqueue("pacs-study", "JOB-1", "m@1", "sealed", max_attempts=2)
        again, created_again = queue.enqueue("pacs-study", "JOB-1", "m@1", "other")
        assert created and not created_again and again.id == job.id
        assert again.payload == "sealed"

        first = queue.claim("w1", lease_s=60)
        assert first is not None and first.attempts == 1 and first.lease_owner == "w1"
        assert queue.claim("w2", lease_s=60) is None  # leased
        clock.now += timedelta(seconds=61)  # w1 died
        second = queue.claim("w2", lease_s=60)
        assert second is not None and second.id == job.id and second.attempts == 2
        assert not queue.complete(job.id, "w1", "CASE-1")  # w1 lost the lease
        clock.now += timedelta(seconds=61)  # w2 died too: out of attempts
        assert queue.claim("w3", lease_s=60) is None
        failed = queue.get(job.id)
        assert failed.status == "failed" and "lease expired" in failed.last_error

        other, _ = queue.enqueue("pacs-study", "JOB-2", "m@1", "x", max_attempts=2)
        held = queue.claim("w4", lease_s=60)
        assert held.id == other.id
        assert queue.fail(other.id, "w4", "PacsError: down", retry_after_s=30)
        assert queue.get(other.id).status == "queued"  # attempts remain
        assert queue.claim("w4", lease_s=60) is None  # backing off
        clock.now += timedelta(seconds=31)
        assert queue.claim("w4", lease_s=60).attempts == 2
        assert queue.renew(other.id, "w4", 60)
        assert queue.complete(other.id, "w4", "CASE-2")
        assert queue.get(other.id).status == "done" and queue.pending() == 0
    finally:
        db.dispose()


def test_concurrent_workers_claim_each_job_once(url) -> None:
    db = Database.open(url)
    try:
        queue = JobQueue(db)
        for i in range(40):
            queue.enqueue("pacs-study", f"JOB-{i:03d}", "m@1", "p")
        claimed: dict[str, list[int]] = {}
        errors: list[BaseException] = []

        def work(name: str) -> None:
            mine = claimed.setdefault(name, [])
            try:
                while (job := queue.claim(name, lease_s=300)) is not None:
                    mine.append(job.id)
                    assert queue.complete(job.id, name, f"CASE-{job.id}")
            except BaseException as err:  # surfaced below
                errors.append(err)

        threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert errors == []
        ids = [i for ids in claimed.values() for i in ids]
        assert sorted(ids) == sorted({j.id for j in queue.list_jobs()}) and len(ids) == 40
        assert {j.status for j in queue.list_jobs()} == {"done"}
    finally:
        db.dispose()
