"""The stored case status and the worklist paged in SQL (keyset), blinded for clinicians."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import select

from medtl.review.models import Case
from medtl.review.status import STATUSES, case_status
from medtl.review.store import ReviewInputError, ReviewStore

from .conftest import FakeClock, tiny_scan


def _stored_vs_derived(store: ReviewStore) -> list[tuple[str, str, str]]:
    from medtl.review.cases import load_case

    def read(session):  # type: ignore[no-untyped-def]
        ids = session.scalars(select(Case.case_id).order_by(Case.id)).all()
        out = []
        for case_id in ids:
            case = load_case(session, case_id)
            out.append((case_id, case.status, case_status(case)))
        return out

    return store.db.read(read)


def test_stored_status_follows_every_result_and_review(
    store: ReviewStore, users: dict, clock: FakeClock
) -> None:
    rng = random.Random(7)
    readers = [users["alice"], users["bob"], users["root"]]
    ids = [store.create_case(users["alice"], tiny_scan()).case_id for _ in range(6)]
    seen = set()
    for _ in range(60):
        case_id = rng.choice(ids)
        clock.advance(seconds=1)
        if rng.random() < 0.3 or store.get_case(case_id, viewer=None).status == "new":
            store.record_prediction(
                None,
                case_id,
                model_name="m",
                model_version="1",
                label="nodule",
                probability=rng.random(),
            )
        else:
            store.submit_review(
                rng.choice(readers), case_id, rng.choice(["agree", "disagree", "uncertain"])
            )
        rows = _stored_vs_derived(store)
        assert all(stored == derived for _, stored, derived in rows), rows
        seen |= {stored for _, stored, _ in rows}
    assert seen == set(STATUSES)  # the walk went through every status


@pytest.fixture
def many_cases(store: ReviewStore, users: dict, clock: FakeClock) -> list[str]:
    """Nine cases; every third has an AI result, case 4 is read by Alice (disagree)."""
    ids = []
    for i in range(9):
        ids.append(store.create_case(users["alice"], tiny_scan()).case_id)
        if i % 3 == 1:
            clock.advance(seconds=0)  # two cases share a creation time: the id breaks ties
        else:
            clock.advance(minutes=1)
    for case_id in ids[1::3]:
        store.record_prediction(
            None, case_id, model_name="m", model_version="1", label="nodule", probability=0.9
        )
    store.submit_review(users["alice"], ids[4], "disagree")
    return ids


def _walk(store: ReviewStore, actor, size: int, **filters) -> list[list[str]]:  # type: ignore[no-untyped-def]
    pages, after = [], None
    while True:
        page = store.worklist(actor, limit=size, after=after, **filters)
        if not page:
            return pages
        pages.append([c.case_id for c in page])
        after = page[-1].case_id


def test_keyset_pages_cover_the_list_once_in_order(
    store: ReviewStore, users: dict, many_cases: list[str]
) -> None:
    root = users["root"]
    assert [c.case_id for c in store.worklist(root)] == many_cases
    pages = _walk(store, root, 4)
    assert pages == [many_cases[0:4], many_cases[4:8], many_cases[8:9]]
    waiting = _walk(store, root, 1, status="awaiting_review")
    assert waiting == [[many_cases[1]], [many_cases[7]]]
    assert _walk(store, root, 2, status="disagreed") == [[many_cases[4]]]
    with pytest.raises(ReviewInputError, match="after"):
        store.worklist(root, after="CASE-0000000000")


def test_pages_blinded_for_a_clinician_who_has_not_read(
    store: ReviewStore, users: dict, many_cases: list[str]
) -> None:
    bob = users["bob"]
    pages = _walk(store, bob, 2, status="awaiting_review")
    assert pages == [[many_cases[1], many_cases[4]], [many_cases[7]]]
    rows = {c.case_id: c for c in store.worklist(bob)}
    assert (rows[many_cases[4]].status, rows[many_cases[4]].readers) == ("awaiting_review", ())
    assert all(c.blinded for c in rows.values())
    alice_rows = {c.case_id: c for c in store.worklist(users["alice"])}
    assert alice_rows[many_cases[4]].status == "disagreed"
    assert alice_rows[many_cases[4]].readers == ("alice",)
    assert not alice_rows[many_cases[4]].blinded and alice_rows[many_cases[1]].blinded


def test_rows_carry_page_details(store: ReviewStore, users: dict, clock: FakeClock) -> None:
    alice = users["alice"]
    case = store.create_case(alice, tiny_scan()).case_id
    store.add_image(alice, case, tiny_scan(seed=2))
    for p in (0.2, 0.7):
        store.record_prediction(
            alice, case, model_name="m", model_version="2", label="nodule", probability=p
        )
    store.submit_review(users["bob"], case, "agree")
    store.submit_review(alice, case, "uncertain")
    store.submit_review(alice, case, "agree")
    (row,) = store.worklist(users["root"])
    assert row == store.get_case(case, viewer=None)
    assert (row.n_images, row.readers, row.status) == (2, ("alice", "bob"), "agreed")
    assert row.latest_prediction.probability == pytest.approx(0.7)


def test_unpaged_list_is_loaded_in_chunks(
    store: ReviewStore, users: dict, many_cases: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from medtl.review import worklist

    whole = store.worklist(users["root"])
    monkeypatch.setattr(worklist, "DETAIL_CHUNK", 2)
    assert store.worklist(users["root"]) == whole
    assert [c.case_id for c in whole] == many_cases


def test_typed_prediction_details_are_stored_as_validated_json(
    store: ReviewStore, users: dict
) -> None:
    from medtl.artifacts import PredictionDetails

    case = store.create_case(users["alice"], tiny_scan()).case_id
    details = PredictionDetails(
        domain="warn",
        domain_reasons=["unusual spacing"],
        calibrated=True,
        labels=["no_nodule", "nodule"],
    )
    saved = store.record_prediction(
        users["alice"],
        case,
        model_name="m",
        model_version="1",
        label="nodule",
        probability=0.6,
        details=details,
    )
    assert PredictionDetails.from_stored(saved.details) == details
    (again,) = store.open_case(users["root"], case).predictions
    assert PredictionDetails.from_stored(again.details) == details
    with pytest.raises(ReviewInputError, match="details"):
        store.record_prediction(
            users["alice"],
            case,
            model_name="m",
            model_version="1",
            label="nodule",
            probability=0.6,
            details=["not", "a", "dict"],
        )
