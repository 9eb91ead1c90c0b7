"""CSV export, its JSON Schema and reader agreement statistics (DICOM SR export:
``tests/review/test_sr.py``)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from medtl.review.auth import PermissionDeniedError
from medtl.review.export import fleiss_kappa, pair_kappa
from medtl.review.schemas import ReviewExportRow, review_export_schema
from medtl.review.store import ReviewStore

from .conftest import FakeClock, tiny_scan

HEADER = (
    "review_id,case_id,case_status,reader,reader_role,decision,x,y,slice_index,comment,"
    "reviewed_at,prediction_id,model_name,model_version,ai_label,ai_probability,"
    "ai_threshold"
)


def test_csv_export_content(
    store: ReviewStore, users: dict, clock: FakeClock, tmp_path: Path
) -> None:
    a, b = users["alice"], users["bob"]
    case = store.create_case(a, tiny_scan()).case_id
    store.record_prediction(
        a,
        case,
        model_name="cxr-nodule",
        model_version="2.1",
        label="nodule",
        probability=0.875,
        threshold=0.5,
    )
    clock.advance(minutes=1)
    store.submit_review(a, case, "agree", x=12.5, y=7, comment='right upper lobe, "solid"')
    clock.advance(minutes=1)
    store.submit_review(b, case, "disagree", comment='=HYPERLINK("http://x")')
    out = tmp_path / "reviews.csv"
    assert store.export_reviews_csv(users["rita"], out) == 2
    assert out.read_text(encoding="utf-8").splitlines() == [
        HEADER,
        f'1,{case},disagreed,alice,clinician,agree,12.5,7.0,,"right upper lobe, ""solid""",'
        "2026-03-02T09:01:00Z,1,cxr-nodule,2.1,nodule,0.875,0.5",
        f'2,{case},disagreed,bob,clinician,disagree,,,,"\'=HYPERLINK(""http://x"")",'
        "2026-03-02T09:02:00Z,1,cxr-nodule,2.1,nodule,0.875,0.5",
    ]
    no_comments = io.StringIO()
    store.export_reviews_csv(users["root"], no_comments, include_comments=False)
    rows = list(csv.DictReader(io.StringIO(no_comments.getvalue())))
    assert [r["comment"] for r in rows] == ["", ""]
    exports = store.audit_log(users["root"], action="export")
    assert [(e.username, e.details) for e in exports] == [
        ("rita", {"format": "csv", "rows": 2, "comments": True}),
        ("root", {"format": "csv", "rows": 2, "comments": False}),
    ]
    with pytest.raises(PermissionDeniedError):
        store.export_reviews_csv(a, tmp_path / "no.csv")


FORMULA_COMMENTS = [
    '=HYPERLINK("http://x")',
    "+1+1",
    "-2+3",
    "@SUM(A1)",
    "\t=1",
    "\r=1",
    # Full-width and other compatibility forms that NFKC folds to a formula starter.
    '\uff1dHYPERLINK("http://x","open")',
    "\uff0b1+1",
    "\uff0d2+3",
    "\uff20SUM(A1)",
    "\ufe66HYPERLINK(1)",
    " \uff1d1+1",
    "\u200b=1+1",
    "\u3000\uff1d1",
]


def test_csv_export_neutralises_formulas_in_every_width(store: ReviewStore, users: dict) -> None:
    """Each comment that a spreadsheet could run comes out prefixed with ``'``, intact."""
    a = users["alice"]
    case = store.create_case(a, tiny_scan()).case_id
    store.record_prediction(
        a, case, model_name="m", model_version="1", label="nodule", probability=0.5
    )
    harmless = ["plain text", "3 mm nodule, =stable", "a-b", "\uff41bc"]
    for comment in FORMULA_COMMENTS + harmless:
        store.submit_review(a, case, "agree", comment=comment)
    buf = io.StringIO()
    store.export_reviews_csv(users["root"], buf)
    comments = [r["comment"] for r in csv.DictReader(io.StringIO(buf.getvalue(), newline=""))]
    assert comments == ["'" + c for c in FORMULA_COMMENTS] + harmless


