"""``medtl reviews import reads.csv``: reads done outside the app become reviews with their
audit events; a file with any bad row is refused whole, listing every bad row."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medtl.review.auth import UserInfo
from medtl.review.cli import app
from medtl.review.importer import COLUMNS, ReadImportRow, ReadsImportError, import_reads
from medtl.review.store import ReviewStore

from .conftest import PATIENT_ID, PATIENT_NAME, FakeClock, open_store, tiny_scan

runner = CliRunner()
SECRET_COMMENT = "nodule at 3 o'clock, compare with prior"


def write_csv(path: Path, rows: list[list[str]], *, bom: bool = False) -> Path:
    with path.open("w", newline="", encoding="utf-8-sig" if bom else "utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path


def predicted_case(store: ReviewStore, actor: UserInfo, seed: int = 0) -> str:
    case = store.create_case(actor, tiny_scan(seed=seed)).case_id
    store.record_prediction(
        actor, case, model_name="m", model_version="1", label="nodule", probability=0.7
    )
    return case


def test_import_records_reviews_with_audit_events(
    store: ReviewStore, users: dict[str, UserInfo], tmp_path: Path, clock: FakeClock
) -> None:
    root = users["root"]
    one, two = predicted_case(store, root, 0), predicted_case(store, root, 1)
    reads = write_csv(
        tmp_path / "reads.csv",
        [
            ["Case ID", "Reader", "Verdict", "Comment"],
            [one, "alice", "agree", ""],
            [one, "BOB", "Disagree", SECRET_COMMENT],
            [],
            [two, "root", "uncertain", ""],
        ],
        bom=True,  # what a spreadsheet writes
    )
    before = len(store.audit_log(None, action="review"))
    clock.advance(seconds=1)
    result = import_reads(store, reads)
    assert (result.rows, result.recorded, result.already) == (3, 3, 0)

    detail = store.open_case(root, one)
    assert sorted((r.reader, r.decision, r.comment) for r in detail.reviews) == [
        ("alice", "agree", None),
        ("bob", "disagree", SECRET_COMMENT),
    ]
    assert detail.case.status == "disagreed"
    assert store.get_case(two, viewer=None).status == "uncertain"

    events = store.audit_log(None, action="review")[before:]
    assert sorted((e.username, e.case_id, e.details["decision"]) for e in events) == [
        ("alice", one, "agree"),
        ("bob", one, "disagree"),
        ("root", two, "uncertain"),
    ]
    assert all(SECRET_COMMENT not in str(e.details) for e in store.audit_log(None))

    clock.advance(seconds=1)
    again = import_reads(store, reads)  # the same file again: nothing twice
    assert (again.recorded, again.already) == (0, 3)
    assert len(store.audit_log(None, action="review")) == before + 3


def test_every_bad_row_is_listed_and_nothing_is_recorded(
    store: ReviewStore, users: dict[str, UserInfo], tmp_path: Path
) -> None:
    root = users["root"]
    good = predicted_case(store, root)
    unpredicted = store.create_case(root, tiny_scan(seed=5)).case_id
    store.accounts.add_user("dora", "correct horse battery staple", "clinician")
    store.accounts.set_active("dora", False)
    reads = write_csv(
        tmp_path / "reads.csv",
        [
            ["case_id", "reader", "verdict", "comment"],
            [good, "alice", "agree", ""],  # line 2: fine
            ["CASE-FFFFFFFFFF", "alice", "agree", ""],  # 3: unknown case
            [PATIENT_ID, "alice", "agree", ""],  # 4: an MRN in the case column
            [good, "zoe", "agree", ""],  # 5: unknown reader
            [good, "rita", "agree", ""],  # 6: a researcher
            [good, "dora", "agree", ""],  # 7: disabled
            [good, "bob", "maybe", ""],  # 8: invalid verdict
            [unpredicted, "bob", "agree", ""],  # 9: nothing to review
            [good, "alice", "disagree", ""],  # 10: alice read it on line 2
            [good, PATIENT_NAME, "agree", ""],  # 11: a patient's name as reader
            [good, "root", "agree", "x" * 4001],  # 12: comment too long
        ],
    )
    audit_before = len(store.audit_log(None))
    with pytest.raises(ReadsImportError) as err:
        import_reads(store, reads)
    problems = {p.line: p.problem for p in err.value.problems}
    assert sorted(problems) == list(range(3, 13))
    assert "unknown case CASE-FFFFFFFFFF" in problems[3]
    assert "not a case pseudonym" in problems[4]
    assert "unknown reader 'zoe'" in problems[5]
    assert "researcher" in problems[6]
    assert "disabled" in problems[7]
    assert "verdict must be agree, disagree, uncertain (got 'maybe')" in problems[8]
    assert "no AI result" in problems[9]
    assert "already on line 2" in problems[10]
    assert "not a user name" in problems[11]
    assert "longer than 4000" in problems[12]
    message = str(err.value)
    assert message.startswith("10 bad rows, nothing recorded")
    assert PATIENT_ID not in message and PATIENT_NAME not in message

    assert store.open_case(root, good).reviews == []
    assert len(store.audit_log(None)) == audit_before + 1  # only that open_case's view


def test_header_must_name_the_columns(store: ReviewStore, tmp_path: Path) -> None:
    reads = write_csv(tmp_path / "reads.csv", [["case", "verdict"], ["CASE-0000000001", "agree"]])
    with pytest.raises(ReadsImportError, match="missing: reader"):
        import_reads(store, reads)
    empty = write_csv(tmp_path / "empty.csv", [["case_id", "reader", "verdict"]])
    with pytest.raises(ReadsImportError, match="no reads after the header"):
        import_reads(store, empty)


@pytest.mark.sqlite_only
def test_cli_import_dry_run_then_record(tmp_path: Path, db_url: str) -> None:
    store = open_store(db_url)
    try:
        alice = store.accounts.add_user("alice", "correct horse battery staple", "clinician")
        case = predicted_case(store, alice)
    finally:
        store.close()
    bad = write_csv(
        tmp_path / "bad.csv",
        [["case_id", "reader", "verdict"], [case, "alice", "yes"], [case, "nobody", "agree"]],
    )
    result = runner.invoke(app, ["reviews", "import", str(bad), "--db", db_url])
    assert result.exit_code == 1
    assert "bad.csv: 2 bad rows, nothing recorded" in result.output
    assert "line 2: the verdict must be" in result.output
    assert "line 3: unknown reader 'nobody'" in result.output

    good = write_csv(
        tmp_path / "reads.csv",
        [["case_id", "reader", "verdict", "comment"], [case, "alice", "disagree", "tiny"]],
    )
    dry = runner.invoke(app, ["reviews", "import", str(good), "--dry-run", "--db", db_url])
    assert dry.exit_code == 0, dry.output
    assert "1 reads checked" in dry.output
    store = open_store(db_url)
    try:
        assert store.open_case(None, case).reviews == []
    finally:
        store.close()

    done = runner.invoke(app, ["reviews", "import", str(good), "--db", db_url])
    assert done.exit_code == 0, done.output
    assert "recorded 1 reviews from 1 reads" in done.output
    store = open_store(db_url)
    try:
        (review,) = store.open_case(None, case).reviews
        assert (review.reader, review.decision, review.comment) == ("alice", "disagree", "tiny")
    finally:
        store.close()


def test_the_schema_describes_the_columns(store: ReviewStore, users: dict[str, UserInfo]) -> None:
    """data_schemas/review_import (ReadImportRow) names the columns the importer reads, and
    its patterns accept real case IDs and account names."""
    assert tuple(ReadImportRow.model_fields) == COLUMNS
    case = predicted_case(store, users["root"])
    ReadImportRow(case_id=case, reader="alice", verdict="agree")
    with pytest.raises(ValueError):
        ReadImportRow(case_id="MRN-4417-2093", reader="alice", verdict="agree")
