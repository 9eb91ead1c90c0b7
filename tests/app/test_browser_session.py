"""Sessions in a real browser (Chromium via Playwright) against ``streamlit run``:

* issue 13, point 9: a reload keeps a clinician signed in (the browser presents the
  session cookie), sign-out revokes the session and a reload stays signed out, an expired
  session's cookie is refused;
* sign-in throttling per client: five wrong passwords from one address (behind a trusted
  proxy, as nginx reports it in X-Forwarded-For) do not stop the user at another address.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from .helpers import PASSWORD, cheap_hasher, make_package, serving_app, sign_in_browser
from .test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.browser
COOKIE = "medtl_session"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """The app behind a (pretend) trusted proxy at 127.0.0.1, with alice and bob."""
    if not CHROMIUM.is_file():
        pytest.skip("/usr/bin/chromium is missing (apt-get install chromium chromium-driver)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    from medtl.review import ReviewStore

    tmp = tmp_path_factory.mktemp("browser_session")
    home = tmp / "home"
    old = os.environ.get("MEDTL_HOME")
    os.environ["MEDTL_HOME"] = str(home)
    try:
        make_package(tmp / "pkg")
        with ReviewStore.open(
            f"sqlite:///{home / 'db' / 'review.sqlite'}", hasher=cheap_hasher()
        ) as s:
            s.accounts.add_user("alice", PASSWORD, "clinician")
            s.accounts.add_user("bob", PASSWORD, "clinician")
    finally:
        if old is None:
            os.environ.pop("MEDTL_HOME", None)
        else:
            os.environ["MEDTL_HOME"] = old
    env = {
        **os.environ,
        "MEDTL_HOME": str(home),
        "MEDTL_APP_TRUSTED_PROXIES": "127.0.0.1,::1",
    }
    env.pop("MEDTL_DATABASE_URL", None)
    with serving_app(tmp, env, address="127.0.0.1") as url:
        yield url, home / "db" / "review.sqlite"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=60_000)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _sign_in(page, name: str, password: str = PASSWORD) -> None:
    sign_in_browser(page, name, password)


def _query(db: Path, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


def _wait_for(predicate, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.2)


def _session_cookie(context) -> dict | None:
    return next((c for c in context.cookies() if c["name"] == COOKIE), None)


def test_reload_keeps_the_session_sign_out_ends_it_expired_is_refused(server, browser) -> None:
    from playwright.sync_api import expect

    url, db = server
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(url)
        _sign_in(page, "alice")
        expect(page.get_by_role("heading", name="Upload and analyse")).to_be_visible()
        _wait_for(lambda: _session_cookie(context) is not None, 30)
        cookie = _session_cookie(context)
        assert cookie["sameSite"] == "Strict" and cookie["path"] == "/"
        assert 7.9 * 3600 < cookie["expires"] - time.time() <= 8 * 3600 + 5
        [(method, revoked)] = _query(
            db, "SELECT method, revoked_at FROM user_sessions WHERE revoked_at IS NULL"
        )
        assert (method, revoked) == ("password", None)
        # Only the token's SHA-256 is in the database.
        assert _query(
            db, "SELECT COUNT(*) FROM user_sessions WHERE token_hash = ?", cookie["value"]
        ) == [(0,)]

        page.reload()  # a reload: a new Streamlit session, the same medtl session
        expect(page.get_by_role("heading", name="Upload and analyse")).to_be_visible()
        expect(page.get_by_text("Signed in as")).to_be_visible()
        second = context.new_page()  # a second tab too
        second.goto(url)
        expect(second.get_by_role("heading", name="Upload and analyse")).to_be_visible()
        second.close()
        assert _query(db, "SELECT COUNT(*) FROM user_sessions") == [(1,)]

        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_text("You have been signed out.")).to_be_visible()
        _wait_for(lambda: _session_cookie(context) is None, 30)  # the cookie is cleared
        assert _query(db, "SELECT COUNT(*) FROM user_sessions WHERE revoked_at IS NULL") == [(0,)]
        page.reload()
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        assert page.get_by_role("heading", name="Upload and analyse").count() == 0

        # The revoked token presented again (a copied cookie) signs nobody in.
        context.add_cookies([{**cookie}])
        page.reload()
        expect(page.get_by_text("Your session has expired")).to_be_visible()
        assert page.get_by_role("heading", name="Upload and analyse").count() == 0

        # An expired session is refused, and its cookie cleared.
        _sign_in(page, "alice")
        expect(page.get_by_role("heading", name="Upload and analyse")).to_be_visible()
        _wait_for(
            lambda: (_session_cookie(context) or {}).get("value") not in (None, cookie["value"]), 30
        )
        with sqlite3.connect(db) as conn:
            conn.execute(
                "UPDATE user_sessions SET expires_at = '2000-01-01 00:00:00.000000' "
                "WHERE revoked_at IS NULL"
            )
        page.reload()
        expect(page.get_by_text("Your session has expired")).to_be_visible()
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        _wait_for(lambda: _session_cookie(context) is None, 30)
    finally:
        context.close()


def test_failures_from_one_address_do_not_lock_out_another(server, browser) -> None:
    from playwright.sync_api import expect

    url, db = server

    def failures() -> int:
        return _query(db, "SELECT COUNT(*) FROM login_failures")[0][0]

    start = failures()
    outsider = browser.new_context(extra_http_headers={"X-Forwarded-For": "198.51.100.66"})
    clinician = browser.new_context(extra_http_headers={"X-Forwarded-For": "203.0.113.10"})
    try:
        page = outsider.new_page()
        page.set_default_timeout(60_000)
        page.goto(url)
        for i in range(5):
            _sign_in(page, "bob", "not bob's password")
            _wait_for(lambda i=i: failures() == start + i + 1)
        _sign_in(page, "bob")  # even the right password: this address backs off now
        expect(page.get_by_text("Too many failed sign-ins")).to_be_visible()
        assert page.get_by_role("heading", name="Upload and analyse").count() == 0

        mine = clinician.new_page()
        mine.set_default_timeout(60_000)
        mine.goto(url)
        _sign_in(mine, "bob")  # bob at his own desk gets in at once
        expect(mine.get_by_role("heading", name="Upload and analyse")).to_be_visible()
        hashes = _query(db, "SELECT DISTINCT client_hash FROM login_failures")
        assert len(hashes) == 1 and hashes[0][0] is not None
    finally:
        outsider.close()
        clinician.close()
