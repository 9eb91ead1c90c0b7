"""Reviews belong to the AI result they judged (issue 18, point 2).

A new AI result on a case reopens it for the new result while the earlier result and its
reviews stay stored and labelled; a reader's queue, blinding and agreement follow the
current result; the same review saved twice in a row is one review; a refused scan is never
stored as a result.
"""

from __future__ import annotations

import pytest

from medtl.review.store import ReviewInputError, ReviewStore

from .conftest import tiny_scan


def _predict(store: ReviewStore, actor, case_id: str, version: str, p: float = 0.7) -> int:
    return store.record_prediction(
        actor,
        case_id,
        model_name="cxr-nodule",
        model_version=version,
        label="nodule",
        probability=p,
        threshold=0.5,
    ).id


def test_a_new_result_reopens_the_case_and_keeps_the_old_review(
    store: ReviewStore, users: dict
) -> None:
    alice, bob, root = users["alice"], users["bob"], users["root"]
    case_id = store.create_case(alice, tiny_scan()).case_id
    first = _predict(store, alice, case_id, "1.0")
    old = store.submit_review(alice, case_id, "agree", comment="fine")
    assert old.prediction_id == first
    assert store.get_case(case_id, viewer=None).status == "agreed"

    second = _predict(store, alice, case_id, "1.1", p=0.2)
    case = store.get_case(case_id, viewer=None)
    assert case.status == "awaiting_review" and case.readers == ()
    assert case.latest_prediction.id == second
    # alice's queue holds the case again; her earlier review is still there, labelled
    queue = store.worklist(root, not_reviewed_by="alice")
    assert [c.case_id for c in queue] == [case_id]
    assert store.worklist(root, status="agreed") == []
    detail = store.open_case(root, case_id)
    assert [(r.reader, r.prediction_id) for r in detail.reviews] == [("alice", first)]
    assert [p.id for p in detail.predictions] == [first, second]

    # blinded for the new result: alice sees her own earlier review, not bob's new one
    store.submit_review(bob, case_id, "disagree")
    mine = store.open_case(alice, case_id)
    assert [(r.reader, r.prediction_id) for r in mine.reviews] == [("alice", first)]
    assert store.get_case(case_id, viewer=alice).blinded

    new = store.submit_review(alice, case_id, "agree")
    assert new.prediction_id == second
    case = store.get_case(case_id, viewer=None)
    assert case.status == "disagreed" and case.readers == ("alice", "bob")
    agreement = {c.case_id: c for c in store.agreement(root).cases}
    assert agreement[case_id].counts == {"agree": 1, "disagree": 1, "uncertain": 0}


def test_a_review_of_the_earlier_result_does_not_close_the_new_one(
    store: ReviewStore, users: dict
) -> None:
    alice = users["alice"]
    case_id = store.create_case(alice, tiny_scan()).case_id
    first = _predict(store, alice, case_id, "1.0")
    _predict(store, alice, case_id, "1.1")
    late = store.submit_review(alice, case_id, "agree", prediction_id=first)
    assert late.prediction_id == first
    assert store.get_case(case_id, viewer=None).status == "awaiting_review"


def test_the_same_review_saved_twice_is_stored_once(store: ReviewStore, users: dict) -> None:
    alice, root = users["alice"], users["root"]
    case_id = store.create_case(alice, tiny_scan()).case_id
    _predict(store, alice, case_id, "1.0")
    kw = {"x": 3.0, "y": 2.0, "comment": "left base"}
    a = store.submit_review(alice, case_id, "agree", submission_id="click-1", **kw)
    b = store.submit_review(alice, case_id, "agree", submission_id="click-2", **kw)
    assert a.id == b.id
    # a revision is a new review, and going back to the first verdict is one too
    c = store.submit_review(alice, case_id, "disagree", submission_id="click-3", **kw)
    d = store.submit_review(alice, case_id, "agree", submission_id="click-4", **kw)
    assert len({a.id, c.id, d.id}) == 3
    assert [r.decision for r in store.open_case(root, case_id).reviews] == [
        "agree",
        "disagree",
        "agree",
    ]
    reviews = store.audit_log(root, case_id=case_id, action="review")
    assert len(reviews) == 3


def test_a_refused_result_is_never_stored(store: ReviewStore, users: dict) -> None:
    alice = users["alice"]
    case_id = store.create_case(alice, tiny_scan()).case_id
    with pytest.raises(ReviewInputError, match="refused"):
        store.record_prediction(
            alice,
            case_id,
            model_name="cxr-nodule",
            model_version="1.0",
            label="unknown",
            probability=0.0,
            details={"domain": "refuse", "domain_reasons": ["This is a MRI image"]},
        )
    assert store.get_case(case_id, viewer=None).status == "new"


def test_details_are_checked_and_completed_when_stored(store: ReviewStore, users: dict) -> None:
    from medtl.artifacts import PredictionDetails

    alice = users["alice"]
    case_id = store.create_case(alice, tiny_scan()).case_id
    kw = {"model_name": "cxr", "model_version": "1", "label": "nodule", "probability": 0.6}
    with pytest.raises(ReviewInputError, match="domain"):
        store.record_prediction(alice, case_id, **kw, details={"domain": "fine"})
    stored = store.record_prediction(alice, case_id, **kw, details={"labels": ["no", "nodule"]})
    read = PredictionDetails.from_stored(stored.details)  # a complete document
    assert read.labels == ["no", "nodule"] and read.domain == "not checked"
