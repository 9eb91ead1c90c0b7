"""Admin page through AppTest: add a user, change a role, disable an account, the audit
log with filters, and the CSV export download."""

from __future__ import annotations

import csv
import io

import pytest

from medtl.review import ReviewStore

from .helpers import PASSWORD, errors, new_app, page_text, seed_case, sign_in


def _admin_page(user: str = "adam"):
    at = sign_in(new_app().run(), user)
    return at.switch_page("pages/admin.py").run()


def _audit_table(at):
    [table] = [d.value for d in at.dataframe if "Action" in d.value.columns]
    return table


def test_add_user_change_role_and_disable(app_home) -> None:
    at = _admin_page()
    assert not at.exception
    at.text_input(key="adm_new_name").input("carol")
    at.text_input(key="adm_new_pw").input("short")
    at.button(key="FormSubmitter:add_user-Add user").click().run()
    [refused] = errors(at)
    assert refused.startswith("passwords need at least")  # the store's policy, shown as is
    at.text_input(key="adm_new_pw").input(PASSWORD)
    at.selectbox(key="adm_new_role").set_value("researcher")
    at.button(key="FormSubmitter:add_user-Add user").click().run()
    assert "User carol added (researcher)." in page_text(at)

    at.selectbox(key="adm_target").set_value("carol").run()
    at.selectbox(key="adm_role_carol").set_value("clinician").run()
    at.button(key="adm_set_role").click().run()
    assert "carol is now clinician." in page_text(at)
    at.selectbox(key="adm_target").set_value("carol").run()
    at.button(key="adm_toggle").click().run()
    assert "carol is disabled." in page_text(at)
    with ReviewStore.open() as store:
        carol = store.accounts.get_user("carol")
    assert (carol.role, carol.active) == ("clinician", False)
    # A disabled account cannot sign in.
    blocked = sign_in(new_app().run(), "carol")
    assert errors(blocked) == ["Wrong user name or password."]


def test_admin_cannot_disable_self(app_home) -> None:
    at = _admin_page()
    at.selectbox(key="adm_target").set_value("adam").run()
    assert at.button(key="adm_toggle").disabled


def test_audit_log_filters_and_csv_export(app_home) -> None:
    case_id = seed_case(seed=3, probability=0.6)
    with ReviewStore.open() as store:
        alice = store.accounts.get_user("alice")
        store.submit_review(alice, case_id, "agree", comment="fine")
    at = _admin_page()
    at.selectbox(key="adm_action").set_value("review").run()
    table = _audit_table(at)
    assert list(table["Action"]) == ["review"]
    assert list(table["User"]) == ["alice"] and list(table["Case"]) == [case_id]
    at.selectbox(key="adm_action").set_value("(any)")
    at.selectbox(key="adm_who").set_value("alice").run()
    assert set(_audit_table(at)["Action"]) == {"upload", "predict", "review"}

    [download] = at.get("download_button")
    assert download.label == "Download reviews.csv"
    with ReviewStore.open() as store:  # drawing the button prepared nothing
        assert store.audit_log(None, action="export") == []


def test_csv_export_is_built_on_request_and_served_once(app_home) -> None:
    from app.components.exports import AlreadyServedError, reviews_csv

    case_id = seed_case(seed=4, probability=0.6)
    with ReviewStore.open() as store:
        alice = store.accounts.get_user("alice")
        adam = store.accounts.get_user("adam")
        store.submit_review(alice, case_id, "agree", comment="fine")
        serve = reviews_csv(store, adam, include_comments=True)
        assert store.audit_log(None, action="export") == []  # nothing built yet
        body = serve().decode("utf-8")
        rows = list(csv.DictReader(io.StringIO(body)))
        assert [(r["case_id"], r["reader"], r["decision"]) for r in rows] == [
            (case_id, "alice", "agree")
        ]
        assert [e.username for e in store.audit_log(None, action="export")] == ["adam"]
        with pytest.raises(AlreadyServedError):
            serve()  # a replayed request for the same button gets nothing
        assert len(store.audit_log(None, action="export")) == 1


def test_non_admin_cannot_reach_admin_page(app_home) -> None:
    at = sign_in(new_app().run(), "alice")
    assert "Admin" not in [info["page_name"] for info in at._registered_pages.values()]


def test_unlock_clears_every_clients_failures_and_is_audited(app_home) -> None:
    locked = new_app().run()
    for _ in range(5):
        sign_in(locked, "alice", "not the password")
    sign_in(locked, "alice")  # the right password: this client is backing off now
    assert errors(locked)[0].startswith("Too many failed sign-ins")

    at = _admin_page()
    at.selectbox(key="adm_target").set_value("bob").run()
    assert at.button(key="adm_unlock").disabled  # nothing to clear for bob
    at.selectbox(key="adm_target").set_value("alice").run()
    assert "5 failed sign-in(s) in the last 60 min." in page_text(at)
    at.button(key="adm_unlock").click().run()
    assert "alice is unlocked (5 failed sign-in(s) cleared)." in page_text(at)
    assert at.button(key="adm_unlock").disabled
    with ReviewStore.open() as store:
        [event] = store.audit_log(None, action="user_unlock")
        assert store.accounts.failures("alice") == 0
    assert event.username == "adam" and event.details["target"] == "alice"

    sign_in(locked, "alice")  # the same browser gets in at once
    assert not errors(locked)
    assert [t.value for t in locked.title] == ["Upload and analyse"]


def test_open_sessions_are_listed_for_admins(app_home) -> None:
    sign_in(new_app().run(), "alice")
    at = _admin_page()
    [table] = [d.value for d in at.dataframe if "Signed in with" in d.value.columns]
    assert sorted(table["User"]) == ["adam", "alice"]
    assert set(table["Signed in with"]) == {"password"}
    assert "2 open session(s)" in page_text(at)
