"""Engine and session factory of the review store, with bounded retries on a locked database.

By default the store is a SQLite file, ``MEDTL_HOME/db/review.sqlite``, opened in WAL mode
(readers never block the writer) with ``busy_timeout`` and foreign keys on. The file and its
WAL/SHM files are mode 0600 wherever they are, whatever the umask. Any SQLAlchemy
URL (e.g. ``postgresql+psycopg://...``) can be given as an argument or through the
``MEDTL_DATABASE_URL`` environment variable.

SQLite write transactions start with ``BEGIN IMMEDIATE``: the write lock is taken up front,
so a transaction that reads then writes can never fail half-way with ``database is locked``
(SQLite cannot wait on a lock upgrade from a stale read snapshot). A write that still cannot
get the lock within ``busy_timeout`` is retried a bounded number of times with exponential
backoff; if it finally fails, :class:`StoreBusyError` says so plainly, so the app can show it
and keep the form content ("a review is never silently dropped").

Example::

    db = Database.open("sqlite:///tmp/review.sqlite")
    n = db.write(lambda s: s.add(obj))
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from medtl.paths import home_subdir
from medtl.review.files import create_private_file, private_dir, tighten
from medtl.review.models import utcnow

logger = logging.getLogger(__name__)

ENV_DATABASE_URL = "MEDTL_DATABASE_URL"
DB_FILENAME = "review.sqlite"

T = TypeVar("T")
#: A function returning the current time, timezone-aware UTC.
Clock = Callable[[], datetime]


class ReviewStoreError(Exception):
    """Base class of every error the review store raises on purpose."""


class StoreBusyError(ReviewStoreError):
    """The database stayed locked by another writer through every retry; nothing was saved."""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries of a write that found the database locked.

    Attributes:
        attempts: total tries (first one included).
        backoff_s: sleep before the second try; doubled each time, with +-25 % jitter.
        max_backoff_s: cap of one sleep.
    """

    attempts: int = 6
    backoff_s: float = 0.05
    max_backoff_s: float = 2.0

    def delay(self, retry_index: int) -> float:
        """Seconds to sleep before retry number ``retry_index`` (0-based)."""
        base = min(self.max_backoff_s, self.backoff_s * (2**retry_index))
        return base * random.uniform(0.75, 1.25)


def default_database_url() -> str:
    """``$MEDTL_DATABASE_URL``, else the SQLite file ``MEDTL_HOME/db/review.sqlite``."""
    env = os.environ.get(ENV_DATABASE_URL)
    if env:
        return env
    return f"sqlite:///{home_subdir('db') / DB_FILENAME}"


def is_locked_error(exc: BaseException) -> bool:
    """True for SQLite's ``database is locked`` / ``database is busy`` errors."""
    text = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in text or "database is busy" in text or "sqlite_busy" in text


def make_engine(
    url: str | None = None, *, busy_timeout_ms: int = 5000, echo: bool = False
) -> Engine:
    """Create an engine for ``url`` (default: :func:`default_database_url`).

    Args:
        url: any SQLAlchemy URL; ``None`` uses the environment or ``MEDTL_HOME``.
        busy_timeout_ms: how long SQLite waits for a lock before reporting it busy.
        echo: log every SQL statement (debugging).

    Returns:
        The engine. For SQLite files: WAL, ``synchronous=NORMAL``, foreign keys on, and
        ``BEGIN IMMEDIATE`` transactions.
    """
    url = url or default_database_url()
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, echo=echo, pool_pre_ping=True)
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        # Created 0600 before SQLite opens it: SQLite gives its -wal and -shm files the
        # database file's mode, so none of them is readable by other local users.
        path = Path(database).expanduser()
        private_dir(path.parent)
        create_private_file(path)
    engine = create_engine(
        url,
        echo=echo,
        # sqlite3's own timeout is the busy handler for the connect-time and BEGIN locks.
        connect_args={"timeout": busy_timeout_ms / 1000.0, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (see _on_begin); pysqlite's implicit BEGIN is
        # deferred and would defeat the up-front write lock.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if database and database != ":memory:":
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
                for suffix in ("-wal", "-shm"):  # left wider by an older medtl or a copy
                    tighten(Path(database + suffix).expanduser())
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


class Database:
    """An engine plus retrying write / read helpers and the clock the store uses.

    Args:
        engine: the SQLAlchemy engine (see :func:`make_engine`).
        retry: retry policy of writes on a locked database.
        clock: returns the current time (timezone-aware UTC); tests inject a fake one.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        retry: RetryPolicy | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.engine = engine
        self.retry = retry or RetryPolicy()
        self.clock = clock
        self._sessions = sessionmaker(bind=engine, expire_on_commit=False)
        self._read_engine = (
            engine.execution_options(sqlite_begin="DEFERRED")
            if engine.dialect.name == "sqlite"
            else engine
        )
        self._read_sessions = sessionmaker(bind=self._read_engine, expire_on_commit=False)

    @classmethod
    def open(
        cls,
        url: str | None = None,
        *,
        busy_timeout_ms: int = 5000,
        retry: RetryPolicy | None = None,
        clock: Clock = utcnow,
    ) -> Database:
        """Create the engine for ``url`` and wrap it (no schema work; see migrations)."""
        return cls(make_engine(url, busy_timeout_ms=busy_timeout_ms), retry=retry, clock=clock)

    @property
    def is_sqlite(self) -> bool:
        """True when the backend is SQLite."""
        return self.engine.dialect.name == "sqlite"

    def now(self) -> datetime:
        """The current time from the injected clock."""
        return self.clock()

    def write(self, fn: Callable[[Session], T], *, what: str = "write") -> T:
        """Run ``fn(session)`` in one write transaction, retrying while the database is locked.

        ``fn`` is called again from scratch on each retry (in a fresh session), so it must
        not have side effects outside the session, or must make them idempotent.

        Args:
            fn: the work; its return value is returned after a successful commit.
            what: a short description used in log and error messages (never PHI).

        Returns:
            What ``fn`` returned.

        Raises:
            StoreBusyError: still locked after :attr:`RetryPolicy.attempts` tries.
        """
        attempts = max(1, self.retry.attempts)
        for attempt in range(attempts):
            try:
                with self._sessions() as session, session.begin():
                    result = fn(session)
                return result
            except OperationalError as exc:
                if not is_locked_error(exc):
                    raise
                if attempt + 1 >= attempts:
                    logger.error(
                        "review store: %s failed, database locked (%d tries)", what, attempts
                    )
                    raise StoreBusyError(
                        f"The review database is busy (locked by another user or process); "
                        f"the {what} was NOT saved after {attempts} tries. Please try again: "
                        f"your entries are kept."
                    ) from exc
                delay = self.retry.delay(attempt)
                logger.warning(
                    "review store: database locked during %s; retry %d/%d in %.2f s",
                    what,
                    attempt + 1,
                    attempts - 1,
                    delay,
                )
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def read(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` in a read transaction (``BEGIN DEFERRED`` on SQLite).

        Reads do not wait for writers in WAL mode; a locked error here is retried like a write.
        """
        attempts = max(1, self.retry.attempts)
        for attempt in range(attempts):
            try:
                with self._read_sessions() as session, session.begin():
                    return fn(session)
            except OperationalError as exc:
                if not is_locked_error(exc):
                    raise
                if attempt + 1 >= attempts:
                    raise StoreBusyError(
                        "The review database is busy (locked by another process); try again."
                    ) from exc
                time.sleep(self.retry.delay(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
