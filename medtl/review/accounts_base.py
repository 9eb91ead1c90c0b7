"""Account data shapes, errors and role checks of the review store (no database access).

Re-exported by :mod:`medtl.review.auth`, which is where callers import them from.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from medtl.review.db import ReviewStoreError
from medtl.review.models import User

_USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")


class AuthError(ReviewStoreError):
    """Sign-in or session problems."""


class InvalidCredentialsError(AuthError):
    """Wrong user name or password (deliberately does not say which)."""


class AccountLockedError(AuthError):
    """Too many failed sign-ins from this client; ``retry_after`` says how long to wait.

    Only the client that made the failures waits: the account stays open to others.
    """

    def __init__(self, retry_after: timedelta) -> None:
        seconds = max(1, math.ceil(retry_after.total_seconds()))
        wait = f"{seconds} s" if seconds < 60 else f"{math.ceil(seconds / 60)} min"
        super().__init__(
            f"Too many failed sign-ins from this browser: please wait {wait} before trying "
            "again, or ask an administrator to unlock the account."
        )
        self.retry_after = retry_after


class SessionExpiredError(AuthError):
    """The session token is unknown, revoked or expired."""


class PermissionDeniedError(ReviewStoreError):
    """The user's role does not allow this action."""


class AccountError(ReviewStoreError, ValueError):
    """Bad account input: invalid name, role or password, duplicate or unknown user."""


@dataclass(frozen=True)
class AuthPolicy:
    """Throttling, session and password rules (see :mod:`medtl.review.throttle`).

    Attributes:
        max_failures: failures of one client on one account within ``failure_window``
            after which that client backs off.
        failure_window: window in which failures are counted (longer than ``lockout``,
            so the back-off keeps growing while a client keeps failing).
        backoff: the first back-off; it doubles with each further failure.
        lockout: the longest back-off of one client.
        account_max_failures: failures on one account from all clients together within
            ``failure_window`` above which every sign-in to it is slowed down.
        account_delay: that slow-down (a wait before the password is checked).
        session_ttl: absolute lifetime of a session.
        idle_timeout: a session unused this long expires.
        touch_interval: how often a used session's ``last_seen_at`` is written.
        min_password_length: shortest accepted password.
        min_password_score: lowest accepted ``zxcvbn`` strength score (0-4).
    """

    max_failures: int = 5
    failure_window: timedelta = timedelta(hours=1)
    backoff: timedelta = timedelta(minutes=1)
    lockout: timedelta = timedelta(minutes=15)
    account_max_failures: int = 100
    account_delay: timedelta = timedelta(seconds=2)
    session_ttl: timedelta = timedelta(hours=8)
    idle_timeout: timedelta = timedelta(minutes=30)
    touch_interval: timedelta = timedelta(seconds=60)
    min_password_length: int = 12
    min_password_score: int = 3


@dataclass(frozen=True)
class UserInfo:
    """A user as the app sees it (no password hash)."""

    id: int
    username: str
    role: str
    active: bool
    created_at: datetime

    @classmethod
    def from_row(cls, user: User) -> UserInfo:
        """Build from an ORM row."""
        return cls(user.id, user.username, user.role, bool(user.active), user.created_at)


@dataclass(frozen=True)
class SessionInfo:
    """A new session. ``token`` is shown only here; the database keeps its hash."""

    token: str
    user: UserInfo
    expires_at: datetime


def normalize_username(username: str) -> str:
    """Lower-case and strip ``username``; raise :class:`AccountError` unless it is valid.

    Valid names: 2-64 characters of ``a-z 0-9 . _ -``, starting with a letter or digit.
    """
    name = (username or "").strip().lower()
    if not _USERNAME_RE.match(name):
        raise AccountError(
            "user names are 2-64 characters: letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit)"
        )
    return name


def token_hash(token: str) -> str:
    """SHA-256 hex digest of a session token (what the database stores)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def require_role(actor: UserInfo | None, *roles: str) -> None:
    """Raise :class:`PermissionDeniedError` unless ``actor`` is active with one of ``roles``.

    ``actor=None`` stands for the local operator (the ``medtl`` command line on the server),
    who may do everything.
    """
    if actor is None:
        return
    if not actor.active or actor.role not in roles:
        raise PermissionDeniedError(
            f"a {actor.role} account cannot do this (needs: {', '.join(roles)})"
        )
