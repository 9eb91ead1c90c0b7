"""``medtl.review`` re-exports its public names lazily."""

from __future__ import annotations

import subprocess
import sys

import medtl.review as review


def test_every_public_name_resolves() -> None:
    assert set(review.__all__) == set(review._LAZY)
    for name in review.__all__:
        assert getattr(review, name) is not None
    assert review.ReviewStore.__module__ == "medtl.review.store"


def test_import_does_no_database_work() -> None:
    code = (
        "import sys, medtl.review; "
        "assert 'sqlalchemy' not in sys.modules and 'argon2' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
