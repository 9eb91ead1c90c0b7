"""Worklist and case review through AppTest: filters, views recorded, reviews saved with the
reader, kept across an app restart, several readers with agreement for admins, and a busy
database that keeps the form."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import streamlit as st

from medtl.artifacts import PredictionDetails
from medtl.io import load_scan
from medtl.review import ReviewStore

from .helpers import dicom_bytes, errors, new_app, page_text, seed_case, sign_in


def open_case(at, case_id: str):
    at.session_state["medtl_case_id"] = case_id
    return at.switch_page("pages/case_review.py").run()


def fill_review(at, case_id: str, decision: str, comment: str, x=10, y=20):
    at.radio(key=f"rv_decision_{case_id}").set_value(decision)
    at.checkbox(key=f"rv_mark_{case_id}").check()
    at.number_input(key=f"rv_x_{case_id}").set_value(x)
    at.number_input(key=f"rv_y_{case_id}").set_value(y)
    at.text_area(key=f"rv_comment_{case_id}").input(comment)
    return at


def submit(at, case_id: str):
    return at.button(key=f"FormSubmitter:review_form_{case_id}-Save review").click().run()


def test_worklist_filters_and_opening_records_a_view(app_home) -> None:
    older, newer = seed_case(0), seed_case(1)
    at = sign_in(new_app().run(), "alice")
    at.switch_page("pages/worklist.py").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["Case"]) == [older, newer]  # oldest first
    assert list(table["Status"]) == ["Awaiting review", "Awaiting review"]
    assert list(table["AI result"]) == ["nodule (73%)", "nodule (73%)"]
    today = datetime.now(UTC).date()
    at.date_input(key="wl_dates").set_value((today - timedelta(days=9), today - timedelta(days=2)))
    assert "No cases match these filters." in page_text(at.run())
    at.date_input(key="wl_dates").set_value((today, today))
    assert len(at.run().dataframe[0].value) == 2
    at.multiselect(key="wl_status").set_value(["agreed"]).run()
    assert "No cases match these filters." in page_text(at)
    at.multiselect(key="wl_status").set_value(["awaiting_review"])
    at.selectbox(key="wl_model").set_value("tinycxr").run()
    assert len(at.dataframe[0].value) == 2
    at.selectbox(key="wl_open_choice").set_value(newer)
    at.button(key="wl_open").click().run()
    assert [t.value for t in at.title] == ["Case review"]
    assert f"Case **{newer}**" in page_text(at)
    at.run()  # reruns do not record more views
    with ReviewStore.open() as store:
        views = store.audit_log(None, action="view", case_id=newer)
    assert [(v.username, v.case_id) for v in views] == [("alice", newer)]


def test_review_is_saved_and_survives_an_app_restart(app_home) -> None:
    case_id = seed_case()
    at = open_case(sign_in(new_app().run(), "alice"), case_id)
    assert at.metric[0].value == "73%"
    fill_review(at, case_id, "disagree", "Nodule is a nipple shadow.", x=12, y=40)
    submit(at, case_id)
    assert not at.exception and errors(at) == []
    assert f"Review saved for case {case_id}: disagree." in page_text(at)
    assert "status: **disagreed**" in page_text(at)

    st.cache_resource.clear()  # the server restarts: a new process, the same database file
    again = open_case(sign_in(new_app().run(), "alice"), case_id)
    rows = again.dataframe[0].value
    assert list(rows["Reader"]) == ["alice"]
    assert list(rows["Decision"]) == ["disagree"]
    assert list(rows["Comment"]) == ["Nodule is a nipple shadow."]
    assert list(rows["Location (x, y, slice)"]) == ["12, 40"]
    with ReviewStore.open() as store:
        [review] = store.open_case(None, case_id).reviews
    assert (review.reader, review.decision, review.x, review.y) == ("alice", "disagree", 12, 40)


def test_resubmitting_the_same_form_saves_one_review(app_home) -> None:
    case_id = seed_case()
    at = open_case(sign_in(new_app().run(), "alice"), case_id)
    first = at.session_state[f"medtl_submission_{case_id}"]
    submit(fill_review(at, case_id, "agree", "ok"), case_id)
    assert at.session_state[f"medtl_submission_{case_id}"] != first  # a new form, a new ID
    with ReviewStore.open() as store:
        assert [r.submission_id for r in store.open_case(None, case_id).reviews] == [first]


def test_busy_database_keeps_the_form(app_home, monkeypatch) -> None:
    monkeypatch.setenv("MEDTL_APP_DB_BUSY_TIMEOUT_MS", "50")
    monkeypatch.setenv("MEDTL_APP_DB_RETRIES", "2")
    case_id = seed_case()
    at = open_case(sign_in(new_app().run(), "alice"), case_id)
    fill_review(at, case_id, "uncertain", "Check the lateral view.")
    locker = sqlite3.connect(app_home / "db" / "review.sqlite", timeout=0.1)
    try:
        locker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        submit(at, case_id)
    finally:
        locker.rollback()
        locker.close()
    assert not at.exception
    assert errors(at) == [
        "The database is busy and nothing was saved. Your entries are kept: wait a moment "
        "and press the button again."
    ]
    assert at.text_area(key=f"rv_comment_{case_id}").value == "Check the lateral view."
    assert at.radio(key=f"rv_decision_{case_id}").value == "uncertain"
    with ReviewStore.open() as store:
        assert store.open_case(None, case_id).reviews == []
    submit(at, case_id)  # the lock is gone: the same form now saves
    assert errors(at) == []
    with ReviewStore.open() as store:
        [review] = store.open_case(None, case_id).reviews
    assert (review.decision, review.comment) == ("uncertain", "Check the lateral view.")


def test_several_readers_blinded_and_agreement_for_admins(app_home) -> None:
    case_id = seed_case()
    alice = open_case(sign_in(new_app().run(), "alice"), case_id)
    submit(fill_review(alice, case_id, "agree", "seen"), case_id)
    bob = open_case(sign_in(new_app().run(), "bob"), case_id)
    assert not bob.dataframe  # bob does not see alice's review (blinded reading)
    submit(fill_review(bob, case_id, "disagree", "artefact"), case_id)
    assert list(bob.dataframe[0].value["Reader"]) == ["bob"]
    admin = open_case(sign_in(new_app().run(), "adam"), case_id)
    rows = admin.dataframe[0].value
    assert sorted(zip(rows["Reader"], rows["Decision"], strict=True)) == [
        ("alice", "agree"),
        ("bob", "disagree"),
    ]
    assert "Reader agreement on this case: 0% of reader pairs agree" in page_text(admin)
    assert "status: **disagreed**" in page_text(admin)
    researcher = open_case(sign_in(new_app().run(), "rita"), case_id)
    assert "Reader agreement on this case: 0% of reader pairs agree" in page_text(researcher)
    assert "Reader agreement" not in page_text(bob)  # clinicians: never


def test_researcher_reads_but_cannot_review(app_home) -> None:
    case_id = seed_case()
    at = open_case(sign_in(new_app().run(), "rita"), case_id)
    assert not at.exception
    assert "Researchers can read cases but not review them." in page_text(at)
    assert not [b for b in at.button if b.key and "review_form" in b.key]


@pytest.mark.parametrize("missing", ["CASE-0123456789"])
def test_unknown_case_is_a_clear_message(app_home, missing) -> None:
    seed_case()
    at = open_case(sign_in(new_app().run(), "alice"), missing)
    assert not at.exception
    assert errors(at) == [f"no case {missing!r}"]


def test_case_review_heat_map_on_request(app_home) -> None:
    from medtl.inference import Predictor

    case_id = seed_case(seed=12, probability=0.5)
    scan = load_scan(dicom_bytes(seed=12))  # the same bytes seed_case uploaded
    at = open_case(sign_in(new_app().run(), "alice"), case_id)
    assert not [t for t in at.toggle if t.key == f"cr_view_{case_id}_heat"]
    [pred_id] = [int(t.key.rsplit("_", 1)[1]) for t in at.toggle if t.key.startswith("cr_heat_")]
    at.toggle(key=f"cr_heat_{pred_id}").set_value(True).run()
    assert not at.exception
    assert at.toggle(key=f"cr_view_{case_id}_heat").value is True
    expected = Predictor.from_package("tinycxr").predict(scan).heatmap
    [(key, heat)] = at.session_state["medtl_case_heat"].items()
    assert key == (case_id, pred_id)
    assert heat.shape == scan.shape
    np.testing.assert_allclose(heat, np.asarray(expected), atol=1e-5)


def test_blinded_second_reader_sees_no_verdict_status_or_count(app_home) -> None:
    """Issue 15 finding 4: bob, who has not read the case, learns nothing of alice's verdict."""
    case_id = seed_case()
    alice = open_case(sign_in(new_app().run(), "alice"), case_id)
    submit(fill_review(alice, case_id, "disagree", "artefact"), case_id)
    bob = sign_in(new_app().run(), "bob")
    bob.switch_page("pages/worklist.py").run()
    bob.multiselect(key="wl_status").set_value(["disagreed"]).run()
    assert "No cases match these filters." in page_text(bob)  # the filter leaks nothing
    bob.multiselect(key="wl_status").set_value(["awaiting_review"]).run()
    [row] = bob.dataframe[0].value.to_dict("records")
    assert (row["Case"], row["Status"], row["Readers"]) == (case_id, "Awaiting review", "")
    open_case(bob, case_id)
    text = page_text(bob)
    assert "status: **awaiting your review**" in text
    assert "disagree" not in text.lower().replace("disagree with the ai", "")
    submit(fill_review(bob, case_id, "agree", "fine"), case_id)
    assert "status: **disagreed**" in page_text(bob)  # after his own review: the case status


