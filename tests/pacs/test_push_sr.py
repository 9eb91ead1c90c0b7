"""The SR of ``medtl pacs push`` read back from a real Orthanc, and the Export SR of a PACS
case: P(nodule) and the decision, the flags, the reviewer's mark on the original image,
conformance (dciodvfy), which result is sent, and refusals.

With ``MEDTL_SR_DUMP=<file>`` set, the first test writes dcmtk's ``dsrdump`` of the pushed
SR there (the tree shown in ``docs/pacs.md``), and the SR itself next to it (``.dcm``).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from medtl.artifacts import PredictionDetails
from medtl.models.package import read_card
from tests.conformance import dciodvfy
from tests.sr_read import (
    STANDARD_SCHEMES,
    all_codes,
    code_of,
    declared_schemes,
    groups,
    item_named,
    items_named,
    number_of,
)

from .conftest import PHI_ACCESSION, PHI_NAME, cheap_store, make_cr, make_ct
from .test_pacs import case_of, medtl, sr_in_study

pytest.importorskip("highdicom")

NODULE = ("27925004", "SCT")
PRESENT, ABSENT = ("52101004", "SCT"), ("272519000", "SCT")
PROBABILITY = ("122157", "DCM")
CONFIRMED = ("CONFIRMED", "99MEDTL")
#: these studies' own patient (the other PACS tests find studies by PHI_ID)
PATIENT_ID = "SR-TEST-MRN-3310"


def _study(orthanc, date: str) -> pydicom.Dataset:
    """A CR study of its own (a date outside the other tests' ``--since`` windows)."""
    cr = make_cr(generate_uid())
    cr.StudyDate, cr.PatientID = date, PATIENT_ID
    orthanc.upload(cr)
    return cr


def _analysed(orthanc, packages, date: str) -> tuple[pydicom.Dataset, str]:
    cr = _study(orthanc, date)
    code, out = medtl("pacs", "analyse", str(cr.StudyInstanceUID), "--model", str(packages["CR"]))
    assert code == 0, out
    return cr, case_of(out)


def _clinician(store, name: str = "dr_sr"):
    store.accounts.add_user(name, "Qv7-plover-Tandem-91x", "clinician")
    return store.accounts.sign_in(name, "Qv7-plover-Tandem-91x").user


def _conforms(sr: pydicom.Dataset, path: Path) -> str:
    """Save, check with dciodvfy (no error) and return dsrdump's tree."""
    sr.save_as(path, enforce_file_format=True)
    found = dciodvfy(path)
    assert found.errors == [], found.output
    # what remains: the private schemes, declared in CodingSchemeIdentificationSequence
    # (docs/dicom_conformance.md)
    unknown = [w for w in found.warnings if "Unrecognized defined term = <99MEDTL" not in w]
    assert unknown == [], found.output
    dump = subprocess.run(
        ["dsrdump", "+Pc", "+Pl", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return dump


def test_pushed_sr_states_p_nodule_flags_and_the_mark(
    pacs_env, orthanc, packages, tmp_path
) -> None:
    cr, case_id = _analysed(orthanc, packages, "20190301")
    with cheap_store() as store:
        (pred,) = store.open_case(None, case_id).predictions
        review = store.submit_review(
            _clinician(store), case_id, "agree", x=30, y=25, comment="small opacity, agree"
        )
    code, out = medtl("pacs", "push", case_id)
    assert code == 0, out
    assert f"result {pred.id} (pacs-cxr@1.2.0): done" in out

    (sr,) = sr_in_study(orthanc, str(cr.StudyInstanceUID))
    assert (sr.PatientID, str(sr.PatientName), sr.AccessionNumber) == (
        PATIENT_ID,
        PHI_NAME,
        PHI_ACCESSION,
    )  # the original study's identifiers, as sent back
    assert (sr.PreliminaryFlag, sr.CompletionFlag, sr.VerificationFlag) == (
        "FINAL",
        "COMPLETE",
        "VERIFIED",
    )
    (ident,) = sr.VerifyingObserverSequence[0].VerifyingObserverIdentificationCodeSequence
    assert ident.CodingSchemeDesignator == "99MEDTLUSR"
    result = groups(sr)[f"AI result {pred.id}"]
    assert number_of(item_named(result, *PROBABILITY)) == pytest.approx(pred.probability)
    positive = pred.probability >= pred.threshold
    assert code_of(item_named(result, *NODULE)) == (PRESENT if positive else ABSENT)
    assert code_of(item_named(result, "121071", "DCM")) == NODULE
    params = " ".join(i.TextValue for i in items_named(result, "111002", "DCM"))
    assert f"weights sha256: {read_card(packages['CR']).weights_sha256}" in params
    assert code_of(item_named(sr, "121058", "DCM")) == ("399208008", "SCT")  # chest X-ray
    mark = groups(sr)[f"Clinician review {review.id}"]
    assert code_of(item_named(mark, *CONFIRMED)) == ("373066001", "SCT")
    assert item_named(mark, "121106", "DCM").TextValue == "small opacity, agree"
    region = item_named(mark, "111030", "DCM")
    assert region.GraphicType == "POINT" and list(region.GraphicData) == [30.5, 25.5]
    ref = region.ContentSequence[0].ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == cr.SOPInstanceUID  # the original image
    for code in all_codes(sr):
        assert code.CodingSchemeDesignator in STANDARD_SCHEMES | declared_schemes(sr)

    dump = _conforms(sr, tmp_path / "pushed-sr.dcm")
    assert '(122157,DCM,"Probability")' in dump and '(27925004,SCT,"Nodule")' in dump
    if os.environ.get("MEDTL_SR_DUMP"):
        target = Path(os.environ["MEDTL_SR_DUMP"])
        target.write_text(dump)
        sr.save_as(target.with_suffix(".dcm"), enforce_file_format=True)


def test_negative_result_below_the_threshold_is_pushed_as_absent(
    pacs_env, orthanc, packages, tmp_path
) -> None:
    """P(nodule) = 0.537 under a 0.6 operating point: the SR says Probability = 0.537 of
    Nodule, and Nodule = Absent (the issue's misstated negative result)."""
    cr, case_id = _analysed(orthanc, packages, "20190302")
    details = PredictionDetails(
        domain="ok",
        calibrated=False,
        operating_point="high-specificity",
        positive=False,
        labels=["no nodule", "nodule"],
        source="pacs",
    )
    with cheap_store() as store:
        image = store.get_images(case_id)[0].id
        pred = store.record_prediction(
            None,
            case_id,
            model_name="pacs-cxr",
            model_version="1.2.0",
            label="no nodule",
            probability=0.537,
            threshold=0.6,
            image_id=image,
            details=details,
        )
        store.submit_review(_clinician(store), case_id, "uncertain", prediction_id=pred.id)
    code, out = medtl("pacs", "push", case_id)
    assert code == 0, out
    (sr,) = sr_in_study(orthanc, str(cr.StudyInstanceUID))
    result = groups(sr)[f"AI result {pred.id}"]
    assert number_of(item_named(result, *PROBABILITY)) == pytest.approx(0.537)
    assert code_of(item_named(result, *NODULE)) == ABSENT
    assert code_of(item_named(result, "CALIBRATED", "99MEDTL")) == ("373067005", "SCT")  # No
    assert item_named(result, "111081", "DCM").TextValue == "high-specificity"
    assert "no nodule" not in str(sr)
    _conforms(sr, tmp_path / "negative.dcm")


def test_push_sends_the_reviewed_result_and_says_which(pacs_env, orthanc, packages) -> None:
    cr, case_id = _analysed(orthanc, packages, "20190303")
    with cheap_store() as store:
        (first,) = store.open_case(None, case_id).predictions
        store.submit_review(_clinician(store), case_id, "disagree", prediction_id=first.id)
    code, out = medtl("pacs", "analyse", str(cr.StudyInstanceUID), "--model", str(packages["CR"]))
    assert code == 0 and "(existing)" in out  # a new, unreviewed result of the same case
    with cheap_store() as store:
        latest = store.open_case(None, case_id).predictions[-1]
    assert latest.id != first.id

    code, out = medtl("pacs", "push", case_id)
    assert code == 1
    (line,) = [x for x in out.splitlines() if x.startswith("error:")]
    assert f"result {latest.id}" in line and f"result {first.id}" in line
    assert f"--result {first.id}" in line
    assert sr_in_study(orthanc, str(cr.StudyInstanceUID)) == []

    code, out = medtl("pacs", "push", case_id, "--result", str(first.id))
    assert code == 0, out
    assert f"{case_id} result {first.id} (pacs-cxr@1.2.0): done" in out
    (sr,) = sr_in_study(orthanc, str(cr.StudyInstanceUID))
    assert [n for n in groups(sr) if n.startswith("AI result")] == [f"AI result {first.id}"]
    (review,) = [g for name, g in groups(sr).items() if name.startswith("Clinician review")]
    assert code_of(item_named(review, *CONFIRMED)) == ("373067005", "SCT")  # No: disagree


def test_push_refuses_a_result_the_domain_guard_refused(pacs_env, orthanc, packages) -> None:
    """A refused result left by an older medtl (the store no longer records one) is never
    sent: exit 1 with one line, nothing in the PACS."""
    from tests.review.test_sr import insert_refused_result

    cr, case_id = _analysed(orthanc, packages, "20190304")
    with cheap_store() as store:
        refused = insert_refused_result(store, case_id)
    code, out = medtl("pacs", "push", case_id)
    assert code == 1
    (line,) = [x for x in out.splitlines() if x.startswith("error:")]
    assert f"AI result {refused}" in line and "refused by the model's domain guard" in line
    code, out = medtl("pacs", "push", case_id, "--result", str(refused))
    assert code == 1 and "refused by the model's domain guard" in out
    assert sr_in_study(orthanc, str(cr.StudyInstanceUID)) == []


def test_pacs_volume_mark_push_and_pseudonymous_export(
    pacs_env, orthanc, packages, tmp_path
) -> None:
    """A CT case from the PACS: the push marks the original slice the reviewer marked; the
    Export SR of the same case names only the case pseudonym."""
    ct = make_ct(generate_uid(), n=12)
    for ds in ct:
        ds.StudyDate, ds.PatientID = "20190305", PATIENT_ID
        orthanc.upload(ds)
    study = str(ct[0].StudyInstanceUID)
    code, out = medtl("pacs", "analyse", study, "--model", str(packages["CT"]))
    assert code == 0, out
    case_id = case_of(out)
    with cheap_store() as store:
        user = _clinician(store)
        review = store.submit_review(user, case_id, "agree", x=5, y=6, slice_index=7)
        exported = store.export_sr(user, case_id, tmp_path)
    code, out = medtl("pacs", "push", case_id)
    assert code == 0, out

    (sr,) = sr_in_study(orthanc, study)
    region = item_named(groups(sr)[f"Clinician review {review.id}"], "111030", "DCM")
    ref = region.ContentSequence[0].ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == ct[7].SOPInstanceUID  # slice 7 along the normal
    assert code_of(item_named(sr, "121058", "DCM")) == ("169069000", "SCT")  # CT of chest
    _conforms(sr, tmp_path / "ct-push.dcm")

    found = dciodvfy(exported)
    assert found.errors == [], found.output
    raw = exported.read_bytes()
    originals = [PATIENT_ID, PHI_NAME, PHI_ACCESSION, study, str(ct[0].SeriesInstanceUID)]
    for secret in [*originals, *(str(d.SOPInstanceUID) for d in ct)]:
        assert secret.encode() not in raw, secret
    pseudonymous = pydicom.dcmread(exported)
    assert pseudonymous.PatientID == case_id and pseudonymous.VerificationFlag == "VERIFIED"
    region = item_named(groups(pseudonymous)[f"Clinician review {review.id}"], "111030", "DCM")
    refs = pseudonymous.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert len(refs.ReferencedSOPSequence) == 12
