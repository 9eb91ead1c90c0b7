"""The PACS page in a real browser (Debian's chromium via Playwright) against the real
Orthanc of the PACS tests: a clinician searches, analyses a study, reviews the case, sends
the result into the study, then reloads the page and is still signed in. Afterwards the SR
is read back over DICOMweb and MEDTL_HOME is swept for the patient's identifiers."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.app.helpers import serving_app, sign_in_browser
from tests.pacs.conftest import PHI_ACCESSION, PHI_ID, PHI_NAME, cheap_store, make_cr
from tests.pacs.test_pacs import assert_no_phi, by_meaning, sr_in_study

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PW = "Qv7-plover-Tandem-91x"
ACCESSION = "ACC-BRW-PACS-1"


@pytest.fixture
def app_url(pacs_env, packages, home, tmp_path):
    """The app (``streamlit run app/main.py``) pointed at the test Orthanc, a registered
    CR model and a clinician."""
    if not CHROMIUM.is_file():
        pytest.skip("/usr/bin/chromium is missing (apt-get install chromium chromium-driver)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    from medtl.models.package import register_package

    register_package(packages["CR"])
    with cheap_store() as store:
        store.accounts.add_user("carol", PW, "clinician")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MEDTL_PACS_")},
        **pacs_env,
        "MEDTL_HOME": str(home),
    }
    with serving_app(tmp_path, env, timeout=120, address="127.0.0.1") as url:
        yield url


def test_search_analyse_review_send_then_reload_signed_in(app_url, orthanc, home) -> None:
    from playwright.sync_api import expect, sync_playwright
    from pydicom.uid import generate_uid

    cr = make_cr(generate_uid())
    cr.AccessionNumber = ACCESSION
    cr.StudyDate = "20190101"  # before the dates other tests of the shared Orthanc query
    orthanc.upload(cr)
    study = str(cr.StudyInstanceUID)

    expect.set_options(timeout=90_000)  # a loaded 2-core machine: the model import is slow
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(90_000)
            page.goto(app_url)
            sign_in_browser(page, "carol", PW)
            expect(page.get_by_role("heading", name="Upload and analyse")).to_be_visible()

            page.get_by_role("link", name="PACS").click()
            expect(page.get_by_role("heading", name="PACS", exact=True)).to_be_visible()
            page.get_by_role("textbox", name="Accession number").fill(ACCESSION)
            page.get_by_role("button", name="Search").click()
            # identifiers are shown to the signed-in clinician (they pick the patient)
            study_box = page.get_by_role("combobox", name="Study")
            expect(study_box).to_have_value(re.compile(re.escape(PHI_ID)))
            page.get_by_role("button", name="Analyse").click()
            expect(page.get_by_text("Case CASE-").first).to_be_visible()

            page.get_by_role("link", name="Case review").click()
            expect(page.get_by_role("heading", name="Case review")).to_be_visible()
            page.get_by_text("Disagree with the AI", exact=True).click()
            page.get_by_role("button", name="Save review").click()
            expect(page.get_by_text("Review saved for case")).to_be_visible()

            page.get_by_role("link", name="PACS").click()
            page.get_by_role("button", name="Send to PACS").click()
            expect(page.get_by_text("is in the study")).to_be_visible()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "app_pacs_sent.png"), full_page=True)

            page.reload()  # a server-side session the browser presents again
            expect(page.get_by_role("heading", name="PACS", exact=True)).to_be_visible()
            expect(page.get_by_text("Signed in as")).to_be_visible()
            expect(page.get_by_role("textbox", name="Password")).to_have_count(0)
        finally:
            browser.close()

    (sr,) = sr_in_study(orthanc, study)
    assert sr.PatientID == PHI_ID and sr.StudyInstanceUID == study
    verdict = by_meaning(sr, "AI result confirmed by clinician").ConceptCodeSequence[0]
    assert verdict.CodeMeaning == "No"  # disagree
    with cheap_store() as store:
        (case,) = store.worklist(None)
        actions = [(a.action, a.username) for a in store.audit_log(None, case_id=case.case_id)]
    assert case.status == "disagreed"
    assert {("upload", "carol"), ("review", "carol"), ("export", "carol")} <= set(actions)
    assert_no_phi(
        home,
        [PHI_NAME, PHI_ID, PHI_ACCESSION, ACCESSION, study, str(cr.SOPInstanceUID)],
    )
