"""A real PostgreSQL server for the review-store tests, started from Debian's binaries.

The server runs from a temporary folder on a free local port, with trust authentication
for the ``postgres`` role on 127.0.0.1 only and durability off (``fsync``), since the data
are thrown away. PostgreSQL refuses to run as root, so under root (CI) ``initdb`` and
``pg_ctl`` run as the ``postgres`` user through ``runuser``. Each test gets a new, empty
database (:meth:`PostgresServer.new_database`).

When the binaries or the ``psycopg`` driver are missing, the fixture fails under CI (the
``CI`` environment variable) and skips with that reason elsewhere: never silently.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from medtl._net import free_port

MISSING = (
    "the PostgreSQL half of the review-store tests needs the server binaries (Debian package "
    "'postgresql': initdb, pg_ctl) and the 'psycopg' driver (pip install 'psycopg[binary]')"
)


def pg_bindir() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``, or ``None``."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return versions[-1].parent if versions else None


class PostgresServer:
    """A throw-away PostgreSQL cluster; :meth:`start` it, then :meth:`stop` it."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="medtl-pg-"))
        self.port = free_port()
        self._names = itertools.count()
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root
            shutil.chown(self.root, "postgres", "postgres")
            self._as_postgres = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        cmd = [*self._as_postgres, *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed:\n{done.stderr}\n{tail}")

    def start(self) -> PostgresServer:
        data = str(self.root / "data")
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            data,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            data,
            "-o",
            options,
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    def stop(self) -> None:
        try:
            self._run(
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.root / "data"),
                "-m",
                "immediate",
                "-w",
                "stop",
            )
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        """SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Create an empty database; return its URL."""
        import psycopg

        name = f"medtl_test_{next(self._names)}"
        dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def postgres_server_fixture() -> Iterator[PostgresServer]:
    """Body of the session fixture: start once, stop at the end; fail in CI if missing."""
    bindir = pg_bindir()
    if bindir is None or importlib.util.find_spec("psycopg") is None:
        if os.environ.get("CI"):
            pytest.fail(MISSING)
        pytest.skip(MISSING + "; not found here, so these are skipped (CI fails instead)")
    server = PostgresServer(bindir).start()
    try:
        yield server
    finally:
        server.stop()
