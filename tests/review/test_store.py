"""Cases, AI results, reviews, worklist, permissions and the append-only audit log."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from medtl.io.deid import deidentify
from medtl.review.auth import PermissionDeniedError, UserInfo
from medtl.review.store import (
    CaseExistsError,
    CaseNotFoundError,
    PHIRiskError,
    ReviewInputError,
    ReviewStore,
)

from .conftest import FakeClock, dicom_dataset, open_store, tiny_scan, to_bytes


def _predict(
    store: ReviewStore, actor: UserInfo, case_id: str, model: str = "cxr-nodule", p: float = 0.8
) -> int:
    return store.record_prediction(
        actor,
        case_id,
        model_name=model,
        model_version="1.0",
        label="nodule",
        probability=p,
        threshold=0.5,
    ).id


def test_case_from_scan_round_trips(store: ReviewStore, users: dict) -> None:
    scan = tiny_scan("CT", seed=3)
    case = store.create_case(users["alice"], scan)
    assert case.case_id.startswith("CASE-") and len(case.case_id) == 15
    assert (case.status, case.modality, case.n_images) == ("new", "CT", 1)
    (image,) = store.get_images(case.case_id)
    assert image.path.parent == store.cases_dir / case.case_id
    assert image.path.name.startswith("img-") and image.path.suffix == ".npz"
    back = store.load_image(image)
    np.testing.assert_array_equal(back.array, scan.array)
    assert back.spacing == scan.spacing and back.meta == scan.meta


def test_dicom_bytes_must_be_deidentified(store: ReviewStore, users: dict) -> None:
    with pytest.raises(PHIRiskError, match="not marked de-identified"):
        store.create_case(users["alice"], to_bytes(dicom_dataset()))
    with pytest.raises(PHIRiskError, match="only de-identified DICOM"):
        store.create_case(users["alice"], b"\x89PNG\r\n\x1a\n" + b"\0" * 200)
    assert store.worklist(users["root"]) == []
    assert not store.cases_dir.exists() or not any(store.cases_dir.rglob("img-*"))
    clean = deidentify(dicom_dataset(), key=b"k" * 32)
    case = store.create_case(users["alice"], to_bytes(clean))
    (image,) = store.get_images(case.case_id)
    assert (image.kind, image.modality, image.path.suffix) == ("dicom", "CT", ".dcm")
    assert store.load_image(image) == to_bytes(clean)


def test_source_key_gives_stable_pseudonym_and_refuses_duplicates(
    store: ReviewStore, users: dict
) -> None:
    first = store.create_case(users["alice"], tiny_scan(), source_key="2.25.1234")
    with pytest.raises(CaseExistsError) as dup:
        store.create_case(users["bob"], tiny_scan(), source_key="2.25.1234")
    assert dup.value.case_id == first.case_id
    assert len(list((store.cases_dir / first.case_id).iterdir())) == 1  # no orphan file


def test_review_saved_and_still_there_after_reopening(
    db_url: str, clock: FakeClock, users: dict, store: ReviewStore
) -> None:
    case = store.create_case(users["alice"], tiny_scan())
    pred = _predict(store, users["alice"], case.case_id)
    saved = store.submit_review(
        users["alice"],
        case.case_id,
        "disagree",
        x=3.5,
        y=2,
        slice_index=0,
        comment="nodule is a nipple shadow",
    )
    store.close()
    reopened = open_store(db_url, clock)  # a new engine on the same file
    try:
        detail = reopened.open_case(users["root"], case.case_id)
        assert [
            (r.id, r.reader, r.decision, r.x, r.y, r.slice_index, r.comment, r.prediction_id)
            for r in detail.reviews
        ] == [(saved.id, "alice", "disagree", 3.5, 2.0, 0, "nodule is a nipple shadow", pred)]
        assert detail.case.status == "disagreed"
        assert detail.reviews[0].created_at == clock.now
    finally:
        reopened.close()


def test_review_validation(store: ReviewStore, users: dict) -> None:
    case = store.create_case(users["alice"], tiny_scan())
    with pytest.raises(ReviewInputError, match="no AI result"):
        store.submit_review(users["alice"], case.case_id, "agree")
    _predict(store, users["alice"], case.case_id)
    bad = [
        (dict(decision="maybe"), "decision must be"),
        (dict(decision="agree", x=1.0), "both x and y"),
        (dict(decision="agree", x=-1.0, y=2.0), "non-negative"),
        (dict(decision="agree", x=float("nan"), y=2.0), "finite"),
        (dict(decision="agree", slice_index=-2), "slice_index"),
        (dict(decision="agree", comment="x" * 4001), "4000"),
        (dict(decision="agree", prediction_id=999), "does not belong"),
    ]
    for kwargs, match in bad:
        with pytest.raises(ReviewInputError, match=match):
            store.submit_review(users["alice"], case.case_id, **kwargs)
    with pytest.raises(CaseNotFoundError):
        store.submit_review(users["alice"], "CASE-FFFFFFFFFF", "agree")
    with pytest.raises(PermissionDeniedError):
        store.submit_review(users["rita"], case.case_id, "agree")
    with pytest.raises(ReviewInputError, match="probability"):
        store.record_prediction(
            users["alice"],
            case.case_id,
            model_name="m",
            model_version="1",
            label="x",
            probability=1.5,
        )


def test_resubmitted_form_is_stored_once(store: ReviewStore, users: dict) -> None:
    case = store.create_case(users["alice"], tiny_scan())
    _predict(store, users["alice"], case.case_id)
    a = store.submit_review(users["alice"], case.case_id, "agree", submission_id="form-1")
    b = store.submit_review(users["alice"], case.case_id, "agree", submission_id="form-1")
    assert a.id == b.id
    with pytest.raises(ReviewInputError, match="another reader"):
        store.submit_review(users["bob"], case.case_id, "agree", submission_id="form-1")
    assert len(store.open_case(users["root"], case.case_id).reviews) == 1


def test_clinicians_are_blinded_to_other_readers(store: ReviewStore, users: dict) -> None:
    case = store.create_case(users["alice"], tiny_scan())
    _predict(store, users["alice"], case.case_id)
    store.submit_review(users["alice"], case.case_id, "agree")
    assert store.open_case(users["bob"], case.case_id).reviews == []
    store.submit_review(users["bob"], case.case_id, "uncertain")
    for reader in ("alice", "bob"):  # both have read it: both see both verdicts
        assert [r.reader for r in store.open_case(users[reader], case.case_id).reviews] == [
            "alice",
            "bob",
        ]
    assert [r.reader for r in store.open_case(users["rita"], case.case_id).reviews] == [
        "alice",
        "bob",
    ]


def test_status_uses_each_readers_latest_review(store: ReviewStore, users: dict) -> None:
    case = store.create_case(users["alice"], tiny_scan())
    assert store.get_case(case.case_id, viewer=None).status == "new"
    _predict(store, users["alice"], case.case_id)
    assert store.get_case(case.case_id, viewer=None).status == "awaiting_review"
    expected = [
        ("alice", "agree", "agreed"),
        ("bob", "uncertain", "uncertain"),
        ("alice", "disagree", "disagreed"),
        ("alice", "agree", "uncertain"),
        ("bob", "agree", "agreed"),
    ]
    for reader, decision, status in expected:
        store.submit_review(users[reader], case.case_id, decision)
        assert store.get_case(case.case_id, viewer=None).status == status, (reader, decision)


@pytest.fixture
def worklist_cases(store: ReviewStore, users: dict, clock: FakeClock) -> dict[str, str]:
    """Five cases a day apart, created out of alphabetical order of their IDs."""
    a, b = users["alice"], users["bob"]
    ids = {}
    for name in ("new", "awaiting", "agreed", "disagreed", "uncertain"):
        ids[name] = store.create_case(a, tiny_scan()).case_id
        clock.advance(days=1)
    _predict(store, a, ids["awaiting"], model="other-model")
    for name in ("agreed", "disagreed", "uncertain"):
        _predict(store, a, ids[name])
    store.submit_review(a, ids["agreed"], "agree")
    store.submit_review(b, ids["disagreed"], "disagree")
    store.submit_review(a, ids["uncertain"], "uncertain")
    return ids


def test_worklist_status_filters_and_order(
    store: ReviewStore, users: dict, clock: FakeClock, worklist_cases: dict[str, str]
) -> None:
    ids = worklist_cases
    root = users["root"]
    everything = store.worklist(root)
    assert [c.case_id for c in everything] == list(ids.values())  # oldest first
    assert [c.status for c in everything] == [
        "new",
        "awaiting_review",
        "agreed",
        "disagreed",
        "uncertain",
    ]
    for name, status in (
        ("new", "new"),
        ("awaiting", "awaiting_review"),
        ("agreed", "agreed"),
        ("disagreed", "disagreed"),
        ("uncertain", "uncertain"),
    ):
        assert [c.case_id for c in store.worklist(root, status=status)] == [ids[name]]
    both = store.worklist(root, status=["disagreed", "awaiting_review"])
    assert [c.case_id for c in both] == [ids["awaiting"], ids["disagreed"]]
    assert [c.case_id for c in store.worklist(root, model="cxr-nodule")] == [
        ids["agreed"],
        ids["disagreed"],
        ids["uncertain"],
    ]
    assert [c.case_id for c in store.worklist(root, reader="alice")] == [
        ids["agreed"],
        ids["uncertain"],
    ]
    assert [c.case_id for c in store.worklist(root, reader="bob")] == [ids["disagreed"]]
    # Blinded reading: Bob has not read the cases Alice read, so they await his read too.
    queue = store.worklist(users["bob"], status="awaiting_review", not_reviewed_by="bob")
    assert [c.case_id for c in queue] == [ids["awaiting"], ids["agreed"], ids["uncertain"]]
    start = clock.now - timedelta(days=4)  # creation time of the second case
    window = store.worklist(root, since=start, until=start + timedelta(days=2))
    assert [c.case_id for c in window] == [ids["awaiting"], ids["agreed"]]
    assert [c.case_id for c in store.worklist(root, limit=2)] == [ids["new"], ids["awaiting"]]
    with pytest.raises(ReviewInputError, match="unknown status"):
        store.worklist(root, status="done")


def test_opening_a_case_records_a_view(store: ReviewStore, users: dict, clock: FakeClock) -> None:
    case = store.create_case(users["alice"], tiny_scan())
    clock.advance(minutes=3)
    store.open_case(users["bob"], case.case_id)
    views = store.audit_log(users["root"], action="view")
    assert [(e.username, e.case_id, e.at) for e in views] == [("bob", case.case_id, clock.now)]
    store.worklist(users["bob"])  # listing is not viewing
    assert len(store.audit_log(users["root"], action="view")) == 1


def test_every_action_is_audited(store: ReviewStore, users: dict, clock: FakeClock) -> None:
    a = users["alice"]
    case = store.create_case(a, tiny_scan())
    pred = _predict(store, a, case.case_id)
    store.open_case(a, case.case_id)
    review = store.submit_review(a, case.case_id, "agree")
    events = store.audit_log(users["root"], case_id=case.case_id)
    assert [(e.action, e.username) for e in events] == [
        ("upload", "alice"),
        ("predict", "alice"),
        ("view", "alice"),
        ("review", "alice"),
    ]
    assert events[1].details["prediction_id"] == pred
    assert events[3].details == {"decision": "agree", "review_id": review.id, "prediction_id": pred}
    assert all(e.at.utcoffset() == timedelta(0) for e in events)
    user_events = store.audit_log(users["root"], action="user_add")
    assert [e.details["target"] for e in user_events] == ["root", "alice", "bob", "rita"]


def test_audit_log_is_append_only(store: ReviewStore, users: dict, backend: str) -> None:
    store.create_case(users["alice"], tiny_scan())
    attacks = [
        "UPDATE audit_events SET action = 'view'",
        "DELETE FROM audit_events",
        "UPDATE audit_events SET username = NULL WHERE id = 1",
    ]
    if backend == "postgresql":  # SQLite has no TRUNCATE
        attacks.append("TRUNCATE audit_events")
    for sql in attacks:
        with pytest.raises(DatabaseError, match="append-only"):
            store.db.write(lambda s, sql=sql: s.execute(text(sql)))
    with store.db.engine.connect() as conn:
        n = conn.exec_driver_sql("SELECT COUNT(*) FROM audit_events").scalar()
    assert n == 5  # 4 user_add + 1 upload, untouched
    assert not hasattr(store, "delete_audit") and not hasattr(store, "update_audit")


def test_permissions(store: ReviewStore, users: dict) -> None:
    with pytest.raises(PermissionDeniedError):
        store.create_case(users["rita"], tiny_scan())
    with pytest.raises(PermissionDeniedError):
        store.audit_log(users["alice"])
    with pytest.raises(PermissionDeniedError):
        store.agreement(users["alice"])  # derived from other readers' verdicts
    disabled = store.accounts.set_active("bob", False)
    with pytest.raises(PermissionDeniedError):
        store.worklist(disabled)


def test_add_image_to_existing_and_missing_cases(store: ReviewStore, users: dict) -> None:
    case = store.create_case(users["alice"], tiny_scan())
    second = store.add_image(users["alice"], case.case_id, tiny_scan(seed=9))
    assert [i.id for i in store.get_images(case.case_id)] == [second.id - 1, second.id]
    assert store.get_case(case.case_id).n_images == 2
    for bad in ("CASE-0000000000", "../../etc", "DOE^JANE"):
        with pytest.raises(CaseNotFoundError):
            store.add_image(users["alice"], bad, tiny_scan())
    folders = sorted(p.name for p in store.cases_dir.iterdir())
    assert folders == [case.case_id]
    uploads = store.audit_log(users["root"], action="upload")
    assert [(e.case_id, e.details) for e in uploads] == [
        (case.case_id, {"images": 1, "kind": "scan"})
    ] * 2


def test_second_clinician_reads_blinded_until_own_review(store: ReviewStore, users: dict) -> None:
    """Finding 4 of the security review: the first reader's verdict must not leak."""
    alice, bob, root, rita = users["alice"], users["bob"], users["root"], users["rita"]
    case = store.create_case(alice, tiny_scan()).case_id
    _predict(store, alice, case)
    store.submit_review(alice, case, "disagree", comment="not a nodule")

    def seen_by(viewer: UserInfo) -> list[tuple]:
        rows = [store.get_case(case, viewer=viewer), store.open_case(viewer, case).case]
        rows += [c for c in store.worklist(viewer) if c.case_id == case]
        return [(c.status, c.readers, c.blinded) for c in rows]

    blinded = ("awaiting_review", (), True)
    assert seen_by(bob) == [blinded] * 3
    assert store.get_case(case).status == "awaiting_review"  # default viewer: blinded
    assert store.get_case(case).readers == ()
    assert store.open_case(bob, case).reviews == []
    # No status or reader filter reveals the verdict either.
    assert store.worklist(bob, status="disagreed") == []
    assert store.worklist(bob, reader="alice") == []
    assert [c.case_id for c in store.worklist(bob, status="awaiting_review")] == [case]
    # A second case Alice has not read: "not reviewed by Alice" would single it out.
    unread = store.create_case(alice, tiny_scan()).case_id
    _predict(store, alice, unread)
    assert [c.case_id for c in store.worklist(root, not_reviewed_by="alice")] == [unread]
    assert store.worklist(bob, not_reviewed_by="alice") == []
    assert [c.case_id for c in store.worklist(bob, not_reviewed_by="bob")] == [case, unread]
    # Admins and researchers see the agreement; so does Alice, who has read it.
    for viewer in (root, rita, alice):
        assert seen_by(viewer) == [("disagreed", ("alice",), False)] * 3
    # Once Bob submits his own review, he sees the others.
    store.submit_review(bob, case, "agree")
    assert seen_by(bob) == [("disagreed", ("alice", "bob"), False)] * 3
    assert [r.reader for r in store.open_case(bob, case).reviews] == ["alice", "bob"]
    assert [c.case_id for c in store.worklist(bob, reader="alice")] == [case]
