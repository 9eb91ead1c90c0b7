"""medtl against a real Orthanc: echo, find, analyse, review, push, PACS down and retry,
and a PHI sweep of MEDTL_HOME and the database afterwards."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from typer.testing import CliRunner

from medtl.cli import app
from tests.pacs.conftest import (
    PASSWORD,
    PHI_ACCESSION,
    PHI_ID,
    PHI_NAME,
    USER,
    OrthancServer,
    cheap_store,
    make_cr,
)
from tests.sr_read import content_items

runner = CliRunner(env={"COLUMNS": "2000"})


#: everything the commands printed (debug logs included) since the test cleared it
TRANSCRIPT: list[str] = []


def medtl(*args: str) -> tuple[int, str]:
    """Run ``medtl -v ARGS`` (debug logs on): the exit code and stdout then stderr."""
    result = runner.invoke(app, ["-v", *args])
    out = result.stdout + (result.stderr or "")
    TRANSCRIPT.append(out)
    return result.exit_code, out


def case_of(out: str) -> str:
    """The case pseudonym ``medtl pacs analyse`` printed."""
    match = re.search(r"case (CASE-[0-9A-F]+)", out)
    assert match, out
    return match.group(1)


def medtl_json(*args: str) -> object:
    """Run ``medtl ARGS --json`` and parse its stdout (logs go to stderr)."""
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.stdout + (result.stderr or "")
    return json.loads(result.stdout)


def assert_no_phi(home: Path, secrets: list[str]) -> None:
    """No file under MEDTL_HOME (database, WAL, case files, logs) holds a secret in clear."""
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.suffix == ".sqlite" for p in files)
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            for form in {secret, secret.replace("^", " ")}:
                assert form.encode() not in data, f"{form!r} found in {path.relative_to(home)}"
                assert form.encode("utf-16-le") not in data


def assert_no_phi_in(text: str, studies) -> None:
    """Command output and logs of analyse/push/listen name no patient and no original UID."""
    for secret in [PHI_NAME, PHI_ID, PHI_ACCESSION, *studies.all_uids()]:
        leaks = [line for line in text.splitlines() if secret in line]
        assert not leaks, f"{secret!r} printed: {leaks[0][:300]!r}"


def sr_in_study(orthanc: OrthancServer, study_uid: str) -> list[pydicom.Dataset]:
    """The SR instances of a study, read back over DICOMweb (QIDO-RS + WADO-RS)."""
    from dicomweb_client.api import DICOMwebClient

    session = requests.Session()
    session.auth = (USER, PASSWORD)
    web = DICOMwebClient(url=orthanc.dicomweb_url, session=session)
    found = web.search_for_instances(
        study_instance_uid=study_uid, search_filters={"Modality": "SR"}
    )
    out = []
    for item in found:
        ds = pydicom.Dataset.from_json(item)
        out.append(web.retrieve_instance(study_uid, ds.SeriesInstanceUID, ds.SOPInstanceUID))
    return out


def heatmap_in_study(orthanc: OrthancServer, study_uid: str) -> list[pydicom.Dataset]:
    """The heat-map Secondary Captures of a study (series number 991), over DICOMweb."""
    from dicomweb_client.api import DICOMwebClient

    session = requests.Session()
    session.auth = (USER, PASSWORD)
    web = DICOMwebClient(url=orthanc.dicomweb_url, session=session)
    out = []
    for item in web.search_for_series(study_instance_uid=study_uid):
        series = pydicom.Dataset.from_json(item)
        if int(series.get("SeriesNumber", 0) or 0) == 991:
            out.extend(web.retrieve_series(study_uid, series.SeriesInstanceUID))
    return out


def by_meaning(ds: pydicom.Dataset, meaning: str) -> pydicom.Dataset:
    items = [
        i
        for i in content_items(ds)
        if "ConceptNameCodeSequence" in i and i.ConceptNameCodeSequence[0].CodeMeaning == meaning
    ]
    assert items, f"no content item {meaning!r}"
    return items[0]


def reviewer(store, decision: str, case_id: str) -> None:
    store.accounts.add_user("dr_who", "Qv7-plover-Tandem-91x", "clinician")
    user = store.accounts.sign_in("dr_who", "Qv7-plover-Tandem-91x").user
    store.submit_review(user, case_id, decision, comment="checked on the PACS")


# --- echo and find ------------------------------------------------------------------------
def test_echo_reports_both_paths(pacs_env, orthanc) -> None:
    code, out = medtl("pacs", "echo")
    assert code == 0, out
    assert "dicomweb: ok" in out and "dimse: ok" in out


def test_echo_says_which_path_fails_and_why(pacs_env, monkeypatch, tmp_path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password")
    monkeypatch.setenv("MEDTL_PACS_PASSWORD_FILE", str(wrong))
    code, out = medtl("pacs", "echo")
    assert code == 1, out
    assert "dicomweb: FAILED" in out and "401" in out and "dimse: ok" in out, out

    monkeypatch.setenv("MEDTL_PACS_PASSWORD_FILE", pacs_env["MEDTL_PACS_PASSWORD_FILE"])
    monkeypatch.setenv("MEDTL_AE_TITLE", "INTRUDER")  # not registered: the port refuses it
    code, out = medtl("pacs", "echo")
    assert code == 1, out
    assert "dicomweb: ok" in out and "dimse: FAILED" in out and "rejected" in out, out
    assert "'INTRUDER' registered in the PACS" in out, out


def test_find_over_dicomweb_and_dimse(pacs_env, studies, monkeypatch) -> None:
    hits = medtl_json("pacs", "find", "--patient-id", PHI_ID, "--modality", "CT")
    assert [h["study_uid"] for h in hits] == [studies.ct_study]
    assert hits[0]["patient_name"] == PHI_NAME and hits[0]["n_instances"] == 40

    # other tests of the shared Orthanc store studies too: only ours are judged here
    ours = {studies.cr_study, studies.ct_study}
    hits = medtl_json("pacs", "find", "--since", "2025-01-01")
    assert [h["study_uid"] for h in hits if h["study_uid"] in ours] == [studies.cr_study]

    # identifiers go to stdout for the operator, never into the (debug) logs on stderr
    web = runner.invoke(app, ["-v", "pacs", "find", "--patient-id", PHI_ID])
    monkeypatch.delenv("MEDTL_PACS_DICOMWEB_URL")  # DIMSE only: C-FIND
    dimse = runner.invoke(app, ["-v", "pacs", "find", "--accession", PHI_ACCESSION])
    for result in (web, dimse):
        assert result.exit_code == 0, result.stderr
        assert studies.cr_study in result.stdout and studies.ct_study in result.stdout
        assert PHI_ID in result.stdout and re.search(r"pacs find: \d+ studies", result.stderr)
        for secret in (PHI_ID, PHI_NAME, PHI_ACCESSION, studies.cr_study, studies.ct_study):
            assert secret not in result.stderr, result.stderr


# --- analyse, review, push ------------------------------------------------------------------
def test_analyse_review_push_cycle(pacs_env, home, orthanc, studies, packages) -> None:
    from medtl.pacs.ingest import site_key
    from medtl.pacs.records import load_link

    TRANSCRIPT.clear()

    code, out = medtl("pacs", "analyse", studies.cr_study, "--model", str(packages["CR"]))
    assert code == 0, out
    case_id = case_of(out)
    code, again = medtl("pacs", "analyse", studies.cr_study, "--model", str(packages["CR"]))
    assert code == 0 and case_of(again) == case_id and "(existing)" in again

    with cheap_store() as store:
        detail = store.open_case(None, case_id)
        assert detail.case.modality == "CR" and len(detail.predictions) == 2
        assert detail.predictions[0].model_name == "pacs-cxr"
        scan = store.load_image(detail.images[0])
        assert scan.meta["study_uid"] != studies.cr_study
        link = load_link(store.db, case_id, site_key())
        assert link.study_uid == studies.cr_study
        assert link.sop_instance_uids == list(studies.cr_instances)

        code, out = medtl("pacs", "push", case_id)  # nobody reviewed it yet
        assert code == 1 and "no clinician has reviewed" in out
        assert sr_in_study(orthanc, studies.cr_study) == []
        reviewer(store, "agree", case_id)

    code, out = medtl("pacs", "push", case_id)
    assert code == 0, out
    assert "done" in out and "UNVERIFIED" not in out and "(pacs-cxr@1.2.0)" in out
    code, out = medtl("pacs", "push", case_id)  # same UIDs: replaced, not duplicated
    assert code == 0, out

    (sr,) = sr_in_study(orthanc, studies.cr_study)
    assert sr.StudyInstanceUID == studies.cr_study
    assert sr.PatientID == PHI_ID and str(sr.PatientName) == PHI_NAME
    assert sr.VerificationFlag == "VERIFIED" and sr.CompletionFlag == "COMPLETE"
    import highdicom as hd

    parsed = hd.sr.Comprehensive3DSR.from_dataset(sr)
    evidence = {e[2] for e in parsed.get_evidence()}
    assert evidence == set(studies.cr_instances)
    assert by_meaning(sr, "Device Observer Name").TextValue == "pacs-cxr"
    assert by_meaning(sr, "Device Observer Model Name").TextValue == "1.2.0"
    assert by_meaning(sr, "Algorithm Version").TextValue == "1.2.0"
    confirmed = by_meaning(sr, "AI result confirmed by clinician")
    assert confirmed.ConceptCodeSequence[0].CodeValue == "373066001"  # Yes: agree
    assert by_meaning(sr, "Finding").ConceptCodeSequence[0].CodeValue == "27925004"  # Nodule
    prob = by_meaning(sr, "Probability")
    with cheap_store() as store:
        expected = store.open_case(None, case_id).predictions[-1].probability
        actions = [a.action for a in store.audit_log(None, case_id=case_id)]
    assert float(prob.MeasuredValueSequence[0].NumericValue) == pytest.approx(expected, abs=1e-6)
    assert "export" in actions

    code, out = medtl("pacs", "status")
    assert f"{case_id} result" in out and "done" in out
    assert "DEBUG" in "".join(TRANSCRIPT)  # the debug logs were on
    assert_no_phi_in("".join(TRANSCRIPT), studies)
    assert_no_phi(home, [PHI_NAME, PHI_ID, PHI_ACCESSION, *studies.all_uids()])


def test_dimse_only_analyse_and_unverified_push(
    pacs_env, home, orthanc, studies, packages, monkeypatch
) -> None:
    TRANSCRIPT.clear()
    monkeypatch.delenv("MEDTL_PACS_DICOMWEB_URL")  # C-GET in, C-STORE out
    code, out = medtl("pacs", "analyse", studies.ct_study, "--model", str(packages["CT"]))
    assert code == 0, out
    case_id = case_of(out)
    monkeypatch.setenv("MEDTL_PACS_PUSH_UNVERIFIED", "true")
    monkeypatch.setenv("MEDTL_PACS_PUSH_HEATMAP", "true")
    code, out = medtl("pacs", "push", case_id)
    assert code == 0, out
    assert "UNVERIFIED" in out

    (sc,) = heatmap_in_study(orthanc, studies.ct_study)  # peak slice of the volume
    assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and sc.PatientID == PHI_ID
    assert "NOT FOR DIAGNOSIS" in sc.SeriesDescription and sc.BurnedInAnnotation == "YES"
    rgb = sc.pixel_array
    assert rgb.shape == (32, 32, 3) and rgb.dtype == np.uint8
    colour = np.ptp(rgb.astype(int), axis=-1) > 10  # not grey: the map is blended in
    assert colour[16:].any()  # below the burned-in warning (rows 0-13)

    (sr,) = sr_in_study(orthanc, studies.ct_study)
    assert sr.VerificationFlag == "UNVERIFIED" and "UNVERIFIED" in sr.SeriesDescription
    assert sr.PreliminaryFlag == "PRELIMINARY" and sr.PatientID == PHI_ID
    assert "AI result confirmed by clinician" not in str(sr)  # no review, no verdict
    assert by_meaning(sr, "Device Observer Name").TextValue == "pacs-ct"
    refs = {
        r.ReferencedSOPInstanceUID
        for s in sr.CurrentRequestedProcedureEvidenceSequence
        for se in s.ReferencedSeriesSequence
        for r in se.ReferencedSOPSequence
    }
    assert refs == set(studies.ct_instances)
    assert_no_phi_in("".join(TRANSCRIPT), studies)
    assert_no_phi(home, [PHI_NAME, PHI_ID, PHI_ACCESSION, *studies.all_uids()])


def test_push_while_pacs_down_is_recorded_and_retried(
    home, orthanc_bin, tmp_path, packages, monkeypatch
) -> None:
    from pydicom.uid import generate_uid

    server = OrthancServer(tmp_path / "down")
    server.start()
    try:
        cr = make_cr(generate_uid())
        server.upload(cr)
        secret = tmp_path / "pw"
        secret.write_text(PASSWORD)
        for k, v in {**server.env(), "MEDTL_PACS_PASSWORD_FILE": str(secret)}.items():
            monkeypatch.setenv(k, v)
        code, out = medtl(
            "pacs", "analyse", str(cr.StudyInstanceUID), "--model", str(packages["CR"])
        )
        assert code == 0, out
        case_id = case_of(out)
        with cheap_store() as store:
            reviewer(store, "disagree", case_id)

        server.stop()
        code, out = medtl("pacs", "push", case_id)
        assert code == 1 and "failed" in out and "connection refused" in out
        (record,) = medtl_json("pacs", "status")["pushes"]
        assert record["status"] == "failed" and record["attempts"] == 1
        assert "DICOMweb" in record["last_error"]

        server.start()
        # a worker retries it on its own once the back-off (2 s after 1 attempt) has passed
        from medtl.pacs.jobs import Worker
        from medtl.pacs.settings import load_pacs_settings
        from medtl.review import ReviewStore

        now = [datetime.fromisoformat(record["updated_at"])]  # the failed attempt's time
        with ReviewStore.open(clock=lambda: now[0]) as store:
            worker = Worker(store, load_pacs_settings())
            assert worker.retry_pushes() == 0  # not due yet
            assert medtl_json("pacs", "status")["pushes"][0]["attempts"] == 1
            now[0] += timedelta(seconds=3)
            assert worker.retry_pushes() == 1
        (record,) = medtl_json("pacs", "status")["pushes"]
        assert record["status"] == "done" and record["attempts"] == 2
        (sr,) = sr_in_study(server, str(cr.StudyInstanceUID))
        verdict = by_meaning(sr, "AI result confirmed by clinician")
        assert verdict.ConceptCodeSequence[0].CodeMeaning == "No"  # disagree
        code, out = medtl("pacs", "push", "--retry-failed")  # nothing left to retry
        assert code == 0 and " result " not in out
    finally:
        server.stop()


def test_push_refused_by_the_pacs_http_401_is_recorded_and_retried(
    pacs_env, orthanc, packages, monkeypatch, tmp_path
) -> None:
    from pydicom.uid import generate_uid

    cr = make_cr(generate_uid())
    cr.StudyDate = "20200101"  # out of the other tests' --since window
    orthanc.upload(cr)
    code, out = medtl("pacs", "analyse", str(cr.StudyInstanceUID), "--model", str(packages["CR"]))
    assert code == 0, out
    case_id = case_of(out)
    with cheap_store() as store:
        reviewer(store, "uncertain", case_id)
    wrong = tmp_path / "expired"
    wrong.write_text("rotated-password")
    monkeypatch.setenv("MEDTL_PACS_PASSWORD_FILE", str(wrong))
    code, out = medtl("pacs", "push", case_id)
    assert code == 1 and "HTTP 401" in out
    (record,) = medtl_json("pacs", "status")["pushes"]
    assert record["status"] == "failed" and "HTTP 401" in record["last_error"]
    assert sr_in_study(orthanc, str(cr.StudyInstanceUID)) == []

    monkeypatch.setenv("MEDTL_PACS_PASSWORD_FILE", pacs_env["MEDTL_PACS_PASSWORD_FILE"])
    monkeypatch.setenv("MEDTL_PACS_PUSH_HEATMAP", "1")
    code, out = medtl("pacs", "push", "--retry-failed")
    assert code == 0 and "done" in out
    (sc,) = heatmap_in_study(orthanc, str(cr.StudyInstanceUID))  # STOW-RS of SR + SC
    assert sc.pixel_array.shape == (64, 64, 3) and "NOT FOR DIAGNOSIS" in sc.ImageComments
    (sr,) = sr_in_study(orthanc, str(cr.StudyInstanceUID))
    assert (
        by_meaning(sr, "AI result confirmed by clinician").ConceptCodeSequence[0].CodeValue
        == "373068000"  # Undetermined: uncertain
    )


def test_any_clinician_may_send_a_case_another_clinician_reviewed(
    pacs_env, orthanc, packages
) -> None:
    """Reviews are blinded between clinicians in the app, but the SR carries the verdict of
    the case's reviewer whoever sends it; a researcher may not send."""
    from pydicom.uid import generate_uid

    from medtl.pacs.push import push_case
    from medtl.pacs.settings import load_pacs_settings
    from medtl.review import PermissionDeniedError

    cr = make_cr(generate_uid())
    cr.StudyDate = "20200102"
    orthanc.upload(cr)
    code, out = medtl("pacs", "analyse", str(cr.StudyInstanceUID), "--model", str(packages["CR"]))
    assert code == 0, out
    case_id = case_of(out)
    with cheap_store() as store:
        reviewer(store, "disagree", case_id)
        store.accounts.add_user("dr_no", "Qv7-plover-Tandem-91x", "clinician")
        store.accounts.add_user("res", "Qv7-plover-Tandem-91x", "researcher")
        other = store.accounts.get_user("dr_no")
        with pytest.raises(PermissionDeniedError):
            push_case(store, load_pacs_settings(), case_id, actor=store.accounts.get_user("res"))
        outcome = push_case(store, load_pacs_settings(), case_id, actor=other)
        assert outcome.status == "done" and not outcome.unverified
        exports = [a for a in store.audit_log(None, case_id=case_id) if a.action == "export"]
    assert [a.username for a in exports] == ["dr_no"]
    (sr,) = sr_in_study(orthanc, str(cr.StudyInstanceUID))
    assert (
        by_meaning(sr, "AI result confirmed by clinician").ConceptCodeSequence[0].CodeMeaning
        == "No"  # disagree
    )
    assert sr.VerifyingObserverSequence[0].VerifyingObserverName.family_name == "dr_who"


