"""Fixtures of the review-store tests: a real database, a fake clock, users.

Every test that takes ``db_url`` (or ``store``) runs twice: on a SQLite file in tmp_path
and on a fresh database of a real PostgreSQL server (:mod:`tests.review.postgres`).
Tests of SQLite-only behaviour carry ``@pytest.mark.sqlite_only``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from argon2 import PasswordHasher
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from medtl.io.scan import Scan
from medtl.io.testing import AXIAL, FAKE_PATIENT, image_dataset
from medtl.io.testing import to_bytes as to_bytes  # the tests import it from here
from medtl.review.auth import UserInfo
from medtl.review.db import RetryPolicy
from medtl.review.store import ReviewStore

from .postgres import PostgresServer, postgres_server_fixture

PASSWORD = "correct horse battery staple"
#: PHI-shaped strings the no-PHI tests look for.
PATIENT_NAME = "DOE^JANE"
PATIENT_ID = "MRN-4417-2093"
BIRTH_DATE = "19510704"


class FakeClock:
    """A settable UTC clock (the store asks it for ``now``)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> datetime:
        self.now = self.now + timedelta(**kwargs)
        return self.now


def fast_hasher() -> PasswordHasher:
    """argon2id with tiny cost parameters: same code path, milliseconds per hash."""
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "medtl_home"
    monkeypatch.setenv("MEDTL_HOME", str(home))
    monkeypatch.delenv("MEDTL_DATABASE_URL", raising=False)
    return home


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "db" / "review.sqlite"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sqlite_only: SQLite-specific behaviour (files, locks); not run on PostgreSQL"
    )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    yield from postgres_server_fixture()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql" and request.node.get_closest_marker("sqlite_only"):
        pytest.skip("SQLite-specific behaviour")
    return str(request.param)


@pytest.fixture
def new_db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[], str]:
    """A factory of URLs of new, empty databases on the test's backend."""
    names = itertools.count()

    def make() -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / 'db' / f'extra-{next(names)}.sqlite'}"
        server: PostgresServer = request.getfixturevalue("postgres_server")
        return server.new_database()

    return make


@pytest.fixture
def db_url(backend: str, db_path: Path, new_db_url: Callable[[], str]) -> str:
    return f"sqlite:///{db_path}" if backend == "sqlite" else new_db_url()


def open_store(url: str, clock: FakeClock | None = None, **kwargs: object) -> ReviewStore:
    """Open a store the way the app does, with test-friendly hashing and retries."""
    kwargs.setdefault("hasher", fast_hasher())
    kwargs.setdefault("retry", RetryPolicy(attempts=8, backoff_s=0.02, max_backoff_s=0.3))
    kwargs.setdefault("pseudonym_key", b"k" * 32)
    if clock is not None:
        kwargs["clock"] = clock
    return ReviewStore.open(url, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def store(db_url: str, clock: FakeClock) -> Iterator[ReviewStore]:
    s = open_store(db_url, clock)
    yield s
    s.close()


@pytest.fixture
def users(store: ReviewStore) -> dict[str, UserInfo]:
    """An admin, two clinicians and a researcher."""
    out = {}
    for name, role in (
        ("root", "admin"),
        ("alice", "clinician"),
        ("bob", "clinician"),
        ("rita", "researcher"),
    ):
        out[name] = store.accounts.add_user(name, PASSWORD, role)
    return out


def tiny_scan(modality: str = "DX", seed: int = 0) -> Scan:
    """A 6x5 de-identified image (what load_scan returns, with pseudonymous meta)."""
    rng = np.random.default_rng(seed)
    return Scan(
        array=rng.normal(size=(6, 5)).astype(np.float32),
        spacing=(0.5, 0.5),
        affine=np.eye(4),
        modality=modality,
        source_format="png",
        meta={"patient_pseudonym": "PSN-0A1B2C3D4E"},
    )


def dicom_dataset(patient_name: str = PATIENT_NAME, patient_id: str = PATIENT_ID) -> Dataset:
    """A small CT slice with PHI-shaped patient fields, written with pydicom."""
    return image_dataset(
        np.arange(64, dtype=np.int16).reshape(8, 8),
        modality="CT",
        rescale=(1, -1024),
        pixel_spacing=(0.7, 0.7),
        position=(0.0, 0.0, 0.0),
        orientation=AXIAL,
        slice_thickness=2.5,
        patient={
            **FAKE_PATIENT,
            "PatientName": patient_name,
            "PatientID": patient_id,
            "PatientBirthDate": BIRTH_DATE,
            "StudyDate": "20240115",
            "AccessionNumber": "ACC778899",
            "InstitutionName": "St Example Hospital",
            "ReferringPhysicianName": "House^Gregory",
        },
        FrameOfReferenceUID=generate_uid(),
        StudyID="S1",
        Manufacturer="ACME",
    )
