"""The whole hospital loop against a real Orthanc (issue 18, "done when").

A chest CR and a brain MR, both with one-word person names, are stored in Orthanc and sent
by Orthanc (C-STORE) to ``medtl pacs listen --queue``; ``medtl worker --until-empty``
analyses them with a chest-radiograph model that the site routes every series to. The MR
must end as a ``refused`` job with nothing recorded and nothing in the PACS; the CR is
reviewed by a clinician and ``medtl pacs push`` sends its SR, which is read back from
Orthanc: P(nodule) equals ``medtl predict --json``'s probability, the finding carries
standard codes only, ``dciodvfy`` finds no error, and no log or stream holds a name.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from tests.conformance import dciodvfy
from tests.sr_read import (
    STANDARD_SCHEMES,
    all_codes,
    declared_schemes,
    groups,
    item_named,
    number_of,
)

from .conftest import cheap_store, make_cr
from .test_pacs import sr_in_study

#: one-word person names (highdicom warns about them, quoting the value)
NAMES = {
    "PatientName": "ZEBEDEEPHI",
    "ReferringPhysicianName": "HOUSEPHI",
    "OperatorsName": "OPERATORPHI",
}
PATIENT_ID = "MRN-LOOP-5521"


def _with_names(ds: pydicom.Dataset) -> pydicom.Dataset:
    for keyword, value in NAMES.items():
        setattr(ds, keyword, value)
    ds.PatientID = PATIENT_ID
    return ds


def _mr(study_uid: str) -> pydicom.Dataset:
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return _with_names(ds)


def _medtl(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medtl.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _wait_port(port: int, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    pytest.fail(f"nothing listens on port {port}")


def _listen_and_send(env: dict[str, str], orthanc, study_ids: list[str]) -> str:
    """Run ``medtl pacs listen --queue`` until both series arrived; return its streams."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "medtl.cli", "pacs", "listen", "--queue", "--max-series", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_port(orthanc.medtl_port)
        orthanc.send_to_medtl(study_ids)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    return out + err


@pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk is installed by make test")
def test_the_hospital_loop(pacs_env, orthanc, packages, home, tmp_path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    # the site routes every series to the chest-radiograph model (as in the issue)
    (home / "app.toml").write_text(
        f'[pacs]\nquiet_seconds = 0.5\ndefault_model = "{packages["CR"]}"\n'
    )
    env = {
        **os.environ,
        **pacs_env,
        "MEDTL_HOME": str(home),
        "MEDTL_LISTEN_PORT": str(orthanc.medtl_port),
    }
    env.pop("MEDTL_DATABASE_URL", None)
    cr = _with_names(make_cr(generate_uid()))
    mr = _mr(generate_uid())
    ids = [orthanc.upload(cr), orthanc.upload(mr)]
    study_ids = [orthanc.rest("GET", f"/instances/{i}/study")["ID"] for i in ids]
    streams = [_listen_and_send(env, orthanc, study_ids)]

    worked = _medtl(env, "worker", "--until-empty", "--poll-seconds", "0.2")
    streams.append(worked.stdout + worked.stderr)
    assert worked.returncode == 0, worked.stdout + worked.stderr
    lines = worked.stdout.splitlines()
    assert sum(": done case CASE-" in line for line in lines) == 1, worked.stdout
    (refused_line,) = [line for line in lines if ": refused" in line]
    assert "MRI" in refused_line

    # the refusal is final and visible: job status, `medtl pacs status`, no case for it
    jobs = json.loads(_medtl(env, "pacs", "jobs", "--json").stdout)
    assert sorted(j["status"] for j in jobs) == ["done", "refused"]
    refused = next(j for j in jobs if j["status"] == "refused")
    assert refused["case_id"] is None and "MRI" in refused["error"]
    status = json.loads(_medtl(env, "pacs", "status", "--json").stdout)
    assert [r["job"] for r in status["refused"]] == [refused["id"]]
    with cheap_store() as store:
        (case,) = store.worklist(None)
        assert case.modality == "CR" and case.status == "awaiting_review"
        store.accounts.add_user("dr_loop", "Qv7-plover-Tandem-91x", "clinician")
        user = store.accounts.sign_in("dr_loop", "Qv7-plover-Tandem-91x").user
        store.submit_review(user, case.case_id, "agree", x=30.0, y=25.0, comment="seen")
        assert store.get_case(case.case_id, viewer=None).status == "agreed"

    pushed = _medtl(env, "pacs", "push", case.case_id)
    streams.append(pushed.stdout + pushed.stderr)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr

    # nothing went into the MR study; the CR study holds one SR
    assert sr_in_study(orthanc, str(mr.StudyInstanceUID)) == []
    mr_series = orthanc.rest("GET", f"/studies/{study_ids[1]}/series")
    assert [s["MainDicomTags"].get("Modality") for s in mr_series] == ["MR"]
    (sr,) = sr_in_study(orthanc, str(cr.StudyInstanceUID))

    cr_file = tmp_path / "cr.dcm"
    cr.save_as(cr_file, enforce_file_format=True)
    predicted = json.loads(
        _medtl(env, "predict", str(packages["CR"]), str(cr_file), "--json").stdout
    )
    check_sr(sr, predicted["probability"], tmp_path)

    # no name in any stream or log file
    logs = [p for p in home.rglob("*.log") if p.is_file()]
    texts = streams + [p.read_text(errors="replace") for p in logs]
    for name in NAMES.values():
        for text in texts:
            assert name not in text


def check_sr(sr: pydicom.Dataset, probability: float, tmp_path: Path) -> None:
    """The SR states P(nodule) as medtl predicts it, codes its finding with standard codes
    only, is verified by the reviewer, and conforms."""
    assert sr.PatientID == PATIENT_ID  # the original study's identifiers, as sent back
    assert (sr.CompletionFlag, sr.VerificationFlag, sr.PreliminaryFlag) == (
        "COMPLETE",
        "VERIFIED",
        "FINAL",
    )
    # the probability of the named positive class, whatever the decision
    (ai,) = [g for name, g in groups(sr).items() if name.startswith("AI result")]
    prob = item_named(ai, "122157", "DCM")  # Probability
    assert abs(number_of(prob) - probability) < 1e-6
    declared = declared_schemes(sr)
    finding = item_named(ai, "121071", "DCM")  # Finding
    nodule = finding.ConceptCodeSequence[0]
    assert (nodule.CodeValue, nodule.CodingSchemeDesignator) == ("27925004", "SCT")  # Nodule
    for item in [finding, item_named(ai, "27925004", "SCT"), prob]:  # finding, decision, P
        for code in all_codes(item):
            assert code.CodingSchemeDesignator in STANDARD_SCHEMES, code
    for code in all_codes(sr):
        assert code.CodingSchemeDesignator in STANDARD_SCHEMES | declared
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    found = dciodvfy(path)
    assert found.errors == [], found.output
