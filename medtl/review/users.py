"""Account management: add, list, change role, disable, set password, unlock.

:class:`UserAdmin` is the user-management half of :class:`medtl.review.auth.Accounts`
(which adds sign-in and sessions); every change is audited in its own transaction. Only
admins, or the local operator (``actor=None``, the ``medtl users`` commands), manage users.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from medtl.review import throttle
from medtl.review.accounts_base import (
    AccountError,
    AuthPolicy,
    UserInfo,
    normalize_username,
    require_role,
)
from medtl.review.db import Database
from medtl.review.models import ROLES, User, UserSession, add_audit
from medtl.review.passwords import WeakPasswordError, check_password


class UserAdmin:
    """User management on ``self.db`` with ``self.policy`` and ``self.hasher``."""

    db: Database
    policy: AuthPolicy
    hasher: PasswordHasher

    # --- user management ------------------------------------------------------------
    def _check_password(self, password: str, username: str) -> None:
        try:
            check_password(
                password,
                username=username,
                min_length=self.policy.min_password_length,
                min_score=self.policy.min_password_score,
            )
        except WeakPasswordError as exc:
            raise AccountError(str(exc)) from None

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
        self._check_password(password, name)
        password_hash = self.hasher.hash(password)

        def work(session: Session) -> UserInfo:
            now = self.db.now()
            if session.scalar(select(User.id).where(User.username == name)) is not None:
                raise AccountError(f"a user named {name!r} already exists")
            user = User(
                username=name,
                password_hash=password_hash,
                role=role,
                active=True,
                created_at=now,
                updated_at=now,
            )
            session.add(user)
            session.flush()
            add_audit(
                session,
                now,
                "user_add",
                user=actor,
                details=_cli(actor, {"target": name, "role": role}),
            )
            return UserInfo.from_row(user)

        try:
            return self.db.write(work, what="user creation")
        except IntegrityError as exc:  # a concurrent add of the same name
            raise AccountError(f"a user named {name!r} already exists") from exc

    def list_users(self) -> list[UserInfo]:
        """Every account, by user name."""
        return self.db.read(
            lambda s: [
                UserInfo.from_row(u) for u in s.scalars(select(User).order_by(User.username))
            ]
        )

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
            add_audit(
                session,
                now,
                "user_role",
                user=actor,
                details=_cli(actor, {"target": name, "from": old, "to": role}),
            )
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
            add_audit(
                session,
                now,
                "user_enable" if active else "user_disable",
                user=actor,
                details=_cli(actor, {"target": name}),
            )
            return UserInfo.from_row(user)

        return self.db.write(work, what="account change")

    def set_password(self, username: str, password: str, *, actor: UserInfo | None = None) -> None:
        """Set a new password (the user themself, an admin or the local operator)."""
        name = normalize_username(username)
        if actor is not None and actor.username != name:
            require_role(actor, "admin")
        self._check_password(password, name)
        password_hash = self.hasher.hash(password)

        def work(session: Session) -> None:
            now = self.db.now()
            user = self._get(session, name)
            user.password_hash = password_hash
            user.updated_at = now
            _revoke_all(session, user.id, now)
            add_audit(
                session, now, "user_password", user=actor, details=_cli(actor, {"target": name})
            )

        self.db.write(work, what="password change")

    def unlock(self, username: str, *, actor: UserInfo | None = None) -> int:
        """Clear every failed sign-in of an account, from every client (admins only).

        Args:
            username: the account.
            actor: the admin doing it, or ``None`` for the local operator
                (``medtl users unlock NAME``).

        Returns:
            How many recorded failures were cleared.
        """
        require_role(actor, "admin")
        name = normalize_username(username)

        def work(session: Session) -> int:
            self._get(session, name)  # AccountError for unknown names
            cleared = throttle.clear_account(session, throttle.name_hash(name))
            add_audit(
                session,
                self.db.now(),
                "user_unlock",
                user=actor,
                details=_cli(actor, {"target": name, "cleared": cleared}),
            )
            return cleared

        return self.db.write(work, what="unlock")


def _revoke_all(session: Session, user_id: int, now: datetime) -> None:
    session.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def _cli(actor: Any, details: dict[str, Any]) -> dict[str, Any]:
    if actor is None:
        details = {**details, "via": "local operator"}
    return details
