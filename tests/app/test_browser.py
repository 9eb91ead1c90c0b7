"""A real browser (Debian's chromium via Playwright) drives ``streamlit run app/main.py``:
sign in, upload a DICOM, wait for the result, submit a review, check the database.

A screenshot of the result page is saved as ``test-artifacts/app_result.png``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .helpers import (
    PASSWORD,
    PHI_ID,
    PHI_NAME,
    cheap_hasher,
    dicom_bytes,
    make_package,
    serving_app,
    sign_in_browser,
)

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.browser


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The app on a free localhost port, with its own MEDTL_HOME, a model and a user."""
    if not CHROMIUM.is_file():
        pytest.skip("/usr/bin/chromium is missing (apt-get install chromium chromium-driver)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    from medtl.review import ReviewStore

    home = tmp_path / "home"
    monkeypatch.setenv("MEDTL_HOME", str(home))
    monkeypatch.delenv("MEDTL_DATABASE_URL", raising=False)
    make_package(tmp_path / "pkg")
    with ReviewStore.open(hasher=cheap_hasher()) as store:
        store.accounts.add_user("alice", PASSWORD, "clinician")
    env = {**os.environ, "MEDTL_HOME": str(home), "MEDTL_APP_MAX_UPLOAD_MB": "20"}
    with serving_app(tmp_path, env, address="127.0.0.1") as url:
        yield url, home, tmp_path


def test_sign_in_upload_result_review_in_chromium(server) -> None:
    from playwright.sync_api import expect, sync_playwright

    from medtl.review import ReviewStore

    url, home, tmp = server
    scan = tmp / "chest.dcm"
    scan.write_bytes(dicom_bytes(seed=11))
    ARTIFACTS.mkdir(exist_ok=True)
    expect.set_options(timeout=60_000)  # a loaded 2-core CI machine: model import takes a while
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(url)
            sign_in_browser(page, "alice", PASSWORD)
            expect(page.get_by_role("heading", name="Upload and analyse")).to_be_visible()

            page.locator("input[type=file]").set_input_files(str(scan))
            page.get_by_role("button", name="Analyse").click()
            expect(page.get_by_text("Estimated probability of nodule")).to_be_visible()
            expect(page.get_by_text("Analysis complete")).to_be_visible()
            expect(page.get_by_test_id("stMetricValue")).to_be_visible()
            expect(page.locator("img.medtl-inline-image")).to_be_visible()  # inline data: PNG
            page.set_viewport_size({"width": 1400, "height": 1300})
            page.wait_for_timeout(800)  # let the image and the resized layout paint
            page.screenshot(path=str(ARTIFACTS / "app_result.png"), full_page=True)
            body = page.locator("body").inner_text()
            assert PHI_NAME not in body and PHI_ID not in body
            assert "Decision at the 'youden' operating point" in body

            page.get_by_role("button", name="Review it now").click()
            expect(page.get_by_role("heading", name="Case review")).to_be_visible()
            page.get_by_text("Agree with the AI", exact=True).click()
            page.get_by_role("textbox", name="Comment (optional)").fill("Seen in the browser test.")
            page.get_by_role("button", name="Save review").click()
            expect(page.get_by_text("Review saved for case")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "app_review.png"), full_page=True)
        finally:
            browser.close()

    with ReviewStore.open(f"sqlite:///{home / 'db' / 'review.sqlite'}") as store:
        [case] = store.worklist(None)
        [review] = store.open_case(None, case.case_id).reviews
    assert case.status == "agreed"
    assert (review.reader, review.decision, review.comment) == (
        "alice",
        "agree",
        "Seen in the browser test.",
    )
