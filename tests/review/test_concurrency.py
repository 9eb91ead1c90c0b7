"""A review is never silently dropped: concurrent writers, a locked database, exhausted retries."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from medtl.review.db import RetryPolicy, StoreBusyError
from medtl.review.errors import CaseExistsError
from medtl.review.store import ReviewStore

from .conftest import PASSWORD, FakeClock, open_store, tiny_scan

N_READERS = 8


def _count(db_url: str, table: str) -> int:
    """Rows of ``table``, read through a new engine (another connection, like another process)."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar_one())
    finally:
        engine.dispose()


@pytest.fixture
def reviewed_case(store: ReviewStore) -> str:
    for i in range(N_READERS):
        store.accounts.add_user(f"reader{i}", PASSWORD, "clinician")
    case = store.create_case(None, tiny_scan())
    store.record_prediction(
        None, case.case_id, model_name="m", model_version="1", label="nodule", probability=0.6
    )
    return case.case_id


@pytest.mark.parametrize("engines", ["shared", "one-per-thread"])
def test_eight_concurrent_reviews_all_land(
    store: ReviewStore,
    reviewed_case: str,
    db_url: str,
    db_path: Path,
    clock: FakeClock,
    engines: str,
) -> None:
    """8 threads submit at the same moment, through one engine or 8 (like 8 processes)."""
    stores = (
        [store] * N_READERS
        if engines == "shared"
        else [open_store(db_url, clock, busy_timeout_ms=200) for _ in range(N_READERS)]
    )
    readers = [store.accounts.get_user(f"reader{i}") for i in range(N_READERS)]
    barrier = threading.Barrier(N_READERS)
    errors: list[BaseException] = []
    ids: list[int] = []

    def submit(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            decision = ("agree", "disagree", "uncertain")[i % 3]
            review = stores[i].submit_review(
                readers[i], reviewed_case, decision, comment=f"reader {i}"
            )
            ids.append(review.id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(N_READERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    if engines != "shared":
        for s in stores:
            s.close()
    assert errors == []
    assert len(set(ids)) == N_READERS
    assert _count(db_url, "reviews") == N_READERS
    detail = store.open_case(None, reviewed_case)
    assert sorted(r.comment for r in detail.reviews) == sorted(
        f"reader {i}" for i in range(N_READERS)
    )
    assert len(store.audit_log(None, action="review")) == N_READERS


class _Locker(threading.Thread):
    """Holds ``BEGIN EXCLUSIVE`` on the database file for ``hold_s`` seconds."""

    def __init__(self, db_path: Path, hold_s: float) -> None:
        super().__init__(daemon=True)
        self.db_path, self.hold_s = db_path, hold_s
        self.locked = threading.Event()
        self.release = threading.Event()

    def run(self) -> None:
        con = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
        try:
            con.execute("BEGIN EXCLUSIVE")
            self.locked.set()
            self.release.wait(self.hold_s)
            con.execute("COMMIT")
        finally:
            con.close()


@pytest.mark.sqlite_only
def test_review_survives_a_database_locked_for_a_second(
    store: ReviewStore,
    reviewed_case: str,
    db_url: str,
    db_path: Path,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A short busy_timeout so the lock outlasts SQLite's own wait and our retries kick in.
    impatient = open_store(
        db_url,
        clock,
        busy_timeout_ms=100,
        retry=RetryPolicy(attempts=10, backoff_s=0.05, max_backoff_s=0.4),
    )
    reader = store.accounts.get_user("reader0")
    locker = _Locker(db_path, hold_s=1.0)
    locker.start()
    assert locker.locked.wait(10)
    try:
        with caplog.at_level(logging.WARNING, logger="medtl.review.db"):
            review = impatient.submit_review(
                reader, reviewed_case, "disagree", comment="kept despite the lock"
            )
    finally:
        locker.join(10)
        impatient.close()
    retries = [r for r in caplog.records if "database locked during review" in r.getMessage()]
    assert retries, "the write should have been retried while the lock was held"
    assert _count(db_url, "reviews") == 1
    detail = store.open_case(None, reviewed_case)
    assert [(r.id, r.comment) for r in detail.reviews] == [(review.id, "kept despite the lock")]


@pytest.mark.sqlite_only
def test_exhausted_retries_raise_a_clear_error_and_save_nothing(
    store: ReviewStore,
    reviewed_case: str,
    db_url: str,
    db_path: Path,
    clock: FakeClock,
) -> None:
    hasty = open_store(
        db_url, clock, busy_timeout_ms=20, retry=RetryPolicy(attempts=3, backoff_s=0.01)
    )
    reader = store.accounts.get_user("reader1")
    locker = _Locker(db_path, hold_s=10.0)
    locker.start()
    assert locker.locked.wait(10)
    try:
        with pytest.raises(StoreBusyError, match=r"review was NOT saved after 3 tries"):
            hasty.submit_review(reader, reviewed_case, "agree", submission_id="form-7")
    finally:
        locker.release.set()
        locker.join(10)
    assert _count(db_url, "reviews") == 0
    # The app kept the form: resubmitting it now works, exactly once.
    again = hasty.submit_review(reader, reviewed_case, "agree", submission_id="form-7")
    hasty.submit_review(reader, reviewed_case, "agree", submission_id="form-7")
    hasty.close()
    assert _count(db_url, "reviews") == 1
    assert again.submission_id == "form-7"


def test_same_study_uploaded_twice_at_once_makes_one_case(
    store: ReviewStore, db_url: str, clock: FakeClock
) -> None:
    """Two uploads of one study race: one case, the other gets CaseExistsError, no orphan."""
    uploaders = [open_store(db_url, clock) for _ in range(4)]
    barrier = threading.Barrier(len(uploaders))
    made: list[str] = []
    clashes: list[str] = []
    errors: list[BaseException] = []

    def upload(s: ReviewStore) -> None:
        try:
            barrier.wait(timeout=30)
            made.append(s.create_case(None, tiny_scan(), source_key="2.25.777").case_id)
        except CaseExistsError as exc:
            clashes.append(exc.case_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(s,)) for s in uploaders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for s in uploaders:
        s.close()
    assert errors == []
    assert len(made) == 1 and clashes == made * 3
    assert _count(db_url, "cases") == 1
    assert len(list((store.cases_dir / made[0]).iterdir())) == 1  # no orphan file
