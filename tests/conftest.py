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
