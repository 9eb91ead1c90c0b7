"""Sessions that a browser presents again, and sessions opened by single sign-on
(issue 13, point 9): hashed tokens with expiry, revocation and audit events."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from medtl.review import InvalidCredentialsError, PermissionDeniedError, SessionExpiredError
from medtl.review.accounts_base import token_hash
from medtl.review.auth import UserInfo
from medtl.review.models import UserSession
from medtl.review.sessions import list_sessions, open_sso_session
from medtl.review.store import ReviewStore

from .conftest import PASSWORD, FakeClock


def _row(store: ReviewStore, token: str) -> UserSession:
    digest = token_hash(token)
    return store.db.read(
        lambda s: s.scalar(select(UserSession).where(UserSession.token_hash == digest))
    )


def test_sso_session_is_stored_hashed_audited_and_revocable(
    store: ReviewStore, users: dict[str, UserInfo]
) -> None:
    info = open_sso_session(store.accounts, "Alice", provider="oidc")
    assert info.user.username == "alice"
    assert store.accounts.validate_session(info.token).username == "alice"  # a reload
    row = _row(store, info.token)
    assert row.method == "oidc" and row.token_hash != info.token
    assert info.token not in str(store.db.read(lambda s: s.execute(select(UserSession)).all()))
    [event] = store.audit_log(None, action="sign_in", username="alice")
    assert event.details == {"method": "oidc", "via": "oidc"}

    store.accounts.sign_out(info.token)
    with pytest.raises(SessionExpiredError):
        store.accounts.validate_session(info.token)
    assert [e.action for e in store.audit_log(None, username="alice")][-1] == "sign_out"


def test_password_sessions_are_marked_as_such(store: ReviewStore, users: dict) -> None:
    info = store.accounts.sign_in("bob", PASSWORD, client="c1")
    assert _row(store, info.token).method == "password"


def test_sso_needs_an_active_local_account(store: ReviewStore, users: dict) -> None:
    with pytest.raises(InvalidCredentialsError):
        open_sso_session(store.accounts, "mallory")
    store.accounts.set_active("bob", False)
    with pytest.raises(InvalidCredentialsError):
        open_sso_session(store.accounts, "bob")
    assert store.audit_log(None, action="sign_in") == []


def test_sso_session_expires_like_any_other(
    store: ReviewStore, users: dict, clock: FakeClock
) -> None:
    info = open_sso_session(store.accounts, "alice")
    for _ in range(16):  # used every 29 minutes: never idle, but 8 hours is the limit
        clock.advance(minutes=29)
        store.accounts.validate_session(info.token)
    clock.advance(minutes=29)
    with pytest.raises(SessionExpiredError):
        store.accounts.validate_session(info.token)


def test_list_sessions_for_admins(store: ReviewStore, users: dict, clock: FakeClock) -> None:
    pw = store.accounts.sign_in("bob", PASSWORD, client="c1")
    sso = open_sso_session(store.accounts, "alice")
    listed = list_sessions(store.accounts, actor=users["root"])
    assert [(r.username, r.method) for r in listed] == [("alice", "oidc"), ("bob", "password")]
    store.accounts.sign_out(pw.token)
    assert [r.username for r in list_sessions(store.accounts)] == ["alice"]
    assert len(list_sessions(store.accounts, active_only=False)) == 2
    clock.advance(minutes=31)  # idle
    assert list_sessions(store.accounts) == []
    with pytest.raises(PermissionDeniedError):
        list_sessions(store.accounts, actor=users["alice"])
    del sso
