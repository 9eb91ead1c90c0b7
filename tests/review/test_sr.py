"""The AI-result SR (medtl.review.sr) and the app's Export SR, read back with pydicom and
checked with dciodvfy: the probability of the named class whatever the decision, the
standard finding codes, calibration, the domain caution, the review (verdict, comment,
mark) and the document flags; exports of PNG, DICOM-upload and DICOM-file cases.
(Push and a PACS case's export: ``tests/pacs/test_push_sr.py``.)"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from medtl.artifacts import PredictionDetails
from medtl.io import load_scan
from medtl.io.deid import deidentify
from medtl.review.auth import UserInfo
from medtl.review.sr_content import RefusedResultError
from medtl.review.sr_sources import case_sources
from medtl.review.store import ReviewStore
from tests.conformance import dciodvfy
from tests.io.dicom_factory import ct_series
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

from .conftest import (
    PASSWORD,
    PATIENT_ID,
    PATIENT_NAME,
    FakeClock,
    dicom_dataset,
    open_store,
    tiny_scan,
    to_bytes,
)

pytest.importorskip("highdicom")

NODULE = ("27925004", "SCT")
LUNG = ("39607008", "SCT")
PRESENT, ABSENT = ("52101004", "SCT"), ("272519000", "SCT")
YES, NO, UNDETERMINED = ("373066001", "SCT"), ("373067005", "SCT"), ("373068000", "SCT")
PROBABILITY, THRESHOLD = ("122157", "DCM"), ("122411", "DCM")
CALIBRATED, CONFIRMED, CAUTION = (
    ("CALIBRATED", "99MEDTL"),
    ("CONFIRMED", "99MEDTL"),
    (
        "DOMAINCAUTION",
        "99MEDTL",
    ),
)
#: dciodvfy warnings seen on these SRs, listed and justified in docs/dicom_conformance.md
KNOWN_WARNINGS = (
    "Unrecognized defined term = <99MEDTL>",
    "Unrecognized defined term = <99MEDTLUSR>",
    "Missing attribute or value that would be needed to build DICOMDIR",
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ReviewStore]:
    """A SQLite review store (the SR does not depend on the database backend)."""
    s = open_store(f"sqlite:///{tmp_path / 'db' / 'review.sqlite'}", FakeClock())
    yield s
    s.close()


@pytest.fixture
def users(store: ReviewStore) -> dict[str, UserInfo]:
    return {
        name: store.accounts.add_user(name, PASSWORD, role)
        for name, role in (("alice", "clinician"), ("bob", "clinician"), ("rita", "researcher"))
    }


def record(
    store: ReviewStore,
    user: UserInfo,
    case_id: str,
    probability: float,
    *,
    threshold: float | None = 0.6,
    calibrated: bool | None = True,
    domain: str = "ok",
    reasons: tuple[str, ...] = (),
    labels: tuple[str, ...] = ("no nodule", "nodule"),
) -> int:
    """Record an AI result as the upload page does (label = the decided class)."""
    positive = None if threshold is None else probability >= threshold
    details = PredictionDetails(
        domain=domain,
        domain_reasons=list(reasons),
        calibrated=calibrated,
        operating_point=None if threshold is None else "youden",
        positive=positive,
        labels=list(labels),
    )
    label = labels[1] if positive or (positive is None and probability >= 0.5) else labels[0]
    return store.record_prediction(
        user,
        case_id,
        model_name="cxr-nodule",
        model_version="1.0",
        label=label,
        probability=probability,
        threshold=threshold,
        image_id=store.get_images(case_id)[0].id,
        details=details,
    ).id


def export(
    store: ReviewStore, user: UserInfo, case_id: str, tmp_path: Path, *allowed: str
) -> pydicom.Dataset:
    """Export the case's SR, check it with dciodvfy (0 errors, only known warnings and
    ``allowed`` ones)."""
    out = tmp_path / "sr"
    out.mkdir(exist_ok=True)
    path = store.export_sr(user, case_id, out)
    found = dciodvfy(path)
    assert found.errors == [], found.output
    unknown = [w for w in found.warnings if not any(k in w for k in (*KNOWN_WARNINGS, *allowed))]
    assert unknown == [], found.output
    return pydicom.dcmread(path)


def finding_codes_are_standard(sr: pydicom.Dataset) -> None:
    for group in groups(sr).values():
        (finding,) = items_named(group, "121071", "DCM")
        assert code_of(finding)[1] in STANDARD_SCHEMES
    for code in all_codes(sr):
        assert code.CodingSchemeDesignator in STANDARD_SCHEMES | declared_schemes(sr)


def test_negative_result_states_the_probability_of_the_positive_class(
    store: ReviewStore, users: dict, tmp_path: Path
) -> None:
    """P(nodule) = 0.537 below the 0.6 threshold: "Probability" = 0.537 of the finding
    Nodule, and the decision Nodule = Absent (the issue's misread negative result)."""
    case = store.create_case(users["alice"], tiny_scan("CR")).case_id
    rid = record(store, users["alice"], case, 0.537)
    sr = export(store, users["alice"], case, tmp_path)
    group = groups(sr)[f"AI result {rid}"]
    assert code_of(item_named(group, "121071", "DCM")) == NODULE
    assert code_of(item_named(group, "363698007", "SCT")) == LUNG  # Finding Site
    assert number_of(item_named(group, *PROBABILITY)) == pytest.approx(0.537)
    assert number_of(item_named(group, *THRESHOLD)) == pytest.approx(0.6)
    assert code_of(item_named(group, *NODULE)) == ABSENT
    assert item_named(group, "111081", "DCM").TextValue == "youden"
    assert code_of(item_named(group, *CALIBRATED)) == YES
    assert "no nodule" not in str(sr)  # the negative class names nothing in the SR
    finding_codes_are_standard(sr)
    # not reviewed: preliminary, partial, unverified, no review group, no verifier
    assert (sr.PreliminaryFlag, sr.CompletionFlag, sr.VerificationFlag) == (
        "PRELIMINARY",
        "PARTIAL",
        "UNVERIFIED",
    )
    assert "VerifyingObserverSequence" not in sr and list(groups(sr)) == [f"AI result {rid}"]
    assert "UNVERIFIED" in sr.SeriesDescription
    procedure = item_named(sr, "121058", "DCM")  # Procedure reported
    assert code_of(procedure) == ("399208008", "SCT")  # Plain chest X-ray


def test_positive_uncalibrated_result(store: ReviewStore, users: dict, tmp_path: Path) -> None:
    case = store.create_case(users["alice"], tiny_scan("DX")).case_id
    rid = record(store, users["alice"], case, 0.83, calibrated=False)
    group = groups(export(store, users["alice"], case, tmp_path))[f"AI result {rid}"]
    assert number_of(item_named(group, *PROBABILITY)) == pytest.approx(0.83)
    assert code_of(item_named(group, *NODULE)) == PRESENT
    assert code_of(item_named(group, *CALIBRATED)) == NO
    params = [i.TextValue for i in items_named(group, "111002", "DCM")]  # Algorithm Parameters
    assert "probability calibrated: no" in params


def test_result_without_operating_point_has_no_decision(
    store: ReviewStore, users: dict, tmp_path: Path
) -> None:
    """No operating point: the probability of the positive class, no threshold, no
    decision, calibration not recorded = Undetermined."""
    case = store.create_case(users["alice"], tiny_scan("CR")).case_id
    rid = record(store, users["alice"], case, 0.31, threshold=None, calibrated=None)
    group = groups(export(store, users["alice"], case, tmp_path))[f"AI result {rid}"]
    assert number_of(item_named(group, *PROBABILITY)) == pytest.approx(0.31)
    assert items_named(group, *THRESHOLD) == [] and items_named(group, *NODULE) == []
    assert code_of(item_named(group, *CALIBRATED)) == UNDETERMINED


def test_warn_result_keeps_its_caution(store: ReviewStore, users: dict, tmp_path: Path) -> None:
    case = store.create_case(users["alice"], tiny_scan("CR")).case_id
    reasons = ("intensity histogram far from the training data", "unusual view position")
    rid = record(store, users["alice"], case, 0.7, domain="warn", reasons=reasons)
    sr = export(store, users["alice"], case, tmp_path)
    caution = item_named(groups(sr)[f"AI result {rid}"], *CAUTION).TextValue
    assert caution.startswith("CAUTION") and all(r in caution for r in reasons)
    assert "CAUTION" in sr.SeriesDescription
    assert "99MEDTL" in declared_schemes(sr)


def test_reviewed_result_carries_verdict_comment_mark_and_verifier(
    store: ReviewStore, users: dict, tmp_path: Path
) -> None:
    alice = users["alice"]
    case = store.create_case(alice, tiny_scan("CR")).case_id
    rid = record(store, alice, case, 0.537)
    review = store.submit_review(
        alice, case, "disagree", x=3, y=4, comment="nodule right apex", prediction_id=rid
    )
    sr = export(store, alice, case, tmp_path)
    assert (sr.PreliminaryFlag, sr.CompletionFlag, sr.VerificationFlag) == (
        "FINAL",
        "COMPLETE",
        "VERIFIED",
    )
    (observer,) = sr.VerifyingObserverSequence
    assert observer.VerifyingObserverName.family_name == "alice"
    (ident,) = observer.VerifyingObserverIdentificationCodeSequence
    assert (ident.CodeValue, ident.CodingSchemeDesignator) == (str(alice.id), "99MEDTLUSR")
    assert {"99MEDTL", "99MEDTLUSR"} <= declared_schemes(sr)
    group = groups(sr)[f"Clinician review {review.id}"]
    assert code_of(item_named(group, *CONFIRMED)) == NO  # disagree
    assert item_named(group, "121106", "DCM").TextValue == "nodule right apex"
    assert code_of(item_named(group, "121071", "DCM")) == NODULE
    region = item_named(group, "111030", "DCM")  # Image Region
    assert region.GraphicType == "POINT" and list(region.GraphicData) == [3.5, 4.5]
    (source,) = case_sources(store, store.get_images(case)[0])
    ref = region.ContentSequence[0].ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID
    person = item_named(sr, "121008", "DCM")  # Person Observer Name
    assert person.PersonName.family_name == "alice"
    finding_codes_are_standard(sr)


def test_verdicts_map_to_yes_no_undetermined(
    store: ReviewStore, users: dict, tmp_path: Path
) -> None:
    case = store.create_case(users["alice"], tiny_scan("CR")).case_id
    rid = record(store, users["alice"], case, 0.9)
    for user, verdict, expected in (("alice", "agree", YES), ("bob", "uncertain", UNDETERMINED)):
        review = store.submit_review(users[user], case, verdict, prediction_id=rid)
        sr = export(store, users["rita"], case, tmp_path)  # a researcher sees every review
        group = groups(sr)[f"Clinician review {review.id}"]
        assert code_of(item_named(group, *CONFIRMED)) == expected
        assert items_named(group, "111030", "DCM") == []  # no mark


def test_blinded_clinician_exports_no_other_readers_verdict(
    store: ReviewStore, users: dict, tmp_path: Path
) -> None:
    case = store.create_case(users["alice"], tiny_scan("CR")).case_id
    record(store, users["alice"], case, 0.9)
    store.submit_review(users["alice"], case, "agree")
    assert export(store, users["alice"], case, tmp_path).VerificationFlag == "VERIFIED"
    assert export(store, users["bob"], case, tmp_path).VerificationFlag == "UNVERIFIED"


def test_review_of_an_earlier_result_is_not_carried_by_a_new_one(
    store: ReviewStore, users: dict, tmp_path: Path
) -> None:
    alice = users["alice"]
    case = store.create_case(alice, tiny_scan("CR")).case_id
    first = record(store, alice, case, 0.9)
    store.submit_review(alice, case, "agree", prediction_id=first)
    second = record(store, alice, case, 0.2)
    sr = export(store, alice, case, tmp_path)
    assert sr.VerificationFlag == "UNVERIFIED" and list(groups(sr)) == [f"AI result {second}"]
    path = store.export_sr(alice, case, tmp_path / "first.dcm", prediction_id=first)
    assert pydicom.dcmread(path).VerificationFlag == "VERIFIED"


def insert_refused_result(store: ReviewStore, case_id: str) -> int:
    """A refused result as databases written before refusals were final still hold it
    (the store now declines to record one)."""
    from sqlalchemy import select

    from medtl.review.models import Case, Prediction

    details = PredictionDetails(
        domain="refuse", domain_reasons=["MRI, not a radiograph"], labels=["no nodule", "nodule"]
    )

    def work(session: object) -> int:
        case_pk = session.scalar(select(Case.id).where(Case.case_id == case_id))  # type: ignore[attr-defined]
        row = Prediction(
            case_pk=case_pk,
            model_name="cxr-nodule",
            model_version="1.0",
            label="unknown",
            probability=0.0,
            details=details.model_dump(mode="json"),
            created_at=store.db.now(),
        )
        session.add(row)  # type: ignore[attr-defined]
        session.flush()  # type: ignore[attr-defined]
        return int(row.id)

    return store.db.write(work, what="legacy result")


def test_refused_result_is_never_an_sr(store: ReviewStore, users: dict, tmp_path: Path) -> None:
    case = store.create_case(users["alice"], tiny_scan("MR")).case_id
    insert_refused_result(store, case)
    with pytest.raises(RefusedResultError, match=r"refused by the model's domain guard.*MRI"):
        store.export_sr(users["alice"], case, tmp_path)
    assert list(tmp_path.glob("*.dcm")) == []


def test_multiclass_lobe_result_names_the_lobe_and_its_side(
    store: ReviewStore, users: dict, tmp_path: Path
) -> None:
    labels = ("left_upper_lobe", "left_lower_lobe", "right_upper_lobe", "right_lower_lobe")
    case = store.create_case(users["alice"], tiny_scan("CT")).case_id
    details = PredictionDetails(calibrated=True, labels=list(labels))
    store.record_prediction(
        users["alice"],
        case,
        model_name="ct-lobes",
        model_version="2",
        label="right_upper_lobe",
        probability=0.66,
        details=details,
    )
    sr = export(store, users["alice"], case, tmp_path)
    (group,) = groups(sr).values()
    assert code_of(item_named(group, "121071", "DCM")) == ("45653009", "SCT")  # upper lobe
    site = item_named(group, "363698007", "SCT")
    assert code_of(site) == ("45653009", "SCT")
    assert code_of(item_named(site, "272741003", "SCT")) == ("24028007", "SCT")  # Right
    assert number_of(item_named(group, *PROBABILITY)) == pytest.approx(0.66)
    assert code_of(item_named(sr, "121058", "DCM")) == ("169069000", "SCT")  # CT of chest


def test_label_without_standard_code_falls_back_to_a_declared_private_code(
    store: ReviewStore, users: dict, tmp_path: Path
) -> None:
    case = store.create_case(users["alice"], tiny_scan("CT")).case_id
    record(store, users["alice"], case, 0.8, labels=("other", "back_muscle"))
    sr = export(store, users["alice"], case, tmp_path)
    (group,) = groups(sr).values()
    finding = item_named(group, "121071", "DCM").ConceptCodeSequence[0]
    assert (finding.CodeValue, finding.CodingSchemeDesignator) == ("BACKMUSCLE", "99MEDTL")
    assert finding.CodeMeaning == "back_muscle" and "99MEDTL" in declared_schemes(sr)
    assert code_of(item_named(sr, "121058", "DCM")) == ("25045-6", "LN")  # CT, body unknown


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def test_export_of_an_upload_png_case(store: ReviewStore, users: dict, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    scan = load_scan(_png(rng.integers(0, 255, (48, 40), dtype=np.uint8)))
    case = store.create_case(users["alice"], scan).case_id
    rid = record(store, users["alice"], case, 0.4)
    store.submit_review(users["alice"], case, "agree", x=39, y=47, prediction_id=rid)
    sr = export(store, users["alice"], case, tmp_path)
    assert sr.PatientID == case and sr.PatientName.family_name == case
    assert sr.PatientIdentityRemoved == "YES"
    (source,) = case_sources(store, store.get_images(case)[0])
    refs = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert refs.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert refs.ReferencedSOPSequence[0].ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert sr.StudyInstanceUID == source.StudyInstanceUID
    again = export(store, users["alice"], case, tmp_path)  # the same SR, the same UIDs
    assert (again.SOPInstanceUID, again.StudyInstanceUID) == (
        sr.SOPInstanceUID,
        sr.StudyInstanceUID,
    )


def test_export_of_an_upload_dicom_case_holds_no_original_identifier(
    store: ReviewStore, users: dict, tmp_path: Path
) -> None:
    original = dicom_dataset()
    scan = load_scan(to_bytes(original))  # what the upload page stores: a de-identified scan
    case = store.create_case(users["alice"], scan).case_id
    record(store, users["alice"], case, 0.7)
    store.submit_review(users["alice"], case, "agree", comment="ok")
    path = store.export_sr(users["alice"], case, tmp_path)
    assert dciodvfy(path).errors == []
    raw = path.read_bytes()
    originals = [PATIENT_NAME, PATIENT_ID, "ACC778899", "House^Gregory", "St Example Hospital"]
    originals += [str(original.StudyInstanceUID), str(original.SeriesInstanceUID)]
    originals += [str(original.SOPInstanceUID), "20240115"]
    for secret in originals:
        assert secret.encode() not in raw, secret
    assert pydicom.dcmread(path).PatientID == case


def test_export_of_a_de_identified_dicom_file_references_that_file(
    store: ReviewStore, users: dict, tmp_path: Path
) -> None:
    source = deidentify(dicom_dataset(), key=b"k" * 32)
    case = store.create_case(users["alice"], to_bytes(source)).case_id
    record(store, users["alice"], case, 0.91)
    # the de-identified file's one-component pseudonym is copied as it is (the SR and the
    # image it references name the same patient)
    sr = export(store, users["alice"], case, tmp_path, "Retired Person Name form")
    assert "^" not in str(source.PatientName)
    assert sr.PatientID == source.PatientID and sr.StudyInstanceUID == source.StudyInstanceUID
    ref = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert ref.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert store.audit_log(None, action="export")[-1].details == {
        "format": "dicom-sr",
        "prediction_id": 1,
    }


def test_mark_on_a_volume_references_the_marked_slice(
    store: ReviewStore, users: dict, tmp_path: Path
) -> None:
    volume = np.random.default_rng(4).integers(0, 400, (5, 12, 10)).astype(np.int16)
    folder = tmp_path / "series"
    folder.mkdir()
    for k, ds in enumerate(ct_series(volume, spacing=(2.0, 0.7, 0.7))):
        ds.save_as(folder / f"{k}.dcm", enforce_file_format=True)
    case = store.create_case(users["alice"], load_scan(folder)).case_id
    rid = record(store, users["alice"], case, 0.75)
    review = store.submit_review(
        users["alice"], case, "agree", x=2, y=7, slice_index=3, prediction_id=rid
    )
    sr = export(store, users["alice"], case, tmp_path)
    sources = case_sources(store, store.get_images(case)[0])
    assert len(sources) == 5
    region = item_named(groups(sr)[f"Clinician review {review.id}"], "111030", "DCM")
    ref = region.ContentSequence[0].ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == sources[3].SOPInstanceUID
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert len(evidence.ReferencedSOPSequence) == 5


def test_export_needs_a_result(store: ReviewStore, users: dict, tmp_path: Path) -> None:
    case = store.create_case(users["alice"], tiny_scan()).case_id
    with pytest.raises(ValueError, match="no AI result"):
        store.export_sr(users["alice"], case, tmp_path)
    record(store, users["alice"], case, 0.5)
    with pytest.raises(ValueError, match="does not belong"):
        store.export_sr(users["alice"], case, tmp_path, prediction_id=999)


def test_cli_export_sr(store: ReviewStore, users: dict, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medtl.cli import app

    case = store.create_case(users["alice"], tiny_scan("CR")).case_id
    first = record(store, users["alice"], case, 0.2)
    record(store, users["alice"], case, 0.9)
    url = store.db.engine.url.render_as_string(hide_password=False)
    out = tmp_path / "cli.dcm"
    args = ["reviews", "export-sr", case, str(out), "--result", str(first), "--db", url]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (group,) = groups(pydicom.dcmread(out)).values()
    assert number_of(item_named(group, *PROBABILITY)) == pytest.approx(0.2)
    result = CliRunner().invoke(
        app, ["reviews", "export-sr", "CASE-00000000", str(out), "--db", url]
    )
    assert result.exit_code == 2 and "error:" in result.output
