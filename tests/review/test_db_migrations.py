"""Engine settings, default location and schema versioning of the review store."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from medtl.review.db import Database, default_database_url
from medtl.review.migrations import (
    CURRENT_VERSION,
    SchemaVersionError,
    check_version,
    schema_version,
    upgrade,
)
from medtl.review.models import Base
from medtl.review.store import ReviewStore

from .conftest import PASSWORD, FakeClock, open_store, tiny_scan


def test_default_url_is_medtl_home_db(_home: Path) -> None:
    assert default_database_url() == f"sqlite:///{_home.resolve() / 'db' / 'review.sqlite'}"


def test_env_var_overrides_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.sqlite'}"
    monkeypatch.setenv("MEDTL_DATABASE_URL", url)
    assert default_database_url() == url
    store = open_store(None)  # type: ignore[arg-type]
    store.close()
    assert (tmp_path / "elsewhere.sqlite").is_file()


def test_open_without_url_creates_db_in_medtl_home(_home: Path) -> None:
    store = open_store(None)  # type: ignore[arg-type]
    store.close()
    assert (_home / "db" / "review.sqlite").is_file()


@pytest.mark.sqlite_only
def test_sqlite_pragmas(store: ReviewStore) -> None:
    with store.db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000


def test_foreign_keys_enforced(store: ReviewStore) -> None:
    def bad(session: object) -> None:
        session.execute(
            text(  # type: ignore[attr-defined]
                "INSERT INTO images (case_pk, relpath, kind, sha256, n_bytes, created_at) "
                "VALUES (999, 'x', 'scan', 'h', 1, '2026-01-01 00:00:00')"
            )
        )

    with pytest.raises(Exception, match=r"(?i)foreign key"):
        store.db.write(bad)


def test_fresh_database_is_at_current_version(store: ReviewStore) -> None:
    assert schema_version(store.db) == CURRENT_VERSION >= 3
    with store.db.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT version, description FROM schema_version ORDER BY version"
        ).all()
    assert [r[0] for r in rows] == list(range(1, CURRENT_VERSION + 1))


def test_upgrade_is_idempotent(store: ReviewStore) -> None:
    assert upgrade(store.db) == CURRENT_VERSION
    with store.db.engine.connect() as conn:
        assert (
            conn.exec_driver_sql("SELECT COUNT(*) FROM schema_version").scalar() == CURRENT_VERSION
        )


def _columns(conn: object) -> dict[str, set[tuple[str, bool]]]:
    insp = inspect(conn)
    return {
        t: {(c["name"], bool(c["nullable"])) for c in insp.get_columns(t)}
        for t in insp.get_table_names()
        if t != "schema_version"
    }


def _indexes(conn: object) -> dict[str, set[tuple[str, ...]]]:
    insp = inspect(conn)
    # A unique index (migrations) and a UNIQUE constraint (ORM) are the same thing here.
    return {
        t: {tuple(i["column_names"]) for i in insp.get_indexes(t)}
        | {tuple(u["column_names"]) for u in insp.get_unique_constraints(t)}
        for t in insp.get_table_names()
        if t != "schema_version"
    }


def test_migrated_schema_matches_orm_models(store: ReviewStore, tmp_path: Path) -> None:
    """The upgrade steps and the live models describe the same tables, columns, indexes."""
    from medtl.pacs.records import metadata as pacs_metadata
    from medtl.review.jobs import metadata as jobs_metadata

    reference = Database.open(f"sqlite:///{tmp_path / 'orm.sqlite'}")
    for metadata in (Base.metadata, pacs_metadata, jobs_metadata):  # v6: PACS tables, jobs
        metadata.create_all(reference.engine)
    with reference.engine.connect() as a, store.db.engine.connect() as b:
        assert _columns(a) == _columns(b)
        assert _indexes(a) == _indexes(b)
        worklist_indexes = _indexes(b)
    reference.dispose()
    assert ("status", "created_at", "id") in worklist_indexes["cases"]
    assert ("model_name", "case_pk") in worklist_indexes["predictions"]
    assert {("reader_pk", "case_pk"), ("case_pk", "reader_pk")} <= worklist_indexes["reviews"]


def test_upgrade_v3_to_v4_fills_the_status_column(db_url: str, clock: FakeClock) -> None:
    """Existing cases get the status their AI results and reviews imply."""
    db = Database.open(db_url, clock=clock)
    assert upgrade(db, target=3) == 3
    t = "'2025-01-02 00:00:00'"
    rows = [
        # No explicit IDs: rows get 1, 2, ... from SQLite's rowid or PostgreSQL's sequence.
        "INSERT INTO users (username, password_hash, role, active, created_at, updated_at)"
        f" VALUES ('ann', 'x', 'clinician', TRUE, {t}, {t}), ('ben', 'x', 'admin', TRUE, {t}, {t})",
    ]
    # case number -> (has AI result, [(reader, decision), ...] in review order)
    plan = {
        1: (False, []),
        2: (True, []),
        3: (True, [(1, "agree"), (2, "agree")]),
        4: (True, [(1, "disagree"), (1, "agree"), (2, "uncertain")]),  # ann changed her mind
        5: (True, [(1, "agree"), (2, "disagree")]),
        6: (True, [(2, "disagree"), (2, "agree")]),
    }
    for n, (predicted, reviews) in plan.items():
        rows.append(
            f"INSERT INTO cases (case_id, created_at) VALUES ("
            f"'CASE-000000000{n}', '2025-01-0{n} 00:00:00')"
        )
        if predicted:
            rows.append(
                "INSERT INTO predictions (case_pk, model_name, model_version, label,"
                f" probability, created_at) VALUES ({n}, 'm', '1', 'x', 0.5, {t})"
            )
        for reader, decision in reviews:
            rows.append(
                "INSERT INTO reviews (case_pk, prediction_pk, reader_pk, decision, created_at)"
                f" VALUES ({n}, (SELECT id FROM predictions WHERE case_pk = {n}), {reader},"
                f" '{decision}', {t})"
            )
    db.write(lambda s: [s.execute(text(sql)) for sql in rows])
    db.dispose()
    store = open_store(db_url, clock)
    try:
        got = [(c.case_id[-1], c.status) for c in store.worklist(None)]
    finally:
        store.close()
    assert got == [
        ("1", "new"),
        ("2", "awaiting_review"),
        ("3", "agreed"),
        ("4", "uncertain"),
        ("5", "disagreed"),
        ("6", "agreed"),
    ]


def test_upgrade_v1_to_current_keeps_data(db_url: str, clock: FakeClock) -> None:
    db = Database.open(db_url, clock=clock)
    assert upgrade(db, target=1) == 1
    with db.engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        review_cols = {c["name"] for c in inspect(conn).get_columns("reviews")}
    assert "login_failures" not in tables and "submission_id" not in review_cols
    # A v1 database with a user, a case, an AI result and a review, written as v1 would
    # (no explicit IDs: PostgreSQL's sequences must stay in step with the rows).
    v1_rows = (
        "INSERT INTO users (username, password_hash, role, active, created_at,"
        " updated_at) VALUES ('old', 'x', 'clinician', TRUE, '2025-01-01 00:00:00',"
        " '2025-01-01 00:00:00')",
        "INSERT INTO cases (case_id, created_at) VALUES ('CASE-00000000AA', '2025-01-02 00:00:00')",
        "INSERT INTO predictions (case_pk, model_name, model_version, label,"
        " probability, created_at) VALUES (1, 'm', '1', 'nodule', 0.7,"
        " '2025-01-02 00:00:00')",
        "INSERT INTO reviews (case_pk, prediction_pk, reader_pk, decision, created_at)"
        " VALUES (1, 1, 1, 'disagree', '2025-01-03 00:00:00')",
    )
    db.write(lambda s: [s.execute(text(sql)) for sql in v1_rows])
    with pytest.raises(SchemaVersionError, match=f"version 1; this medtl needs {CURRENT_VERSION}"):
        check_version(db)
    db.dispose()

    store = open_store(db_url, clock)  # upgrades
    try:
        assert schema_version(store.db) == CURRENT_VERSION
        case = store.get_case("CASE-00000000AA", viewer=None)
        assert case.status == "disagreed"
        assert case.readers == ("old",)
        # v2 features work on the upgraded file.
        store.accounts.add_user("newbie", PASSWORD, "clinician")
        user = store.accounts.get_user("newbie")
        review = store.submit_review(user, "CASE-00000000AA", "agree", submission_id="f-1")
        assert review.submission_id == "f-1"
        with pytest.raises(Exception):  # noqa: B017 - any auth error
            store.accounts.sign_in("newbie", "wrong password!")
        assert store.accounts.failures("newbie") == 1
    finally:
        store.close()


def test_newer_database_is_refused(db_url: str, clock: FakeClock) -> None:
    store = open_store(db_url, clock)
    store.create_case(None, tiny_scan())
    store.db.write(
        lambda s: s.execute(
            text(
                "INSERT INTO schema_version (version, applied_at, description) "
                f"VALUES ({CURRENT_VERSION + 1}, '2030-01-01 00:00:00', 'from the future')"
            )
        )
    )
    store.close()
    with pytest.raises(
        SchemaVersionError, match=f"version {CURRENT_VERSION + 1}, newer than this medtl"
    ):
        open_store(db_url, clock)
    with pytest.raises(SchemaVersionError, match="newer"):
        open_store(db_url, clock, upgrade_schema=False)


def test_unversioned_foreign_database_is_refused(db_path: Path, db_url: str) -> None:
    db = Database.open(db_url)
    db.write(lambda s: s.execute(text("CREATE TABLE users (id INTEGER PRIMARY KEY)")))
    db.dispose()
    with pytest.raises(SchemaVersionError, match="no schema_version table"):
        open_store(db_url)


def test_open_without_upgrade_refuses_empty_database(db_url: str) -> None:
    with pytest.raises(SchemaVersionError, match="version 0"):
        open_store(db_url, upgrade_schema=False)
