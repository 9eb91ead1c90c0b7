"""No PHI: cases built from de-identified input never store the original patient identity.

A CT slice with PatientName ``DOE^JANE`` (and an ID, birth date, accession number, hospital
and referring physician) is de-identified with :func:`medtl.io.deid.deidentify` (stored as
DICOM bytes) and, separately, loaded with :func:`medtl.io.load_scan` (stored as a Scan).
After upload, AI result, reviews, views, CSV and SR exports, none of those strings appears
in the database files (main file, WAL and shared memory), the stored files, their names,
the exports or the logs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from medtl.io import load_scan
from medtl.io.deid import deidentify
from medtl.review.store import ReviewStore

from .conftest import BIRTH_DATE, PATIENT_ID, PATIENT_NAME, dicom_dataset, to_bytes

PHI = [PATIENT_NAME, PATIENT_ID, BIRTH_DATE, "ACC778899", "St Example Hospital", "House^Gregory"]


def _assert_clean(blob: bytes, where: str) -> None:
    for value in PHI:
        for encoded in {value.encode("utf-8"), value.encode("utf-16-le")}:
            assert encoded not in blob, f"{value!r} found in {where}"


@pytest.mark.sqlite_only  # reads the database files; PostgreSQL keeps them elsewhere
def test_no_phi_anywhere(
    store: ReviewStore,
    users: dict,
    db_path: Path,
    tmp_path: Path,
    _home: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    original = dicom_dataset()
    assert str(original.PatientName) == "DOE^JANE"
    raw = to_bytes(original)
    assert PATIENT_NAME.encode() in raw  # the test input really carries PHI

    clean = deidentify(original, key=b"s" * 32)
    a, b = users["alice"], users["bob"]
    caplog.set_level(logging.DEBUG)
    case1 = store.create_case(a, to_bytes(clean), source_key=str(clean.StudyInstanceUID))
    case2 = store.create_case(a, load_scan(raw))
    for case in (case1.case_id, case2.case_id):
        store.record_prediction(
            a, case, model_name="ct-nodule", model_version="1", label="nodule", probability=0.7
        )
        store.open_case(a, case)
        store.submit_review(a, case, "agree", x=3, y=4, comment="small solid nodule")
        store.submit_review(b, case, "uncertain")
    exports = tmp_path / "exports"
    exports.mkdir()
    store.export_reviews_csv(users["root"], exports / "reviews.csv")
    pytest.importorskip("highdicom")
    store.export_sr(a, case1.case_id, exports)
    store.close()  # checkpoints the WAL into the main file

    # The database: every file SQLite may have written (main, -wal, -shm, journals).
    db_files = list(db_path.parent.iterdir())
    assert db_path in db_files
    for f in db_files:
        _assert_clean(f.read_bytes(), f.name)
    # Stored case files and every other file under MEDTL_HOME, and their names.
    stored = [p for p in _home.rglob("*") if p.is_file()]
    assert len([p for p in stored if p.name.startswith("img-")]) == 2
    for f in stored:
        _assert_clean(f.read_bytes(), str(f))
        _assert_clean(str(f.relative_to(tmp_path)).encode(), "file names")
    # Exports.
    exported = list(exports.iterdir())
    assert {p.suffix for p in exported} == {".csv", ".dcm"}
    for f in exported:
        _assert_clean(f.read_bytes(), f.name)
        _assert_clean(f.name.encode(), "export names")
    # Logs.
    _assert_clean("\n".join(r.getMessage() for r in caplog.records).encode(), "logs")


def test_only_pseudonyms_identify_cases(store: ReviewStore, users: dict) -> None:
    clean = deidentify(dicom_dataset(), key=b"s" * 32)
    case = store.create_case(
        users["alice"], to_bytes(clean), source_key=str(clean.StudyInstanceUID)
    )
    with store.db.engine.connect() as conn:
        (case_id,) = conn.exec_driver_sql("SELECT case_id FROM cases").one()
        relpaths = [r[0] for r in conn.exec_driver_sql("SELECT relpath FROM images")]
    assert case_id == case.case_id
    assert case_id.startswith("CASE-") and len(case_id) == 15
    assert relpaths and all(p.startswith(f"{case_id}/img-") for p in relpaths)
    assert str(clean.PatientID).startswith("PSN-")
