"""The app's PACS page (app/pages/pacs.py) through Streamlit's AppTest, against the real
Orthanc: search, analyse, review, send to PACS; identifiers shown, never stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.helpers import unescape
from tests.pacs.conftest import PHI_ACCESSION, PHI_ID, PHI_NAME, cheap_store, make_cr, make_ct
from tests.pacs.test_pacs import assert_no_phi, by_meaning, sr_in_study

PAGE = Path(__file__).resolve().parents[2] / "app" / "pages" / "pacs.py"
PW = "Qv7-plover-Tandem-91x"


@pytest.fixture
def page_env(pacs_env, packages):
    import streamlit as st

    from medtl.models.package import register_package

    register_package(packages["CR"])
    with cheap_store() as store:
        store.accounts.add_user("carol", PW, "clinician")
        user = store.accounts.get_user("carol")
    st.cache_resource.clear()
    yield user
    st.cache_resource.clear()


def _page(user):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.session_state["medtl_user"] = user
    return at.run()


def test_search_analyse_review_and_send(page_env, home, orthanc) -> None:
    from pydicom.uid import generate_uid

    cr = make_cr(generate_uid())
    cr.AccessionNumber = "ACC-PAGE-1"
    cr.StudyDate = "20190101"
    orthanc.upload(cr)
    study = str(cr.StudyInstanceUID)

    at = _page(page_env)
    assert not at.exception
    at.text_input(key="pacs_accession").input("ACC-PAGE-1")
    at.button(key="FormSubmitter:pacs_search-Search").click().run()
    table = at.dataframe[0].value
    assert list(table["Patient ID"]) == [PHI_ID] and list(table["Patient"]) == [PHI_NAME]
    assert at.selectbox(key="pacs_model").value == "pacs-cxr@1.2.0"
    at.button(key="pacs_analyse").click().run()
    assert not at.exception and not at.error
    assert "Case CASE" in at.success[0].value
    case_id = at.session_state["medtl_case_id"]

    at.button(key="pacs_push").click().run()  # nobody reviewed it: refused
    assert "no clinician has reviewed" in at.warning[0].value
    with cheap_store() as store:
        carol = store.accounts.sign_in("carol", PW).user
        store.submit_review(carol, case_id, "agree")
        actions = [(a.action, a.username) for a in store.audit_log(None, case_id=case_id)]
    assert ("upload", "carol") in actions and ("predict", "carol") in actions

    at.button(key="pacs_push").click().run()
    assert "is in the study" in at.success[0].value
    (sr,) = sr_in_study(orthanc, study)
    assert sr.PatientID == PHI_ID
    assert (
        by_meaning(sr, "AI result confirmed by clinician").ConceptCodeSequence[0].CodeMeaning
        == "Yes"  # agree
    )

    # analysed again: a new, unreviewed result reopens the case; the page preselects the
    # reviewed result for sending and says which result went
    first = at.selectbox(key=f"pacs_push_result_{case_id}").value.prediction_id
    at.button(key="pacs_analyse").click().run()
    box = at.selectbox(key=f"pacs_push_result_{case_id}")
    assert [o.split(" · ")[1] for o in box.options] == ["not reviewed", "reviewed"]
    assert box.value.prediction_id == first
    at.button(key="pacs_push").click().run()
    assert f"AI result #{first} (pacs-cxr@1.2.0)" in unescape(at.success[-1].value)
    from medtl.pacs.push import result_choices

    with cheap_store() as store:
        newest = result_choices(store, case_id)[0]
    box.set_value(newest).run()  # the new result: nobody reviewed it
    at.button(key="pacs_push").click().run()
    assert "no clinician has reviewed AI result" in at.warning[0].value
    assert_no_phi(
        home,
        [
            PHI_NAME,
            PHI_ID,
            PHI_ACCESSION,
            "ACC-PAGE-1",
            study,
            str(cr.SeriesInstanceUID),
            str(cr.SOPInstanceUID),
        ],
    )


def test_page_without_a_pacs_says_so(home, monkeypatch) -> None:
    import streamlit as st

    with cheap_store() as store:
        store.accounts.add_user("carol", PW, "clinician")
        user = store.accounts.get_user("carol")
    st.cache_resource.clear()
    at = _page(user)
    assert not at.exception
    assert "No PACS is configured" in at.info[0].value
    st.cache_resource.clear()


def test_model_box_preselects_a_model_for_the_picked_studys_modality(
    page_env, packages, home, orthanc
) -> None:
    from pydicom.uid import generate_uid

    from medtl.models.package import register_package

    register_package(packages["CT"])  # registered last: the newest, so a naive default
    # a patient of its own: other tests of the shared Orthanc query PHI_ID's studies
    cr = make_cr(generate_uid())
    ct = make_ct(generate_uid(), n=3)
    for ds in (cr, *ct):
        ds.PatientID, ds.PatientName = "PAGE-MOD-1", "Modality^Page"
        ds.AccessionNumber = "ACC-PAGE-MOD"
        ds.StudyDate = "20190102"
        orthanc.upload(ds)

    at = _page(page_env)
    at.text_input(key="pacs_accession").input("ACC-PAGE-MOD")
    at.button(key="FormSubmitter:pacs_search-Search").click().run()
    assert not at.exception
    by_modality = {
        "/".join(h["modalities"]): i for i, h in enumerate(at.session_state["pacs_hits"])
    }
    assert set(by_modality) == {"CR", "CT"}
    cr_model, ct_model = "pacs-cxr@1.2.0", "pacs-ct@0.3.1"
    assert set(at.selectbox(key="pacs_model").options) == {cr_model, ct_model}
    at.selectbox(key="pacs_pick").set_value(by_modality["CR"]).run()
    assert at.selectbox(key="pacs_model").value == cr_model
    at.selectbox(key="pacs_pick").set_value(by_modality["CT"]).run()
    assert at.selectbox(key="pacs_model").value == ct_model
    # the clinician's own choice stands while the same study stays picked
    at.selectbox(key="pacs_model").set_value(cr_model).run()
    assert at.selectbox(key="pacs_model").value == cr_model