def test_closing_a_case_frees_its_arrays(app_home) -> None:
    first, second = seed_case(seed=14, probability=0.5), seed_case(seed=15, probability=0.5)
    at = open_case(sign_in(new_app().run(), "alice"), first)
    [toggle] = [t for t in at.toggle if t.key.startswith("cr_heat_")]
    toggle.set_value(True).run()
    assert [k[0] for k in at.session_state["medtl_case_heat"]] == [first]
    at.selectbox(key="cr_case").set_value(second).run()  # open the other case
    assert not at.exception
    assert list(at.session_state["medtl_case_details"]) == [second]
    assert all(k[0] != first for k in at.session_state["medtl_case_heat"])


def test_save_clicked_twice_stores_one_review(app_home) -> None:
    """Issue 18: the form kept its answers and a second click stored an identical review."""
    case_id = seed_case()
    at = open_case(sign_in(new_app().run(), "alice"), case_id)
    submit(fill_review(at, case_id, "agree", "ok"), case_id)
    assert f"Review saved for case {case_id}: agree." in page_text(at)
    assert at.radio(key=f"rv_decision_{case_id}").value is None  # the form is emptied
    submit(at, case_id)  # the second click
    assert "Choose agree, disagree or uncertain before saving." in errors(at)
    with ReviewStore.open() as store:
        assert len(store.open_case(None, case_id).reviews) == 1


