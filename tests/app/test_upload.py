"""Upload and analyse through AppTest: a real DICOM (with a patient name in its header)
goes through the uploader, is de-identified, analysed, shown with its result card and
saved as a pseudonymous case with its AI result."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest

from medtl.inference import Predictor
from medtl.io import load_scan
from medtl.review import ReviewStore

from .helpers import (
    PHI_ID,
    PHI_NAME,
    REPORT_MARKER,
    analyse,
    dicom_bytes,
    errors,
    inline_images,
    new_app,
    page_text,
    sign_in,
    upload,
)


@pytest.fixture
def clinician(app_home):
    return sign_in(new_app().run(), "alice")


def test_dicom_upload_shows_the_calibrated_result_and_saves_the_case(clinician) -> None:
    at = clinician
    content = dicom_bytes(seed=1)
    assert PHI_NAME.encode() in content  # the upload really carries PHI
    upload(at, content, name="upload.dcm")
    assert not at.exception and errors(at) == []
    assert "CR · DICOM · 64 x 64 · spacing 0.20 x 0.20 mm" in page_text(at)
    analyse(at)
    assert not at.exception and errors(at) == []

    # The very numbers of the Predictor on the same (de-identified) scan.
    expected = Predictor.from_package("tinycxr").predict(load_scan(content))
    percent = f"{100 * expected.probability:.0f}%"
    [metric] = at.metric
    assert (metric.label, metric.value) == ("Probability of nodule", percent)
    text = page_text(at)
    tenths = round(10 * expected.probability)
    assert (
        f"Estimated probability of nodule: {percent} — among validation cases with this "
        f"score, about {tenths} in 10 had nodule." in text
    )
    verdict = "POSITIVE" if expected.decision.positive else "negative"
    assert f"Decision at the 'youden' operating point (threshold 50%): **{verdict}**" in text
    assert "found 88% of positive validation cases (sensitivity)" in text
    assert "cleared 81% of negative ones (specificity)" in text
    assert "Model **tinycxr@1.0.0**" in text
    assert at.toggle(key="upload_viewer_heat").value is True  # heat map overlay on
    assert at.get("download_button")[0].label == "Download the validation report (HTML)"

    # No PHI anywhere in the page; only the pseudonymous case ID.
    for phi in (PHI_NAME, "ZYXWV", "QUENTIN", PHI_ID, "19580412"):
        assert phi not in text
    with ReviewStore.open() as store:
        [case] = store.worklist(None)
        assert case.status == "awaiting_review"
        assert case.case_id.startswith("CASE-") and f"case {case.case_id}" in text
        pred = case.latest_prediction
        assert (pred.model_name, pred.model_version) == ("tinycxr", "1.0.0")
        assert pred.probability == pytest.approx(expected.probability, abs=1e-6)
        assert pred.threshold == 0.5
        assert pred.label == expected.decision.label
        [image] = store.get_images(case.case_id)
        stored = store.load_image(image)
        assert np.array_equal(stored.array, load_scan(content).array)
        assert PHI_NAME not in str(stored.meta) and PHI_ID not in str(stored.meta)
        assert PHI_NAME.encode() not in image.path.read_bytes()

    # "Send to worklist" confirms and clears the upload for the next scan.
    at.button(key="send").click().run()
    assert f"Case {case.case_id} is in the worklist, awaiting review." in page_text(at)
    assert at.file_uploader[0].value is None
    assert at.metric.len == 0


def test_viewer_controls_change_the_picture(clinician) -> None:
    at = upload(clinician, dicom_bytes(seed=2, modality="CT"))
    assert not at.get("image")  # no st.image: nothing goes to the /media/ store
    [first] = inline_images(at)
    at.selectbox(key="upload_viewer_preset").set_value("bone").run()
    assert at.slider(key="upload_viewer_center_bone").value == 480.0
    assert at.slider(key="upload_viewer_width_bone").value == 2500.0
    at.slider(key="upload_viewer_zoom").set_value(2.0).run()
    assert at.slider(key="upload_viewer_cx").value == 50
    assert "zoom 2x" in page_text(at)
    assert inline_images(at) != [first]


def test_burned_in_annotation_warning(clinician) -> None:
    at = upload(clinician, dicom_bytes(seed=3, burned_in=True))
    assert any("Burned-in text may be present" in str(w.value) for w in at.warning)
    at2 = upload(clinician, dicom_bytes(seed=4, burned_in=False))
    assert not any("Burned-in" in str(w.value) for w in at2.warning)


def test_same_series_twice_adds_the_result_to_the_first_case(clinician) -> None:
    at = clinician
    content = dicom_bytes(seed=6)
    analyse(upload(at, content))
    at.button(key="send").click().run()
    ds = pydicom.dcmread(io.BytesIO(content))
    buf = io.BytesIO()
    ds.save_as(buf)  # same study and series, a fresh upload
    analyse(upload(at, buf.getvalue(), name="again.dcm"))
    with ReviewStore.open() as store:
        [case] = store.worklist(None)
        assert len(store.open_case(None, case.case_id).predictions) == 2
    assert f"This series was uploaded before as case {case.case_id}" in page_text(at)


def test_models_page_renders_card_and_report(clinician) -> None:
    at = clinician
    at.switch_page("pages/models_reports.py").run()
    assert not at.exception
    text = page_text(at)
    assert "tinycxr · version 1.0.0" in text
    assert "Test model: flags chest radiographs for a second look." in text
    assert "88%" in text and "81%" in text  # the operating point table
    assert not at.get("html")  # the report is never put into the page itself
    [frame] = [m.value for m in at.markdown if "<iframe" in m.value]
    assert frame.startswith('<iframe sandbox="" ') and "\n" not in frame
    assert REPORT_MARKER in frame and "<h1>" not in frame  # entity-encoded in srcdoc


def _nifti_volume_bytes() -> bytes:
    import gzip

    import nibabel as nib

    rng = np.random.default_rng(0)
    data = rng.normal(40, 10, (24, 20, 12)).astype(np.float32)  # x, y, z (RAS)
    img = nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.5, 1.0]))
    return gzip.compress(img.to_bytes())


def test_volume_viewer_and_refusal_of_a_2d_model(clinician) -> None:
    at = upload(clinician, _nifti_volume_bytes(), name="vol.nii.gz", mime="application/gzip")
    assert not at.exception and errors(at) == []
    assert "NIFTI · 12 x 20 x 24" in page_text(at)
    plane = at.radio(key="upload_viewer_view")
    assert plane.options == ["Axial", "Coronal", "Sagittal"]
    assert at.slider(key="upload_viewer_slice_axial").value == 6  # the middle of 12 slices
    plane.set_value("coronal").run()
    assert at.slider(key="upload_viewer_slice_coronal").max == 20
    assert "coronal slice 10 of 20" in page_text(at)

    analyse(at)  # a 2D chest radiograph model must not read a volume
    assert not at.exception
    refusal = [str(e.value) for e in at.error]
    assert len(refusal) == 1
    assert refusal[0].startswith("**Not analysed: this model was not made for this kind")
    assert at.metric.len == 0  # no probability is shown
    assert "Estimated probability" not in page_text(at)
    with ReviewStore.open() as store:
        assert store.worklist(None) == []  # nothing saved


def test_domain_warning_is_prominent_and_kept_with_the_result(clinician) -> None:
    at = analyse(upload(clinician, dicom_bytes(seed=13, spacing=3.0)))  # 3 mm pixels: odd
    assert not at.exception
    [caution] = [str(w.value) for w in at.warning]
    assert caution.startswith("**Caution: this scan is unlike the validation images")
    assert "3 mm" in caution or "3.0" in caution or "spacing" in caution.lower()
    assert at.metric[0].label == "Probability of nodule"  # a warning still shows the result
    with ReviewStore.open() as store:
        [case] = store.worklist(None)
    assert case.latest_prediction.details["domain"] == "warn"
    at.button(key="review_now").click().run()
    assert [t.value for t in at.title] == ["Case review"]
    assert any(str(w.value).startswith("Caution from the domain check:") for w in at.warning)
