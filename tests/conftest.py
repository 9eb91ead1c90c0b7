"""Project-wide test settings.

Every test session gets its own ``MEDTL_HOME`` in a temporary folder, so no test writes
into the real home (site secrets, registry, review database). Tests that need a fresh home
set ``MEDTL_HOME`` again with ``monkeypatch``.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_medtl_home(tmp_path_factory: pytest.TempPathFactory):
    previous = os.environ.get("MEDTL_HOME")
    os.environ["MEDTL_HOME"] = str(tmp_path_factory.mktemp("medtl_home"))
    yield
    if previous is None:
        os.environ.pop("MEDTL_HOME", None)
    else:
        os.environ["MEDTL_HOME"] = previous


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """CLI tests run ``configure_logging`` in-process; its root handler must not leak into
    later tests (it would print their INFO lines on stderr and break output assertions)."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture(autouse=True)
def _restore_main_module():
    """Streamlit's script runner (AppTest) replaces ``sys.modules['__main__']`` with the page
    it ran and leaves it there; a later spawned process (decoder pool, learning-curve
    workers) would then re-run that page as its main module and die."""
    import sys

    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main
