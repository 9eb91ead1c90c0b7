"""Sign-in page and role-based routing through AppTest on a real SQLite review store."""

from __future__ import annotations

import pytest

from medtl.review import ReviewStore

from .helpers import PASSWORD, errors, new_app, page_text, sign_in


def _nav_titles(at) -> list[str]:
    """Titles of the pages the router registered (the sidebar navigation)."""
    return sorted(info["page_name"] for info in at._registered_pages.values())


def test_sign_in_success_shows_the_clinician_pages(app_home) -> None:
    at = new_app().run()
    assert not at.exception
    assert [t.value for t in at.title] == ["medtl · clinical AI review"]
    sign_in(at, "alice")
    assert not at.exception
    assert [t.value for t in at.title] == ["Upload and analyse"]
    assert "Signed in as **alice** (clinician)" in page_text(at)
    assert _nav_titles(at) == [
        "Case review",
        "Models and reports",
        "PACS",
        "Upload and analyse",
        "Worklist",
    ]


def test_wrong_password_is_rejected_then_rate_limited(app_home) -> None:
    at = new_app().run()
    for _ in range(5):
        sign_in(at, "alice", "not the password")
        assert errors(at) == ["Wrong user name or password."]
        assert [t.value for t in at.title] == ["medtl · clinical AI review"]
    sign_in(at, "alice", PASSWORD)  # right password, but the name is locked now
    assert len(errors(at)) == 1 and errors(at)[0].startswith("Too many failed sign-ins")
    assert [t.value for t in at.title] == ["medtl · clinical AI review"]
    assert "medtl_token" not in at.session_state


def test_roles_see_their_pages_only(app_home) -> None:
    researcher = sign_in(new_app().run(), "rita")
    assert _nav_titles(researcher) == ["Case review", "Models and reports", "Worklist"]
    assert [t.value for t in researcher.title] == ["Worklist"]
    admin = sign_in(new_app().run(), "adam")
    assert _nav_titles(admin) == [
        "Admin",
        "Case review",
        "Models and reports",
        "PACS",
        "Upload and analyse",
        "Worklist",
    ]
    # The admin page is not even registered for a researcher: no URL leads to it.
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        researcher.switch_page("pages/admin.py")


def test_revoked_session_signs_out_on_next_click(app_home) -> None:
    at = sign_in(new_app().run(), "alice")
    token = at.session_state["medtl_token"]
    with ReviewStore.open() as store:
        store.accounts.sign_out(token)  # e.g. expired, or revoked by an admin
    at.run()
    assert [t.value for t in at.title] == ["medtl · clinical AI review"]
    assert "Your session has expired; please sign in again." in page_text(at)


def test_disabled_account_is_signed_out(app_home) -> None:
    at = sign_in(new_app().run(), "alice")
    with ReviewStore.open() as store:
        store.accounts.set_active("alice", False)
    assert [t.value for t in at.run().title] == ["medtl · clinical AI review"]


def test_sign_out_button(app_home) -> None:
    at = sign_in(new_app().run(), "bob")
    at.sidebar.button(key="sign_out").click().run()
    assert [t.value for t in at.title] == ["medtl · clinical AI review"]
    assert "You have been signed out." in page_text(at)
    with ReviewStore.open() as store:
        actions = [e.action for e in store.audit_log(None, username="bob")]
    assert actions[-1] == "sign_out"


def test_single_sign_on_button_only_when_configured(app_home, monkeypatch) -> None:
    at = new_app().run()
    assert "Sign in with your organisation" not in page_text(at)
    monkeypatch.setenv("MEDTL_APP_OIDC", "true")
    at = new_app()
    at.secrets["auth"] = {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "x" * 32,
        "client_id": "medtl",
        "client_secret": "s",
        "server_metadata_url": "https://idp.example/.well-known/openid-configuration",
    }
    assert "Sign in with your organisation" in page_text(at.run())


def _oidc_app(monkeypatch, email: str):
    monkeypatch.setenv("MEDTL_APP_OIDC", "true")
    at = new_app()
    at.secrets["auth"] = {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "x" * 32,
        "client_id": "medtl",
        "client_secret": "s",
        "server_metadata_url": "https://idp.example/.well-known/openid-configuration",
    }
    at.user = {"is_logged_in": True, "email": email}
    return at


def test_single_sign_on_opens_an_audited_store_session(app_home, monkeypatch) -> None:
    import sqlite3

    at = _oidc_app(monkeypatch, "Alice@hospital.example").run()
    assert [t.value for t in at.title] == ["Upload and analyse"]
    token = at.session_state["medtl_token"]
    with ReviewStore.open() as store:
        assert store.accounts.validate_session(token).username == "alice"
        [event] = store.audit_log(None, action="sign_in", username="alice")
    assert event.details == {"method": "oidc", "via": "oidc"}
    at.run()  # the next click uses the same session
    with sqlite3.connect(app_home / "db" / "review.sqlite") as db:
        rows = db.execute("SELECT method, revoked_at FROM user_sessions").fetchall()
    assert rows == [("oidc", None)]

    at.sidebar.button(key="sign_out").click().run()
    with ReviewStore.open() as store:
        assert [e.action for e in store.audit_log(None, username="alice")][-1] == "sign_out"
    with sqlite3.connect(app_home / "db" / "review.sqlite") as db:
        [(revoked,)] = db.execute("SELECT revoked_at FROM user_sessions").fetchall()
    assert revoked is not None


def test_single_sign_on_without_a_local_account_opens_nothing(app_home, monkeypatch) -> None:
    at = _oidc_app(monkeypatch, "mallory@hospital.example").run()
    assert [t.value for t in at.title] == ["medtl · clinical AI review"]
    assert "has no active medtl account" in page_text(at)
    with ReviewStore.open() as store:
        assert store.audit_log(None, action="sign_in") == []
