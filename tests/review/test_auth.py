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
        ("alice", "clinician", True),
        ("bob", "clinician", True),
        ("rita", "researcher", True),
        ("root", "admin", True),
    ]
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
        ("carol", "short", "clinician", "at least 12"),
        ("carol", "elevenchars", "clinician", "at least 12"),
        ("carol", "aaaaaaaaaaaa", "clinician", "too easy to guess: Repeats"),
        ("carol", "password1234", "clinician", "list of common passwords"),
        ("carol", "Qwertyuiop123", "clinician", "list of common passwords"),
        ("carol", "carolcarolcarol", "clinician", "too easy to guess"),
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


def test_strong_passphrase_accepted_weak_password_change_refused(
    store: ReviewStore, users: dict
) -> None:
    made = store.accounts.add_user("carol", "vivid parsnip orbit lantern", "clinician")
    assert made.username == "carol"
    assert store.accounts.sign_in("carol", "vivid parsnip orbit lantern").user == made
    for weak, reason in (
        ("aaaaaaaaaaaa", "too easy to guess"),
        ("password1234", "common passwords"),
    ):
        with pytest.raises(AccountError, match=reason):
            store.accounts.set_password("carol", weak)
    assert store.accounts.sign_in("carol", "vivid parsnip orbit lantern").user == made


def test_failures_from_one_client_do_not_lock_out_another(
    store: ReviewStore, users: dict, clock: FakeClock
) -> None:
    """Finding 7: five wrong passwords from client A must not lock out the user at B."""
    for _ in range(5):
        clock.advance(seconds=10)
        with pytest.raises(InvalidCredentialsError):
            store.accounts.sign_in("alice", "guess guess guess", client="attacker-A")
    # Client A now waits, even with the right password (it is not checked).
    with pytest.raises(AccountLockedError, match="wait 1 min") as locked:
        store.accounts.sign_in("alice", PASSWORD, client="attacker-A")
    assert locked.value.retry_after == timedelta(minutes=1)
    # Alice, signing in from her own browser, is not affected; neither is A's failure count.
    assert store.accounts.sign_in("alice", PASSWORD, client="alice-B").user.username == "alice"
    assert store.accounts.failures("alice", client="attacker-A") == 5
    assert store.accounts.failures("alice") == 5
    with pytest.raises(AccountLockedError):
        store.accounts.sign_in("alice", PASSWORD, client="attacker-A")
    # Admins are protected the same way.
    for _ in range(6):
        with pytest.raises((InvalidCredentialsError, AccountLockedError)):
            store.accounts.sign_in("root", "guess guess guess", client="attacker-A")
    assert store.accounts.sign_in("root", PASSWORD, client="admin-desk").user.role == "admin"


def test_client_back_off_doubles_up_to_the_lockout(
    store: ReviewStore, users: dict, clock: FakeClock
) -> None:
    def fail() -> None:
        with pytest.raises(InvalidCredentialsError):
            store.accounts.sign_in("alice", "guess guess guess", client="A")

    for _ in range(5):
        fail()
    waits = []
    for _ in range(6):
        with pytest.raises(AccountLockedError) as locked:
            store.accounts.sign_in("alice", "guess guess guess", client="A")
        waits.append(locked.value.retry_after)
        clock.advance(seconds=locked.value.retry_after.total_seconds())
        fail()  # one more guess allowed after each wait
    assert waits == [timedelta(minutes=m) for m in (1, 2, 4, 8, 15, 15)]
    # A success after the wait clears this client's failures.
    clock.advance(minutes=15)
    assert store.accounts.sign_in("alice", PASSWORD, client="A").user.username == "alice"
    assert store.accounts.failures("alice", client="A") == 0


def test_many_clients_only_slow_the_account_down(
    db_url: str, clock: FakeClock, users: dict
) -> None:
    """Above the account-wide limit, sign-ins wait a little; they are never refused."""
    policy = AuthPolicy(account_max_failures=12, account_delay=timedelta(seconds=2))
    store = open_store(db_url, clock, policy=policy)
    slept: list[float] = []
    store.accounts.sleep = slept.append
    try:
        for client in range(4):
            for _ in range(3):
                with pytest.raises(InvalidCredentialsError):
                    store.accounts.sign_in("alice", "guess guess guess", client=f"bot-{client}")
        assert slept == []  # 12 failures: the next attempt is the first over the limit
        assert store.accounts.failures("alice") == 12
        assert store.accounts.sign_in("alice", PASSWORD, client="ward-pc").user.username == "alice"
        assert slept == [2.0]
        with pytest.raises(InvalidCredentialsError):
            store.accounts.sign_in("alice", "guess guess guess", client="bot-9")
        assert slept == [2.0, 2.0]
        assert store.accounts.sign_in("bob", PASSWORD, client="bot-0").user.username == "bob"
        assert slept == [2.0, 2.0]  # other accounts are not slowed
    finally:
        store.close()


def test_admin_unlocks_an_account(store: ReviewStore, users: dict) -> None:
    for _ in range(5):
        with pytest.raises(InvalidCredentialsError):
            store.accounts.sign_in("alice", "guess guess guess", client="A")
    with pytest.raises(AccountLockedError):
        store.accounts.sign_in("alice", PASSWORD, client="A")
    with pytest.raises(PermissionDeniedError):
        store.accounts.unlock("alice", actor=users["bob"])
    assert store.accounts.unlock("alice", actor=users["root"]) == 5
    assert store.accounts.sign_in("alice", PASSWORD, client="A").user.username == "alice"
    (event,) = store.audit_log(users["root"], action="user_unlock")
    assert (event.username, event.details) == ("root", {"target": "alice", "cleared": 5})
    with pytest.raises(AccountError, match="no user named"):
        store.accounts.unlock("nobody")


def test_failures_outside_the_window_do_not_count(
    store: ReviewStore, users: dict, clock: FakeClock
) -> None:
    for _ in range(4):
        with pytest.raises(InvalidCredentialsError):
            store.accounts.sign_in("alice", "guess guess guess")
    clock.advance(minutes=61)
    with pytest.raises(InvalidCredentialsError):
        store.accounts.sign_in("alice", "guess guess guess")
    assert store.accounts.failures("alice") == 1
    assert store.accounts.sign_in("alice", PASSWORD).user.username == "alice"


def test_rate_limit_holds_across_processes(db_url: str, clock: FakeClock, users: dict) -> None:
    """Failures live in the database: a second store (new engine) sees the back-off."""
    first = open_store(db_url, clock)
    for _ in range(3):
        with pytest.raises(InvalidCredentialsError):
            first.accounts.sign_in("alice", "guess guess guess", client="A")
    first.close()
    second = open_store(db_url, clock)
    try:
        for _ in range(2):
            with pytest.raises(InvalidCredentialsError):
                second.accounts.sign_in("alice", "guess guess guess", client="A")
        with pytest.raises(AccountLockedError):
            second.accounts.sign_in("alice", PASSWORD, client="A")
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
    store = open_store(
        db_url,
        clock,
        policy=AuthPolicy(session_ttl=timedelta(hours=1), idle_timeout=timedelta(hours=2)),
    )
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


def test_hash_upgraded_when_parameters_change(
    store: ReviewStore, users: dict, db_url: str, tmp_path: Path
) -> None:
    stronger = Accounts(
        store.db, hasher=PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    )
    stronger.sign_in("alice", PASSWORD)
    with store.db.engine.connect() as conn:
        stored = conn.execute(text("SELECT password_hash FROM users WHERE username='alice'"))
        assert "m=2048,t=2" in stored.scalar()
