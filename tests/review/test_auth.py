"""Accounts: roles, argon2 hashes, sign-in, rate limiting across processes, expiring sessions."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import text

from medtl.review.auth import (
    AccountError,
    AccountLockedError,
    Accounts,
    AuthPolicy,
    InvalidCredentialsError,
    PermissionDeniedError,
    SessionExpiredError,
    token_hash,
)
from medtl.review.store import ReviewStore

from .conftest import PASSWORD, FakeClock, open_store


def _sql(store: ReviewStore, sql: str) -> list[tuple]:
    with store.db.engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(sql).all()]


def test_add_list_roles(store: ReviewStore, users: dict) -> None:
    listed = store.accounts.list_users()
    assert [(u.username, u.role, u.active) for u in listed] == [
        ("alice", "clinician", True), ("bob", "clinician", True),
        ("rita", "researcher", True), ("root", "admin", True)]
    changed = store.accounts.set_role("alice", "admin")
    assert changed.role == "admin"
    assert store.accounts.get_user("ALICE").role == "admin"


def test_passwords_are_argon2id_hashes(store: ReviewStore, users: dict) -> None:
    (stored,) = _sql(store, "SELECT password_hash FROM users WHERE username = 'alice'")[0:1][0]
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


@pytest.mark.parametrize(
    ("username", "password", "role", "match"),
    [
        ("x", PASSWORD, "clinician", "user names"),
        ("bad name", PASSWORD, "clinician", "user names"),
        ("carol", "short", "clinician", "at least 10"),
        ("carol", PASSWORD, "superuser", "unknown role"),
        ("alice", PASSWORD, "clinician", "already exists"),
    ],
)
def test_add_user_rejects_bad_input(
    store: ReviewStore, users: dict, username: str, password: str, role: str, match: str
) -> None:
    with pytest.raises(AccountError, match=match):
        store.accounts.add_user(username, password, role)


def test_only_admins_manage_users(store: ReviewStore, users: dict) -> None:
    with pytest.raises(PermissionDeniedError):
        store.accounts.add_user("carol", PASSWORD, "admin", actor=users["alice"])
    with pytest.raises(PermissionDeniedError):
        store.accounts.set_role("alice", "admin", actor=users["bob"])
    made = store.accounts.add_user("carol", PASSWORD, "clinician", actor=users["root"])
    assert made.role == "clinician"


def test_sign_in_success_and_session(store: ReviewStore, users: dict) -> None:
    session = store.accounts.sign_in("  Alice ", PASSWORD)
    assert session.user.username == "alice"
    assert len(session.token) >= 40
    assert store.accounts.validate_session(session.token) == session.user
    # Only the token's hash is stored.
    rows = _sql(store, "SELECT token_hash FROM user_sessions")
    assert rows == [(token_hash(session.token),)]
    assert session.token not in rows[0][0]


def test_wrong_password_and_unknown_user_look_the_same(store: ReviewStore, users: dict) -> None:
    with pytest.raises(InvalidCredentialsError) as wrong:
        store.accounts.sign_in("alice", "not the password")
    with pytest.raises(InvalidCredentialsError) as unknown:
        store.accounts.sign_in("mallory", "not the password")
    assert str(wrong.value) == str(unknown.value) == "Wrong user name or password."
    # Failures are stored under a hash of the attempted name, never the name itself.
    hashes = _sql(store, "SELECT username_hash FROM login_failures")
    assert len(hashes) == 2 and all(len(h[0]) == 64 for h in hashes)
    assert not any("mallory" in h[0] for h in hashes)


def test_unknown_user_is_checked_against_a_dummy_hash(store: ReviewStore, users: dict) -> None:
    calls = []
    real = store.accounts.hasher

    class Spy(PasswordHasher):
        def verify(self, hash: str, password: str) -> bool:
            calls.append(hash)
            return real.verify(hash, password)

    spy = Spy(time_cost=1, memory_cost=1024, parallelism=1)
    store.accounts.hasher = spy
    with pytest.raises(InvalidCredentialsError):
        store.accounts.sign_in("nobody", "whatever password")
    assert len(calls) == 1 and calls[0].startswith("$argon2id$")


def test_disabled_user_cannot_sign_in_and_loses_sessions(store: ReviewStore, users: dict) -> None:
    session = store.accounts.sign_in("bob", PASSWORD)
    store.accounts.set_active("bob", False)
    with pytest.raises(SessionExpiredError):
        store.accounts.validate_session(session.token)
    with pytest.raises(InvalidCredentialsError):
        store.accounts.sign_in("bob", PASSWORD)
    store.accounts.set_active("bob", True)
    assert store.accounts.sign_in("bob", PASSWORD).user.active


def test_password_change_revokes_sessions(store: ReviewStore, users: dict) -> None:
    session = store.accounts.sign_in("alice", PASSWORD)
    store.accounts.set_password("alice", "a brand new password", actor=users["alice"])
    with pytest.raises(SessionExpiredError):
        store.accounts.validate_session(session.token)
    with pytest.raises(InvalidCredentialsError):
        store.accounts.sign_in("alice", PASSWORD)
    assert store.accounts.sign_in("alice", "a brand new password").user.username == "alice"
    with pytest.raises(PermissionDeniedError):
        store.accounts.set_password("bob", "hijacked password", actor=users["alice"])


def test_rate_limit_locks_after_five_failures(
    store: ReviewStore, users: dict, clock: FakeClock
) -> None:
    for _ in range(5):
        clock.advance(seconds=10)
        with pytest.raises(InvalidCredentialsError):
            store.accounts.sign_in("alice", "guess guess guess")
    # Now even the right password is refused, without being checked.
    with pytest.raises(AccountLockedError) as locked:
        store.accounts.sign_in("alice", PASSWORD)
    assert timedelta(minutes=14) < locked.value.retry_after <= timedelta(minutes=15)
    # Another user is not affected.
    assert store.accounts.sign_in("bob", PASSWORD).user.username == "bob"
    clock.advance(minutes=15, seconds=1)
    assert store.accounts.sign_in("alice", PASSWORD).user.username == "alice"
    # A success clears the counter.
    assert store.accounts.failures("alice") == 0


def test_failures_outside_the_window_do_not_count(
    store: ReviewStore, users: dict, clock: FakeClock
) -> None:
    for _ in range(4):
        with pytest.raises(InvalidCredentialsError):
            store.accounts.sign_in("alice", "guess guess guess")
    clock.advance(minutes=16)
    with pytest.raises(InvalidCredentialsError):
        store.accounts.sign_in("alice", "guess guess guess")
    assert store.accounts.failures("alice") == 1
    assert store.accounts.sign_in("alice", PASSWORD).user.username == "alice"


def test_rate_limit_holds_across_processes(db_url: str, clock: FakeClock, users: dict) -> None:
    """Failures live in the database: a second store (new engine) sees the lock."""
    first = open_store(db_url, clock)
    for _ in range(3):
        with pytest.raises(InvalidCredentialsError):
            first.accounts.sign_in("alice", "guess guess guess")
    first.close()
    second = open_store(db_url, clock)
    try:
        for _ in range(2):
            with pytest.raises(InvalidCredentialsError):
                second.accounts.sign_in("alice", "guess guess guess")
        with pytest.raises(AccountLockedError):
            second.accounts.sign_in("alice", PASSWORD)
    finally:
        second.close()


def test_unknown_names_are_rate_limited_too(store: ReviewStore, clock: FakeClock) -> None:
    for _ in range(5):
        with pytest.raises(InvalidCredentialsError):
            store.accounts.sign_in("ghost", "guess guess guess")
    with pytest.raises(AccountLockedError):
        store.accounts.sign_in("ghost", "guess guess guess")


def test_session_idle_timeout(store: ReviewStore, users: dict, clock: FakeClock) -> None:
    session = store.accounts.sign_in("alice", PASSWORD)
    clock.advance(minutes=20)
    store.accounts.validate_session(session.token)  # refreshes the idle timer
    clock.advance(minutes=20)
    assert store.accounts.validate_session(session.token).username == "alice"
    clock.advance(minutes=30)
    with pytest.raises(SessionExpiredError, match="expired"):
        store.accounts.validate_session(session.token)


def test_session_absolute_expiry(db_url: str, clock: FakeClock, users: dict) -> None:
    store = open_store(db_url, clock, policy=AuthPolicy(
        session_ttl=timedelta(hours=1), idle_timeout=timedelta(hours=2)))
    try:
        session = store.accounts.sign_in("alice", PASSWORD)
        assert session.expires_at == clock.now + timedelta(hours=1)
        clock.advance(minutes=59)
        store.accounts.validate_session(session.token)
        clock.advance(minutes=1)
        with pytest.raises(SessionExpiredError):
            store.accounts.validate_session(session.token)
    finally:
        store.close()


def test_sign_out_and_bogus_tokens(store: ReviewStore, users: dict) -> None:
    session = store.accounts.sign_in("alice", PASSWORD)
    store.accounts.sign_out(session.token)
    store.accounts.sign_out(session.token)  # twice is fine
    for token in (session.token, "", "made-up-token"):
        with pytest.raises(SessionExpiredError):
            store.accounts.validate_session(token)


def test_sign_ins_are_audited(store: ReviewStore, users: dict, clock: FakeClock) -> None:
    store.accounts.sign_in("alice", PASSWORD)
    clock.advance(seconds=5)
    with pytest.raises(InvalidCredentialsError):
        store.accounts.sign_in("alice", "nope nope nope")
    with pytest.raises(InvalidCredentialsError):
        store.accounts.sign_in("nobody", "nope nope nope")
    events = [e for e in store.audit_log(users["root"]) if e.action.startswith("sign_in")]
    assert [(e.action, e.username, e.details) for e in events] == [
        ("sign_in", "alice", None),
        ("sign_in_failed", "alice", {"reason": "wrong password"}),
        ("sign_in_failed", None, {"reason": "unknown user"}),
    ]
    assert all(e.at.tzinfo is not None and e.at == clock.now for e in events[1:])


def test_hash_upgraded_when_parameters_change(store: ReviewStore, users: dict, db_url: str,
                                              tmp_path: Path) -> None:
    stronger = Accounts(store.db, hasher=PasswordHasher(time_cost=2, memory_cost=2048,
                                                        parallelism=1))
    stronger.sign_in("alice", PASSWORD)
    with store.db.engine.connect() as conn:
        stored = conn.execute(text("SELECT password_hash FROM users WHERE username='alice'"))
        assert "m=2048,t=2" in stored.scalar()
