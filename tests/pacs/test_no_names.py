"""No person name in any log or stream: a study whose person names are ONE word (the form
highdicom warns about, quoting the name) goes through analysis, review and a push with the
heat-map image into a real Orthanc; every log record, captured stdout/stderr, warning and
file under MEDTL_HOME is searched for the names. The heat-map image read back from the
PACS passes dciodvfy and carries the source's geometry and study fields."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from tests.conformance import dciodvfy
from tests.pacs.conftest import cheap_store, make_cr
from tests.pacs.test_pacs import heatmap_in_study

pytest.importorskip("highdicom")

#: one-word person names, each in its own PN attribute of the stored study
NAMES = {
    "PatientName": "Quintessa",
    "ReferringPhysicianName": "Bartholomew",
    "OperatorsName": "Ignatiusz",
    "PerformingPhysicianName": "Wilhelmina",
    "NameOfPhysiciansReadingStudy": "Theodorakis",
    "RequestingPhysician": "Evangelos",
}


def test_one_word_names_reach_no_log_and_no_stream(
    pacs_env,
    home: Path,
    orthanc,
    packages,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    recwarn,
    tmp_path: Path,
) -> None:
    from medtl.pacs import analyse_study, load_pacs_settings, push_case

    source = make_cr(generate_uid())
    for keyword, name in NAMES.items():
        setattr(source, keyword, name)
    source.PatientOrientation = ["L", "F"]
    source.StudyDescription = "Chest PA"
    orthanc.upload(source)
    study_uid = str(source.StudyInstanceUID)

    monkeypatch.setenv("MEDTL_PACS_PUSH_HEATMAP", "true")
    caplog.set_level(logging.DEBUG)  # what `medtl -v` logs
    settings = load_pacs_settings()
    assert settings.push_heatmap
    with cheap_store() as store:
        outcome = analyse_study(store, settings, study_uid, str(packages["CR"]))
        store.accounts.add_user("dr_who", "Qv7-plover-Tandem-91x", "clinician")
        user = store.accounts.sign_in("dr_who", "Qv7-plover-Tandem-91x").user
        store.submit_review(user, outcome.case_id, "agree", comment="checked")
        pushed = push_case(store, settings, outcome.case_id, actor=user)
    assert pushed.status == "done", pushed.error

    out, err = capfd.readouterr()
    records = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    streams = {"stdout": out, "stderr": err, "warnings": "\n".join(str(w.message) for w in recwarn)}
    files = [p for p in home.rglob("*") if p.is_file()]
    assert records and files  # there was something to search
    for name in NAMES.values():
        assert not [r for r in records if name in r], f"{name} in a log record"
        for where, text in streams.items():
            assert name not in text, f"{name} on {where}"
        for path in files:
            assert name.encode() not in path.read_bytes(), f"{name} in {path.relative_to(home)}"
    assert any("<redacted>" in r for r in records)  # highdicom's warning, logged redacted

    (sc,) = heatmap_in_study(orthanc, study_uid)
    assert str(sc.PatientName) == NAMES["PatientName"]  # the original study's identity
    assert list(sc.PatientOrientation) == ["L", "F"] and sc.BodyPartExamined == "CHEST"
    assert sc.StudyDescription == "Chest PA"
    path = tmp_path / "sc.dcm"
    sc.save_as(path, enforce_file_format=True)
    result = dciodvfy(path)
    assert result.errors == [], result.output