def test_a_new_result_reopens_the_case_page(app_home) -> None:
    case_id = seed_case()
    at = open_case(sign_in(new_app().run(), "alice"), case_id)
    submit(fill_review(at, case_id, "agree", "ok"), case_id)
    with ReviewStore.open() as store:
        alice = store.accounts.get_user("alice")
        first = store.open_case(None, case_id).predictions[0].id
        second = store.record_prediction(
            alice,
            case_id,
            model_name="tinycxr",
            model_version="1.1.0",
            label="no nodule",
            probability=0.21,
            threshold=0.5,
            details=PredictionDetails(labels=["no nodule", "nodule"], operating_point="youden"),
        ).id
    at.session_state["medtl_case_details"] = {}  # reopen the case: a fresh read
    at = open_case(at, case_id)
    text = page_text(at)
    assert "status: **awaiting your review**" in text
    assert f"AI result #{second}" in text
    assert [e.label for e in at.expander] == ["Earlier AI results (1)"]
    assert f"Your review of AI result #{second}" in text
    earlier, rows = (f.value for f in at.dataframe)
    assert list(earlier["Result"]) == [f"#{first}"]
    assert list(rows["AI result"]) == [f"#{first} tinycxr@1.0.0 (earlier)"]
    assert at.metric[0].value == "21%"


def test_export_sr_from_the_case_page(app_home) -> None:
    """The README's "DICOM SR of the AI result from the app": a one-time deferred download
    of the pseudonymous SR of the result on the page, with the reader's review."""
    import io

    import pydicom

    from app.components.exports import AlreadyServedError, case_sr

    case_id = seed_case()
    at = open_case(sign_in(new_app().run(), "alice"), case_id)
    submit(fill_review(at, case_id, "agree", "ok"), case_id)
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Export SR (DICOM)"]
    with ReviewStore.open() as store:
        alice = store.accounts.get_user("alice")
        pred = store.open_case(None, case_id).predictions[-1]
        download = case_sr(store, alice, case_id, pred.id)
        sr = pydicom.dcmread(io.BytesIO(download()))
        with pytest.raises(AlreadyServedError):
            download()
        exports = store.audit_log(None, action="export", case_id=case_id)
    assert sr.Modality == "SR" and sr.VerificationFlag == "VERIFIED"
    assert case_id in str(sr.PatientID) + str(sr.PatientName)
    assert [e.details["format"] for e in exports] == ["dicom-sr"]
