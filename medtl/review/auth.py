"""Local accounts: argon2 password hashes, roles, throttled sign-in, expiring sessions.

* Passwords are hashed with argon2id (``argon2-cffi``); hashes are upgraded on sign-in when
  the hasher's parameters change. New passwords need 12 characters and must pass the
  common-password list and strength estimate of :mod:`medtl.review.passwords`.
* Roles: ``clinician`` (uploads, reads and reviews cases), ``researcher`` (reads, exports),
  ``admin`` (everything, user management, reader agreement).
* Throttling (:mod:`medtl.review.throttle`): failed sign-ins make the *client* that made
  them back off on that account (the app passes a client key); many failures from many
  clients only slow the account down. Nobody can lock a user out from elsewhere, and
  admins clear the counters with ``medtl users unlock NAME`` (:meth:`Accounts.unlock`).
  Unknown user names are throttled the same way, and checked against a dummy hash so that
  response time does not reveal which names exist.
* Sessions: a random token (returned once, stored as SHA-256 only) with an absolute expiry
  and an idle timeout. Disabling a user or changing their password ends their sessions.

Example::

    accounts = Accounts(db)
    accounts.add_user("alice", "correct horse battery", "clinician")
    session = accounts.sign_in("alice", "correct horse battery", client=client_key)
    user = accounts.validate_session(session.token)
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from medtl.review import throttle
from medtl.review.accounts_base import (
    AccountError,
    AccountLockedError,
    AuthError,
    AuthPolicy,
    InvalidCredentialsError,
    PermissionDeniedError,
    SessionExpiredError,
    SessionInfo,
    UserInfo,
    normalize_username,
    require_role,
    token_hash,
)
from medtl.review.db import Database
from medtl.review.models import User, UserSession, add_audit
from medtl.review.sessions import open_session
from medtl.review.users import UserAdmin

logger = logging.getLogger(__name__)

__all__ = [
    "AccountError",
    "AccountLockedError",
    "Accounts",
    "AuthError",
    "AuthPolicy",
    "InvalidCredentialsError",
    "PermissionDeniedError",
    "SessionExpiredError",
    "SessionInfo",
    "UserInfo",
    "normalize_username",
    "require_role",
    "token_hash",
]


class Accounts(UserAdmin):
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
        #: how the account-wide slow-down waits (tests record instead of sleeping).
        self.sleep: Callable[[float], None] = time.sleep
        self._dummy_hash: str | None = None

    # --- sign-in ----------------------------------------------------------------------
    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = self.hasher.hash(secrets.token_hex(16))
        return self._dummy_hash

    def sign_in(self, username: str, password: str, *, client: str | None = None) -> SessionInfo:
        """Check a password and open a session.

        Args:
            username: the sign-in name (case-insensitive).
            password: the password.
            client: a stable key of where the attempt comes from (keyword-only), e.g. a
                digest of the browser session or remote address; failures make only this
                client back off. ``None`` puts the attempt in one shared bucket, so the
                app should always pass one.

        Returns:
            The new session (its ``token`` goes into the app's session state).

        Raises:
            AccountLockedError: this client failed too often on this name (nothing is
                checked); other clients may still sign in.
            InvalidCredentialsError: unknown or disabled user, or wrong password.
        """
        name = (username or "").strip().lower()
        name_hash, client_hash = throttle.name_hash(name), throttle.client_hash(client)

        def lookup(session: Session) -> tuple[throttle.ThrottleState, User | None]:
            state = throttle.check(session, self.policy, name_hash, client_hash, self.db.now())
            return state, session.scalar(select(User).where(User.username == name))

        state, user = self.db.read(lookup)
        user_id = user.id if user is not None else None
        if state.retry_after is not None:
            self._record(name_hash, client_hash, user_id, "sign_in_locked", failure=False)
            raise AccountLockedError(state.retry_after)
        if state.slow_down:
            logger.warning(
                "review store: sign-in slowed down (%d recent failures on one account)",
                state.account_failures,
            )
            self.sleep(self.policy.account_delay.total_seconds())

        stored_hash = user.password_hash if user is not None else None
        active = bool(user.active) if user is not None else False
        try:
            # Unknown users are checked against a dummy hash: same work, same timing.
            ok = self.hasher.verify(stored_hash or self._dummy(), password or "")
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        if not (ok and stored_hash is not None and active):
            reason = (
                "unknown user"
                if user_id is None
                else ("disabled" if not active else "wrong password")
            )
            self._record(
                name_hash, client_hash, user_id, "sign_in_failed", failure=True, reason=reason
            )
            raise InvalidCredentialsError("Wrong user name or password.")
        new_hash = (
            self.hasher.hash(password) if self.hasher.check_needs_rehash(stored_hash) else None
        )
        result = self.db.write(
            lambda s: self._open_session(s, user_id, name_hash, client_hash, new_hash),
            what="sign-in",
        )
        if isinstance(result, timedelta):
            raise AccountLockedError(result)
        logger.info("review store: sign-in (user id %s)", user_id)
        return result

    def _open_session(
        self,
        session: Session,
        user_id: int,
        name_hash: str,
        client_hash: str | None,
        new_hash: str | None,
    ) -> SessionInfo | timedelta:
        now = self.db.now()
        state = throttle.check(session, self.policy, name_hash, client_hash, now)
        if state.retry_after is not None:  # failures by a concurrent attempt since the check
            return state.retry_after
        user = session.get(User, user_id)
        if new_hash is not None:
            user.password_hash = new_hash
        throttle.clear_client(session, name_hash, client_hash)
        info = open_session(session, user, now, self.policy.session_ttl)
        add_audit(session, now, "sign_in", user=user)
        return info

    def _record(
        self,
        name_hash: str,
        client_hash: str | None,
        user_id: int | None,
        action: str,
        *,
        failure: bool,
        reason: str | None = None,
    ) -> None:
        def work(session: Session) -> None:
            now = self.db.now()
            if failure:
                throttle.record_failure(session, name_hash, client_hash, now)
            user = session.get(User, user_id) if user_id is not None else None
            details = {"reason": reason} if reason else None
            add_audit(session, now, action, user=user, details=details)

        self.db.write(work, what="sign-in record")

    def failures(self, username: str, *, client: str | None = None) -> int:
        """Failed sign-ins counted now for ``username`` (all clients, or only ``client``)."""
        name_hash = throttle.name_hash(username)
        client_hash = throttle.client_hash(client)
        since = self.db.now() - self.policy.failure_window
        return self.db.read(lambda s: throttle.count(s, name_hash, since, client_hash))

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
            self.db.write(
                lambda s: s.execute(
                    update(UserSession).where(UserSession.id == session_id).values(last_seen_at=now)
                ),
                what="session refresh",
            )
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
