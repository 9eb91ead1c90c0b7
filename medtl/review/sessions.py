"""Sessions a browser presents again after a reload, and sessions opened by single sign-on.

A session is a row of ``user_sessions`` (:class:`~medtl.review.models.UserSession`): a random
token that only its holder knows (the database keeps its SHA-256), an absolute expiry, an
idle timeout and a revocation time. :class:`~medtl.review.auth.Accounts` opens one on a
password sign-in, checks it (:meth:`~medtl.review.auth.Accounts.validate_session`) and
revokes it at sign-out, each with an audit event (``sign_in`` / ``sign_out``).

The web app keeps the token in a cookie (:data:`COOKIE_NAME`, ``SameSite=Strict``,
``Secure`` over HTTPS) so that reloading the page, or opening a second tab, presents the
same session instead of asking for the password again; the server decides whether it is
still valid, so a revoked, expired or idle session is refused whatever the browser holds.

Single sign-on (OpenID Connect, through Streamlit's ``st.login``) proves who the user is
but opens no medtl session by itself: :func:`open_sso_session` opens one for the matching
local account, with ``method = "oidc"`` and a ``sign_in`` audit event naming the method, so
SSO users expire, sign out and appear in the audit log like everyone else.

Example::

    info = open_sso_session(store.accounts, "alice", provider="oidc")
    user = store.accounts.validate_session(info.token)
    store.accounts.sign_out(info.token)   # revoked, audited
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from medtl.review.accounts_base import (
    InvalidCredentialsError,
    SessionInfo,
    UserInfo,
    normalize_username,
    require_role,
    token_hash,
)
from medtl.review.models import User, UserSession, add_audit

if TYPE_CHECKING:  # pragma: no cover
    from medtl.review.auth import Accounts

logger = logging.getLogger(__name__)

#: The cookie the web app keeps the session token in.
COOKIE_NAME = "medtl_session"
#: How a session was opened.
METHODS: tuple[str, ...] = ("password", "oidc")

__all__ = [
    "COOKIE_NAME",
    "METHODS",
    "SessionRecord",
    "list_sessions",
    "open_sso_session",
]


@dataclass(frozen=True)
class SessionRecord:
    """A session as an admin sees it (never the token or its hash)."""

    id: int
    username: str
    method: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


def open_sso_session(accounts: Accounts, username: str, *, provider: str = "oidc") -> SessionInfo:
    """Open a session for a user whose identity single sign-on has already proven.

    Args:
        accounts: the store's accounts (its database, clock and session policy).
        username: the local account matching the identity (e.g. the e-mail's local part).
        provider: a short name of the identity provider, recorded in the audit event.

    Returns:
        The new session; its ``token`` is shown only here.

    Raises:
        InvalidCredentialsError: no such account, or it is disabled (an identity alone
            does not create an account).
    """
    name = normalize_username(username)

    def work(session: Session) -> SessionInfo | None:
        user = session.scalar(select(User).where(User.username == name))
        if user is None or not user.active:
            return None
        now = accounts.db.now()
        info = open_session(session, user, now, accounts.policy.session_ttl, method="oidc")
        add_audit(session, now, "sign_in", user=user, details={"method": "oidc", "via": provider})
        return info

    info = accounts.db.write(work, what="single sign-on")
    if info is None:
        raise InvalidCredentialsError("This organisation account has no active medtl account.")
    logger.info("review store: single sign-on session (user id %s)", info.user.id)
    return info


def open_session(
    session: Session, user: User, now: datetime, ttl: timedelta, method: str = "password"
) -> SessionInfo:
    """Add a server-side session for ``user`` (only the token's hash is stored).

    Returns:
        The new session; its token is what the browser presents again.
    """
    token = secrets.token_urlsafe(32)
    expires = now + ttl
    session.add(
        UserSession(
            token_hash=token_hash(token),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            expires_at=expires,
            method=method,
        )
    )
    return SessionInfo(token=token, user=UserInfo.from_row(user), expires_at=expires)


def list_sessions(
    accounts: Accounts, *, actor: UserInfo | None = None, active_only: bool = True
) -> list[SessionRecord]:
    """Sessions, newest first (admins only), e.g. to see who is signed in and how.

    Args:
        accounts: the store's accounts.
        actor: the admin asking, or ``None`` for the local operator.
        active_only: leave out revoked and expired sessions.

    Returns:
        The sessions, without tokens.
    """
    require_role(actor, "admin")

    def read(session: Session) -> list[SessionRecord]:
        now = accounts.db.now()
        query = select(UserSession, User.username).join(User, User.id == UserSession.user_id)
        if active_only:
            query = query.where(
                UserSession.revoked_at.is_(None),
                UserSession.expires_at > now,
                UserSession.last_seen_at > now - accounts.policy.idle_timeout,
            )
        rows = session.execute(query.order_by(UserSession.id.desc())).all()
        return [
            SessionRecord(
                s.id, name, s.method, s.created_at, s.last_seen_at, s.expires_at, s.revoked_at
            )
            for s, name in rows
        ]

    return accounts.db.read(read)
