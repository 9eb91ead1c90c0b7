"""Fixtures of the app tests: an isolated MEDTL_HOME with a registered tiny model and
one user per role (cheap argon2 parameters)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from .helpers import PASSWORD, cheap_hasher, make_package


@pytest.fixture
def app_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """MEDTL_HOME in tmp with a registered package and users alice (clinician),
    bob (clinician), rita (researcher) and adam (admin)."""
    import streamlit as st
    import torch

    from medtl.review import ReviewStore

    torch.set_num_threads(1)
    home = tmp_path / "home"
    monkeypatch.setenv("MEDTL_HOME", str(home))
    monkeypatch.delenv("MEDTL_DATABASE_URL", raising=False)
    for var in (
        "MEDTL_APP_MAX_UPLOAD_MB",
        "MEDTL_APP_OIDC",
        "MEDTL_APP_DB_RETRIES",
        "MEDTL_APP_DB_BUSY_TIMEOUT_MS",
    ):
        monkeypatch.delenv(var, raising=False)
    make_package(tmp_path / "pkg")
    with ReviewStore.open(hasher=cheap_hasher()) as store:
        for name, role in (
            ("alice", "clinician"),
            ("bob", "clinician"),
            ("rita", "researcher"),
            ("adam", "admin"),
        ):
            store.accounts.add_user(name, PASSWORD, role)
    st.cache_resource.clear()  # a fresh "server process" per test
    yield home
    st.cache_resource.clear()


@pytest.fixture(autouse=True)
def _apptest_keeps_navigation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Work around an AppTest quirk (streamlit 1.67).

    ``AppTest`` resets ``PagesManager.uses_pages_directory`` to ``None`` before every run, so
    because ``app/pages/`` exists each rerun after the first is treated as a v1 multipage
    app and runs the page file without ``app/main.py`` (no session check, no router). A
    real server sets the flag once, when ``st.navigation`` is first called, and keeps it.
    Giving AppTest a subclass makes its reset land on the subclass, as on a real server.
    """
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.testing.v1 import app_test

    class _ServerLikePagesManager(PagesManager):
        pass

    monkeypatch.setattr(PagesManager, "uses_pages_directory", False)
    monkeypatch.setattr(app_test, "PagesManager", _ServerLikePagesManager)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def expect_internal_error() -> None:
    """Requested by a test that provokes an "internal error" on purpose."""


@pytest.fixture(autouse=True)
def _no_unexpected_internal_error(request: pytest.FixtureRequest):
    """Fail a test whose pages hit a bug: since pages show a bug as "internal error,
    reference ID" (not Streamlit's exception box), ``not at.exception`` alone would miss it."""
    handler = _Collect()
    logger = logging.getLogger("app.errors")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    if handler.records and "expect_internal_error" not in request.fixturenames:
        first = handler.records[0]
        pytest.fail(f"a page hit an internal error: {first.getMessage()}\n{first.exc_text or ''}")
