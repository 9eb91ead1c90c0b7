"""Local accounts: argon2 password hashes, roles, rate-limited sign-in, expiring sessions.

* Passwords are hashed with argon2id (``argon2-cffi``); hashes are upgraded on sign-in when
  the hasher's parameters change.
* Roles: ``clinician`` (uploads, reads and reviews cases), ``researcher`` (reads, exports),
  ``admin`` (everything, user management, reader agreement).
* Rate limit: :attr:`AuthPolicy.max_failures` failed sign-ins for one user name within
  :attr:`AuthPolicy.failure_window` lock that name for :attr:`AuthPolicy.lockout`. Failures
  live in the database (keyed by a SHA-256 of the user name, so a password typed into the
  name field is never stored), so the limit holds across processes and restarts. Unknown user
  names are locked the same way, and checked against a dummy hash so that response time does
  not reveal which names exist.
* Sessions: a random token (returned once, stored as SHA-256 only) with an absolute expiry
  and an idle timeout. Disabling a user or changing their password ends their sessions.

Example::

    accounts = Accounts(db)
    accounts.add_user("alice", "correct horse battery", "clinician")
    session = accounts.sign_in("alice", "correct horse battery")
    user = accounts.validate_session(session.token)
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from medtl.review.db import Database, ReviewStoreError
from medtl.review.models import ROLES, LoginFailure, User, UserSession, add_audit

logger = logging.getLogger(__name__)

_USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")


class AuthError(ReviewStoreError):
    """Sign-in or session problems."""


class InvalidCredentialsError(AuthError):
    """Wrong user name or password (deliberately does not say which)."""


class AccountLockedError(AuthError):
    """Too many failed sign-ins; ``retry_after`` says how long to wait."""

    def __init__(self, retry_after: timedelta) -> None:
        minutes = max(1, int(retry_after.total_seconds() // 60) + 1)
        super().__init__(
            f"Too many failed sign-ins: this account is locked; try again in about {minutes} min."
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
    """Rate-limit, session and password rules.

    Attributes:
        max_failures: failed sign-ins per user name within ``failure_window`` that lock it.
        failure_window: window in which failures are counted.
        lockout: how long the name stays locked after the last counted failure.
        session_ttl: absolute lifetime of a session.
        idle_timeout: a session unused this long expires.
        touch_interval: how often a used session's ``last_seen_at`` is written.
        min_password_length: shortest accepted password.
    """

    max_failures: int = 5
    failure_window: timedelta = timedelta(minutes=15)
    lockout: timedelta = timedelta(minutes=15)
    session_ttl: timedelta = timedelta(hours=8)
    idle_timeout: timedelta = timedelta(minutes=30)
    touch_interval: timedelta = timedelta(seconds=60)
    min_password_length: int = 10


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


def _name_hash(username: str) -> str:
    return hashlib.sha256((username or "").strip().lower().encode("utf-8")).hexdigest()


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


class Accounts:
    """User accounts, sign-in and sessions on a :class:`~medtl.review.db.Database`.

    Args:
        db: the database (schema already upgraded).
        policy: rate-limit, session and password rules.
        hasher: an argon2 ``PasswordHasher`` (tests pass cheap parameters).
    """

    def __init__(
        self,
        db: Database,
        *,
        policy: AuthPolicy | None = None,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.db = db
        self.policy = policy or AuthPolicy()
        self.hasher = hasher or PasswordHasher()
        self._dummy_hash: str | None = None

    # --- user management ------------------------------------------------------------
    def _check_password(self, password: str) -> None:
        if not isinstance(password, str) or len(password) < self.policy.min_password_length:
            raise AccountError(
                f"passwords need at least {self.policy.min_password_length} characters"
            )

    @staticmethod
    def _check_role(role: str) -> str:
        if role not in ROLES:
            raise AccountError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
        return role

    @staticmethod
    def _get(session: Session, username: str) -> User:
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            raise AccountError(f"no user named {username!r}")
        return user

    def add_user(
        self, username: str, password: str, role: str, *, actor: UserInfo | None = None
    ) -> UserInfo:
        """Create an active account.

        Args:
            username: the sign-in name (normalised to lower case).
            password: at least :attr:`AuthPolicy.min_password_length` characters.
            role: ``clinician``, ``researcher`` or ``admin``.
            actor: the admin doing it, or ``None`` for the local operator (CLI).

        Returns:
            The new user.
        """
        require_role(actor, "admin")
        name = normalize_username(username)
        self._check_role(role)
        self._check_password(password)
        password_hash = self.hasher.hash(password)

        def work(session: Session) -> UserInfo:
            now = self.db.now()
            if session.scalar(select(User.id).where(User.username == name)) is not None:
                raise AccountError(f"a user named {name!r} already exists")
            user = User(username=name, password_hash=password_hash, role=role, active=True,
                        created_at=now, updated_at=now)
            session.add(user)
            session.flush()
            add_audit(session, now, "user_add", user=actor, details=_cli(actor, {
                "target": name, "role": role}))
            return UserInfo.from_row(user)

        try:
            return self.db.write(work, what="user creation")
        except IntegrityError as exc:  # a concurrent add of the same name
            raise AccountError(f"a user named {name!r} already exists") from exc

    def list_users(self) -> list[UserInfo]:
        """Every account, by user name."""
        return self.db.read(lambda s: [UserInfo.from_row(u) for u in s.scalars(
            select(User).order_by(User.username))])

    def get_user(self, username: str) -> UserInfo:
        """One account by name (raises :class:`AccountError` if unknown)."""
        name = normalize_username(username)
        return self.db.read(lambda s: UserInfo.from_row(self._get(s, name)))

    def set_role(self, username: str, role: str, *, actor: UserInfo | None = None) -> UserInfo:
        """Change a user's role (admins or the local operator only)."""
        require_role(actor, "admin")
        name = normalize_username(username)
        self._check_role(role)

        def work(session: Session) -> UserInfo:
            now = self.db.now()
            user = self._get(session, name)
            old = user.role
            user.role = role
            user.updated_at = now
            add_audit(session, now, "user_role", user=actor, details=_cli(actor, {
                "target": name, "from": old, "to": role}))
            return UserInfo.from_row(user)

        return self.db.write(work, what="role change")

    def set_active(self, username: str, active: bool, *, actor: UserInfo | None = None) -> UserInfo:
        """Disable (ending every session) or re-enable an account."""
        require_role(actor, "admin")
        name = normalize_username(username)

        def work(session: Session) -> UserInfo:
            now = self.db.now()
            user = self._get(session, name)
            user.active = active
            user.updated_at = now
            if not active:
                _revoke_all(session, user.id, now)
            add_audit(session, now, "user_enable" if active else "user_disable", user=actor,
                      details=_cli(actor, {"target": name}))
            return UserInfo.from_row(user)

        return self.db.write(work, what="account change")

    def set_password(self, username: str, password: str, *, actor: UserInfo | None = None) -> None:
        """Set a new password (the user themself, an admin or the local operator)."""
        name = normalize_username(username)
        if actor is not None and actor.username != name:
            require_role(actor, "admin")
        self._check_password(password)
        password_hash = self.hasher.hash(password)

        def work(session: Session) -> None:
            now = self.db.now()
            user = self._get(session, name)
            user.password_hash = password_hash
            user.updated_at = now
            _revoke_all(session, user.id, now)
            add_audit(session, now, "user_password", user=actor,
                      details=_cli(actor, {"target": name}))

        self.db.write(work, what="password change")

    # --- sign-in ----------------------------------------------------------------------
    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = self.hasher.hash(secrets.token_hex(16))
        return self._dummy_hash

    def _lock_remaining(self, session: Session, name_hash: str, now: datetime) -> timedelta | None:
        since = now - self.policy.failure_window
        count, newest = session.execute(
            select(func.count(LoginFailure.id), func.max(LoginFailure.at)).where(
                LoginFailure.username_hash == name_hash, LoginFailure.at > since)
        ).one()
        if count < self.policy.max_failures or newest is None:
            return None
        remaining = newest + self.policy.lockout - now
        return remaining if remaining > timedelta(0) else None

    def sign_in(self, username: str, password: str) -> SessionInfo:
        """Check a password and open a session.

        Args:
            username: the sign-in name (case-insensitive).
            password: the password.

        Returns:
            The new session (its ``token`` goes into the app's session state).

        Raises:
            AccountLockedError: too many recent failures for this name (nothing is checked).
            InvalidCredentialsError: unknown or disabled user, or wrong password.
        """
        name = (username or "").strip().lower()
        name_hash = _name_hash(name)

        def lookup(session: Session) -> tuple[timedelta | None, int | None, str | None, bool]:
            locked = self._lock_remaining(session, name_hash, self.db.now())
            user = session.scalar(select(User).where(User.username == name))
            if user is None:
                return locked, None, None, False
            return locked, user.id, user.password_hash, bool(user.active)

        locked, user_id, stored_hash, active = self.db.read(lookup)
        if locked is not None:
            self._record(name_hash, user_id, name, "sign_in_locked", failure=False)
            raise AccountLockedError(locked)

        ok = False
        try:
            # Unknown users are checked against a dummy hash: same work, same timing.
            ok = self.hasher.verify(stored_hash or self._dummy(), password or "")
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        ok = ok and stored_hash is not None and active
        if not ok:
            reason = "unknown user" if user_id is None else (
                "disabled" if not active else "wrong password")
            self._record(name_hash, user_id, name, "sign_in_failed", failure=True, reason=reason)
            raise InvalidCredentialsError("Wrong user name or password.")

        new_hash = None
        if self.hasher.check_needs_rehash(stored_hash):
            new_hash = self.hasher.hash(password)
        token = secrets.token_urlsafe(32)

        def work(session: Session) -> SessionInfo | timedelta:
            now = self.db.now()
            locked_now = self._lock_remaining(session, name_hash, now)
            if locked_now is not None:  # failures by a concurrent attacker since the check
                return locked_now
            user = session.get(User, user_id)
            if new_hash is not None:
                user.password_hash = new_hash
            session.execute(delete(LoginFailure).where(LoginFailure.username_hash == name_hash))
            expires = now + self.policy.session_ttl
            session.add(UserSession(token_hash=token_hash(token), user_id=user.id,
                                    created_at=now, last_seen_at=now, expires_at=expires))
            add_audit(session, now, "sign_in", user=user)
            return SessionInfo(token=token, user=UserInfo.from_row(user), expires_at=expires)

        result = self.db.write(work, what="sign-in")
        if isinstance(result, timedelta):
            raise AccountLockedError(result)
        logger.info("review store: sign-in (user id %s)", user_id)
        return result

    def _record(self, name_hash: str, user_id: int | None, name: str, action: str, *,
                failure: bool, reason: str | None = None) -> None:
        def work(session: Session) -> None:
            now = self.db.now()
            if failure:
                session.add(LoginFailure(username_hash=name_hash, at=now))
            user = session.get(User, user_id) if user_id is not None else None
            details = {"reason": reason} if reason else None
            add_audit(session, now, action, user=user, details=details)

        self.db.write(work, what="sign-in record")

    def failures(self, username: str) -> int:
        """Failed sign-ins counted now for ``username`` (for admin screens and tests)."""
        name_hash = _name_hash(username)
        since = self.db.now() - self.policy.failure_window
        return int(self.db.read(lambda s: s.scalar(select(func.count(LoginFailure.id)).where(
            LoginFailure.username_hash == name_hash, LoginFailure.at > since))))

    # --- sessions ---------------------------------------------------------------------
    def validate_session(self, token: str) -> UserInfo:
        """Return the signed-in user of ``token``, refreshing its idle timer.

        Raises:
            SessionExpiredError: unknown, revoked, expired (absolute or idle) token, or the
                user has been disabled.
        """
        if not token:
            raise SessionExpiredError("Please sign in.")
        digest = token_hash(token)

        def lookup(session: Session) -> tuple[int, datetime, UserInfo] | None:
            row = session.scalar(select(UserSession).where(UserSession.token_hash == digest))
            if row is None or row.revoked_at is not None:
                return None
            now = self.db.now()
            if now >= row.expires_at or now >= row.last_seen_at + self.policy.idle_timeout:
                return None
            if not row.user.active:
                return None
            return row.id, row.last_seen_at, UserInfo.from_row(row.user)

        found = self.db.read(lookup)
        if found is None:
            raise SessionExpiredError("Your session has expired; please sign in again.")
        session_id, last_seen, user = found
        now = self.db.now()
        if now - last_seen >= self.policy.touch_interval:
            self.db.write(lambda s: s.execute(update(UserSession).where(
                UserSession.id == session_id).values(last_seen_at=now)), what="session refresh")
        return user

    def sign_out(self, token: str) -> None:
        """Revoke the session of ``token`` (no error if it is already gone)."""
        digest = token_hash(token or "")

        def work(session: Session) -> None:
            row = session.scalar(select(UserSession).where(UserSession.token_hash == digest))
            if row is None or row.revoked_at is not None:
                return
            now = self.db.now()
            row.revoked_at = now
            add_audit(session, now, "sign_out", user=row.user)

        self.db.write(work, what="sign-out")


def _revoke_all(session: Session, user_id: int, now: datetime) -> None:
    session.execute(update(UserSession).where(
        UserSession.user_id == user_id, UserSession.revoked_at.is_(None)).values(revoked_at=now))


def _cli(actor: Any, details: dict[str, Any]) -> dict[str, Any]:
    if actor is None:
        details = {**details, "via": "local operator"}
    return details