def test_dimse_retrieval_by_c_move(pacs_env, home, orthanc, studies, packages, monkeypatch) -> None:
    """C-MOVE to medtl's AE title (registered in Orthanc's DicomModalities with its port); the
    study also holds a non-image object (a key object selection), which the move delivers and
    medtl drops."""
    from tests.io.dicom_factory import non_image

    ko = non_image("KO")
    ko.StudyInstanceUID, ko.PatientID, ko.PatientName = studies.ct_study, PHI_ID, PHI_NAME
    orthanc.upload(ko)
    monkeypatch.delenv("MEDTL_PACS_DICOMWEB_URL")
    monkeypatch.setenv("MEDTL_PACS_RETRIEVE", "move")
    monkeypatch.setenv("MEDTL_LISTEN_PORT", str(orthanc.medtl_port))
    code, out = medtl("pacs", "analyse", studies.ct_study, "--model", str(packages["CT"]))
    assert code == 0, out
    with cheap_store() as store:
        detail = store.open_case(None, case_of(out))
        assert store.load_image(detail.images[0]).shape[0] == 40
    assert_no_phi(home, [PHI_NAME, PHI_ID, PHI_ACCESSION, *studies.all_uids()])

    monkeypatch.setenv("MEDTL_AE_TITLE", "UNKNOWN")  # not in DicomModalities: refused
    code, out = medtl("pacs", "analyse", studies.ct_study, "--model", str(packages["CT"]))
    assert code == 2 and "DIMSE" in out, out
