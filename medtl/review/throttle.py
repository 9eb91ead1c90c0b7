"""Sign-in throttling that an outsider cannot turn into a denial of service.

Two limits, both counted over :attr:`AuthPolicy.failure_window` in the ``login_failures``
table (so they hold across processes and restarts):

* **per client and account**: after :attr:`AuthPolicy.max_failures` failures of one client
  (a key the app derives from the browser session or remote address) on one account, that
  client backs off: :attr:`AuthPolicy.backoff` after the last failure, doubling with each
  further failure, up to :attr:`AuthPolicy.lockout`. Other clients are not affected, so
  guessing from one place cannot lock the real user out at theirs.
* **per account, all clients together**: above :attr:`AuthPolicy.account_max_failures`
  (much higher), every sign-in to the account is slowed by
  :attr:`AuthPolicy.account_delay` (a short wait, never a refusal), which slows a
  distributed guesser while the real user still gets in.

Admins clear both with ``medtl users unlock NAME``. Only SHA-256 digests of the user name
and of the client key are stored: no typed name (which may be a mistyped password) and no
address.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from medtl.review.models import LoginFailure

if TYPE_CHECKING:  # pragma: no cover
    from medtl.review.accounts_base import AuthPolicy


def name_hash(username: str) -> str:
    """SHA-256 of the normalised (stripped, lower-case) user name."""
    return hashlib.sha256((username or "").strip().lower().encode("utf-8")).hexdigest()


def client_hash(client: str | None) -> str | None:
    """SHA-256 of the app's client key (``None``: the shared bucket of unknown clients)."""
    if client is None:
        return None
    return hashlib.sha256(b"medtl-client\0" + client.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ThrottleState:
    """What the limits say about one sign-in attempt."""

    #: how long this client must still wait on this account (``None``: it may try now).
    retry_after: timedelta | None
    #: failures on the account from every client within the window.
    account_failures: int
    #: whether the account-wide slow-down applies.
    slow_down: bool


def _pair(name: str, client: str | None) -> list[ColumnElement[bool]]:
    same_client = (
        LoginFailure.client_hash.is_(None) if client is None else LoginFailure.client_hash == client
    )
    return [LoginFailure.username_hash == name, same_client]


def backoff_for(policy: AuthPolicy, failures: int) -> timedelta:
    """The wait after the last of ``failures`` failures of one client on one account."""
    if failures < policy.max_failures:
        return timedelta(0)
    doublings = min(failures - policy.max_failures, 30)
    return min(policy.lockout, policy.backoff * (2**doublings))


def check(
    session: Session, policy: AuthPolicy, name: str, client: str | None, now: datetime
) -> ThrottleState:
    """Evaluate both limits for account digest ``name`` and client digest ``client``."""
    since = now - policy.failure_window
    recent = LoginFailure.at > since
    count, newest = session.execute(
        select(func.count(LoginFailure.id), func.max(LoginFailure.at)).where(
            *_pair(name, client), recent
        )
    ).one()
    retry_after = None
    if newest is not None:
        remaining = newest + backoff_for(policy, int(count)) - now
        retry_after = remaining if remaining > timedelta(0) else None
    total = session.scalar(
        select(func.count(LoginFailure.id)).where(LoginFailure.username_hash == name, recent)
    )
    total = int(total or 0)
    return ThrottleState(retry_after, total, total >= policy.account_max_failures)


def record_failure(session: Session, name: str, client: str | None, now: datetime) -> None:
    """Count one failed sign-in of ``client`` on ``name``."""
    session.add(LoginFailure(username_hash=name, client_hash=client, at=now))


def clear_client(session: Session, name: str, client: str | None) -> None:
    """Forget one client's failures on an account (after its successful sign-in)."""
    session.execute(delete(LoginFailure).where(*_pair(name, client)))


def clear_account(session: Session, name: str) -> int:
    """Forget every failure on an account (an admin's unlock); return how many."""
    result = session.execute(delete(LoginFailure).where(LoginFailure.username_hash == name))
    return int(result.rowcount or 0)


def count(session: Session, name: str, since: datetime, client: str | None = None) -> int:
    """Failures on ``name`` since ``since``; with ``client``, only that client's."""
    where = _pair(name, client) if client is not None else [LoginFailure.username_hash == name]
    return int(
        session.scalar(select(func.count(LoginFailure.id)).where(*where, LoginFailure.at > since))
        or 0
    )