def test_export_rows_match_json_schema(store: ReviewStore, users: dict) -> None:
    a = users["alice"]
    case = store.create_case(a, tiny_scan()).case_id
    store.record_prediction(
        a, case, model_name="m", model_version="1", label="no_nodule", probability=0.1
    )
    store.submit_review(a, case, "uncertain", x=1, y=1, slice_index=3)
    schema = review_export_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    assert list(schema["properties"]) == ReviewExportRow.columns() == HEADER.split(",")
    buf = io.StringIO()
    store.export_reviews_csv(None, buf)
    (row,) = csv.DictReader(io.StringIO(buf.getvalue()))
    typed = ReviewExportRow.model_validate({k: (v or None) for k, v in row.items()})
    jsonschema.validate(json.loads(typed.model_dump_json()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**json.loads(typed.model_dump_json()), "decision": "maybe"}, schema)


def test_fleiss_kappa_matches_published_example() -> None:
    """Fleiss (1971) worked example as given on Wikipedia: 10 subjects, 14 raters -> 0.210."""
    counts = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    assert fleiss_kappa(counts) == pytest.approx(0.20993, abs=1e-4)
    assert fleiss_kappa(np.array([[3, 0], [0, 3]])) == pytest.approx(1.0)
    assert fleiss_kappa(np.array([[2, 0], [2, 0]])) is None  # one category: undefined
    assert fleiss_kappa(np.zeros((0, 3))) is None
    with pytest.raises(ValueError, match="at least 2"):
        fleiss_kappa(np.array([[1, 0]]))


def test_pair_kappa_is_sklearns() -> None:
    a = ["agree", "agree", "disagree", "uncertain", "agree", "disagree"]
    b = ["agree", "disagree", "disagree", "uncertain", "agree", "agree"]
    assert pair_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    assert pair_kappa(["agree"] * 3, ["agree"] * 3) is None
    assert pair_kappa(["agree"], ["disagree"]) is None


def test_agreement_report(store: ReviewStore, users: dict) -> None:
    readers = [users["alice"], users["bob"], users["root"]]
    plan = {  # case -> decisions of alice, bob, root (None: did not read)
        0: ("agree", "agree", "agree"),
        1: ("agree", "disagree", None),
        2: ("disagree", "disagree", "uncertain"),
        3: ("uncertain", None, None),
    }
    ids = {}
    for k, decisions in plan.items():
        ids[k] = store.create_case(users["alice"], tiny_scan()).case_id
        store.record_prediction(
            None, ids[k], model_name="m", model_version="1", label="nodule", probability=0.5
        )
        for reader, decision in zip(readers, decisions, strict=True):
            if decision:
                store.submit_review(reader, ids[k], decision)
    # Alice changes her mind on case 1: only her latest review counts.
    store.submit_review(users["alice"], ids[1], "disagree")
    report = store.agreement(users["root"])
    assert store.agreement(users["rita"]) == report  # researchers see agreement too
    by_case = {c.case_id: c for c in report.cases}
    assert by_case[ids[0]].unanimous and by_case[ids[0]].pairwise_agreement == 1.0
    assert by_case[ids[1]].decisions == {"alice": "disagree", "bob": "disagree"}
    assert by_case[ids[2]].counts == {"agree": 0, "disagree": 2, "uncertain": 1}
    assert by_case[ids[2]].pairwise_agreement == pytest.approx(1 / 3)
    assert by_case[ids[3]].pairwise_agreement is None and not by_case[ids[3]].unanimous
    assert report.n_cases_multi_reader == 3
    expected = fleiss_kappa(np.array([[3, 0, 0], [0, 2, 0], [0, 2, 1]]))
    assert report.fleiss_kappa == pytest.approx(expected)
    pairs = {(p.reader_a, p.reader_b): p for p in report.pairs}
    ab = pairs[("alice", "bob")]
    assert (ab.n_cases, ab.percent_agreement) == (3, 1.0)
    assert ab.kappa == pytest.approx(1.0)
    br = pairs[("bob", "root")]
    assert br.n_cases == 2
    assert br.kappa == pytest.approx(
        cohen_kappa_score(["agree", "disagree"], ["agree", "uncertain"])
    )
