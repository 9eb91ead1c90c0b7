"""File modes: database, WAL/SHM, case files and exports are 0600 in 0700 folders (finding 8).

Each test runs under umask 022 (the usual default, under which plain ``open`` gives 0644),
set with ``os.umask`` and restored afterwards.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from medtl.io.deid import deidentify
from medtl.review.files import open_private
from medtl.review.store import ReviewStore

from .conftest import PASSWORD, dicom_dataset, open_store, tiny_scan, to_bytes


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _use(store: ReviewStore) -> tuple[str, str]:
    """Create users, a case from a Scan and one from DICOM bytes, results and reviews."""
    alice = store.accounts.add_user("alice", PASSWORD, "clinician")
    scan_case = store.create_case(alice, tiny_scan()).case_id
    dicom = to_bytes(deidentify(dicom_dataset(), key=b"k" * 32))
    dicom_case = store.create_case(alice, dicom).case_id
    for case in (scan_case, dicom_case):
        store.record_prediction(
            alice, case, model_name="m", model_version="1", label="nodule", probability=0.7
        )
        store.submit_review(alice, case, "agree")
    return scan_case, dicom_case


def test_everything_private_under_umask_022(umask_022: None, _home: Path, tmp_path: Path) -> None:
    store = open_store(None)  # type: ignore[arg-type]  # MEDTL_HOME/db/review.sqlite
    try:
        _, dicom_case = _use(store)
        db = _home / "db" / "review.sqlite"
        sidecars = [Path(f"{db}-wal"), Path(f"{db}-shm")]
        assert all(p.exists() for p in sidecars)  # WAL mode, connection open
        for path in [db, *sidecars]:
            assert _mode(path) == 0o600, path.name
        assert _mode(db.parent) == 0o700
        images = [p for p in store.cases_dir.rglob("*") if p.is_file()]
        assert len(images) == 2 and {p.suffix for p in images} == {".npz", ".dcm"}
        for path in images:
            assert _mode(path) == 0o600, path.name
        for folder in [store.cases_dir, *(p.parent for p in images)]:
            assert _mode(folder) == 0o700, folder.name
        exports = tmp_path / "exports"
        exports.mkdir()
        csv_path = exports / "reviews.csv"
        store.export_reviews_csv(None, csv_path)
        assert _mode(csv_path) == 0o600
        pytest.importorskip("highdicom")
        sr_path = store.export_sr(None, dicom_case, exports)
        assert _mode(sr_path) == 0o600
        assert sorted(p.name for p in exports.iterdir()) == sorted([csv_path.name, sr_path.name])
    finally:
        store.close()


def test_database_url_into_a_world_readable_folder(
    umask_022: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "srv"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    monkeypatch.setenv("MEDTL_DATABASE_URL", f"sqlite:///{shared / 'review.sqlite'}")
    store = open_store(None)  # type: ignore[arg-type]
    try:
        _use(store)
        names = sorted(p.name for p in shared.iterdir())
        assert names == ["review.sqlite", "review.sqlite-shm", "review.sqlite-wal"]
        for name in names:
            assert _mode(shared / name) == 0o600, name
        assert _mode(shared) == 0o755  # the user's own folder is left as it was
    finally:
        store.close()


def test_new_folders_for_the_database_are_0700(umask_022: None, tmp_path: Path) -> None:
    db = tmp_path / "a" / "b" / "review.sqlite"
    open_store(f"sqlite:///{db}").close()
    assert _mode(db) == 0o600
    assert _mode(db.parent) == _mode(db.parent.parent) == 0o700


def test_existing_wide_database_is_tightened(umask_022: None, tmp_path: Path) -> None:
    db = tmp_path / "review.sqlite"
    open_store(f"sqlite:///{db}").close()
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        if path.exists():
            os.chmod(path, 0o644)
    store = open_store(f"sqlite:///{db}")
    try:
        store.accounts.add_user("bob", PASSWORD, "clinician")
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            assert _mode(path) == 0o600, path.name
    finally:
        store.close()


def test_open_private_is_atomic(umask_022: None, tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), open_private(target) as fh:
        fh.write(b"half")
        raise RuntimeError("crash while writing")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]  # no temporary left
    with open_private(target) as fh:
        fh.write(b"new")
    assert target.read_bytes() == b"new" and _mode(target) == 0o600
