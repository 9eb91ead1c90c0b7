"""Import reads done outside the app (a reader study on paper or another viewer) from CSV.

The file has a header row and one read per row: ``case_id``, ``reader`` (the reader's user
name), ``verdict`` (``agree``, ``disagree`` or ``uncertain``) and an optional ``comment``
(:class:`ReadImportRow`, JSON Schema in ``data_schemas/review_import.schema.json``).
Every row is checked before anything is recorded: an unknown or malformed case ID, a case
without an AI result, an unknown, disabled or non-reading account, an invalid verdict, an
over-long comment or a repeated (case, reader) pair makes the whole import fail with the
list of **every** bad row, and nothing is recorded.

Good files are recorded through :meth:`ReviewStore.submit_review` (one ``review`` audit event
per row, in the same transaction, naming the reader). Each row's submission ID is derived
from the file's SHA-256 and its line, so importing the same file again (say after a crash
half-way) records nothing twice.

De-identification: medtl stores and prints only pseudonyms. A cell that should hold a case
ID or user name but does not look like one (it may be a patient's ID or name typed into the
wrong column) is reported by its line and column, never echoed; comments are stored like
comments typed in the app and never go into the audit trail or the error messages.

Example::

    result = import_reads(store, Path("reads.csv"))
    print(result.recorded, result.already)
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from medtl.review.casefiles import is_case_id
from medtl.review.errors import CaseNotFoundError, ReviewInputError
from medtl.review.models import DECISIONS
from medtl.review.readings import MAX_COMMENT
from medtl.review.schemas import Decision

if TYPE_CHECKING:  # pragma: no cover
    from medtl.review.auth import UserInfo
    from medtl.review.schemas import ReviewInfo
    from medtl.review.store import ReviewStore

logger = logging.getLogger(__name__)

COLUMNS = ("case_id", "reader", "verdict", "comment")  # = ReadImportRow's fields
#: header spellings accepted for each column (compared lower-case, spaces as ``_``)
ALIASES = {
    "case_id": ("case_id", "case", "caseid"),
    "reader": ("reader", "username", "user", "reader_username", "user_name"),
    "verdict": ("verdict", "decision"),
    "comment": ("comment", "comments", "note"),
}
READER_ROLES = ("clinician", "admin")
MAX_ROWS = 100_000
_SHOWABLE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class ReadImportRow(BaseModel):
    """One row of the file ``medtl reviews import`` reads (CSV column order = field order).

    Identifiers are pseudonymous: the case pseudonym and a local account name.
    """

    model_config = ConfigDict(extra="forbid")

    case_id: str = Field(
        pattern=r"^[A-Z]{2,8}-[0-9A-F]{8,32}$", description="Case pseudonym, e.g. CASE-0A1B2C3D4E."
    )
    reader: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$",
        description="User name of the reader (a clinician or admin account; case-insensitive).",
    )
    verdict: Decision = Field(
        description="The verdict on the case's latest AI result (any letter case)."
    )
    comment: str | None = Field(
        default=None, max_length=MAX_COMMENT, description="Reader comment (free text, optional)."
    )


def review_import_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of one row of a reads file (``data_schemas/review_import``)."""
    schema = ReadImportRow.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


@dataclass(frozen=True)
class ReadRow:
    """One read of the file (``line`` is the file's line number, the header is line 1)."""

    line: int
    case_id: str
    reader: str
    verdict: str
    comment: str | None


@dataclass(frozen=True)
class RowProblem:
    """Why one row cannot be recorded."""

    line: int
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.problem}"


class ReadsImportError(ReviewInputError):
    """The file cannot be imported; :attr:`problems` lists every bad row (nothing recorded)."""

    def __init__(self, problems: Sequence[RowProblem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        n = len({p.line for p in self.problems})
        super().__init__(f"{n} bad row{'s' * (n != 1)}, nothing recorded:\n{lines}")


@dataclass(frozen=True)
class ImportResult:
    """What an import did."""

    rows: int
    recorded: int
    already: int
    reviews: tuple[ReviewInfo, ...]


def _header_map(header: Sequence[str]) -> dict[str, int]:
    """Column name -> index, by :data:`ALIASES`; raises on a missing or repeated column."""
    found: dict[str, int] = {}
    for index, raw in enumerate(header):
        name = raw.strip().lower().replace(" ", "_")
        for column, spellings in ALIASES.items():
            if name in spellings:
                if column in found:
                    raise ReadsImportError([RowProblem(1, f"column {column!r} appears twice")])
                found[column] = index
    missing = [c for c in COLUMNS[:3] if c not in found]
    if missing:
        raise ReadsImportError(
            [
                RowProblem(
                    1,
                    f"the header needs the columns {', '.join(COLUMNS[:3])} (missing: "
                    f"{', '.join(missing)}); 'comment' is optional",
                )
            ]
        )
    return found


def parse_reads(data: bytes) -> list[ReadRow]:
    """The reads of a CSV file's bytes (UTF-8, a spreadsheet's byte-order mark allowed).

    Raises:
        ReadsImportError: not UTF-8, no header, a missing column, no rows, too many rows.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReadsImportError([RowProblem(1, f"not UTF-8 text (byte {exc.start})")]) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        raise ReadsImportError([RowProblem(1, "the file is empty (no header row)")])
    cols = _header_map(header)
    rows: list[ReadRow] = []
    for record in reader:
        if not any(cell.strip() for cell in record):
            continue  # blank line
        line = reader.line_num

        def cell(column: str, record: list[str] = record) -> str:
            index = cols.get(column)
            return record[index].strip() if index is not None and index < len(record) else ""

        rows.append(
            ReadRow(line, cell("case_id"), cell("reader"), cell("verdict"), cell("comment") or None)
        )
        if len(rows) > MAX_ROWS:
            raise ReadsImportError([RowProblem(line, f"more than {MAX_ROWS} rows")])
    if not rows:
        raise ReadsImportError([RowProblem(1, "no reads after the header")])
    return rows


class _Checker:
    """Checks rows against the store, looking each case and reader up once."""

    def __init__(self, store: ReviewStore) -> None:
        self.store = store
        self.cases: dict[str, str | None] = {}  # case ID -> problem or None
        self.readers: dict[str, UserInfo | str] = {}  # user name -> account or problem
        self.seen: dict[tuple[str, str], int] = {}

    def _case_problem(self, case_id: str) -> str | None:
        if not case_id:
            return "the case ID is empty"
        if not is_case_id(case_id):
            return "the case_id cell is not a case pseudonym like CASE-0A1B2C3D4E (not shown)"
        if case_id not in self.cases:
            try:
                case = self.store.get_case(case_id, viewer=None)
            except CaseNotFoundError:
                self.cases[case_id] = f"unknown case {case_id}"
            else:
                self.cases[case_id] = (
                    None if case.latest_prediction else f"case {case_id} has no AI result to review"
                )
        return self.cases[case_id]

    def _reader(self, name: str) -> UserInfo | str:
        from medtl.review.accounts_base import normalize_username
        from medtl.review.auth import AccountError

        if not name:
            return "the reader is empty"
        try:
            key = normalize_username(name)
        except AccountError:
            return "the reader cell is not a user name (not shown)"
        if key not in self.readers:
            try:
                user = self.store.accounts.get_user(key)
            except AccountError:
                self.readers[key] = f"unknown reader {key!r}"
            else:
                if not user.active:
                    self.readers[key] = f"reader {key!r} is disabled"
                elif user.role not in READER_ROLES:
                    self.readers[key] = f"{key!r} is a {user.role}; only clinicians and admins read"
                else:
                    self.readers[key] = user
        return self.readers[key]

    def check(self, row: ReadRow) -> tuple[list[str], UserInfo | None]:
        """The row's problems (empty when it can be recorded) and its reader."""
        problems = []
        case_problem = self._case_problem(row.case_id)
        if case_problem:
            problems.append(case_problem)
        reader = self._reader(row.reader)
        if isinstance(reader, str):
            problems.append(reader)
        if row.verdict.lower() not in DECISIONS:
            shown = f" (got {row.verdict!r})" if _SHOWABLE.match(row.verdict) else ""
            problems.append(f"the verdict must be {', '.join(DECISIONS)}{shown}")
        if row.comment and len(row.comment) > MAX_COMMENT:
            problems.append(f"the comment is longer than {MAX_COMMENT} characters")
        if not isinstance(reader, str) and not case_problem:
            first = self.seen.setdefault((row.case_id, reader.username), row.line)
            if first != row.line:
                problems.append(f"{reader.username!r} read {row.case_id} already on line {first}")
        return problems, None if isinstance(reader, str) else reader


def check_reads(store: ReviewStore, rows: Sequence[ReadRow]) -> list[tuple[ReadRow, UserInfo]]:
    """Check every row; return each with its reader, or raise listing every bad row.

    Raises:
        ReadsImportError: at least one row cannot be recorded (all of them are listed).
    """
    checker = _Checker(store)
    good: list[tuple[ReadRow, UserInfo]] = []
    problems: list[RowProblem] = []
    for row in rows:
        found, reader = checker.check(row)
        problems.extend(RowProblem(row.line, p) for p in found)
        if not found and reader is not None:
            good.append((row, reader))
    if problems:
        raise ReadsImportError(problems)
    return good


def import_reads(store: ReviewStore, path: Path, *, dry_run: bool = False) -> ImportResult:
    """Check a reads CSV and record its reads as reviews with their audit events.

    Args:
        store: the review store.
        path: the CSV file (columns: :data:`COLUMNS`).
        dry_run: check only; record nothing.

    Returns:
        How many rows were read, newly recorded, and already recorded by an earlier import
        of the same file.

    Raises:
        ReadsImportError: any bad row (every one is listed; nothing is recorded).
        OSError: the file cannot be read.
    """
    data = Path(path).read_bytes()
    rows = parse_reads(data)
    good = check_reads(store, rows)
    if dry_run:
        return ImportResult(len(rows), 0, 0, ())
    digest = hashlib.sha256(data).hexdigest()[:32]
    started = store.db.now()
    reviews = []
    for row, reader in good:
        reviews.append(
            store.submit_review(
                reader,
                row.case_id,
                row.verdict.lower(),
                comment=row.comment,
                submission_id=f"import-{digest}-{row.line}",
            )
        )
    already = sum(r.created_at < started for r in reviews)
    logger.info("review import: %d reads recorded, %d already", len(reviews) - already, already)
    return ImportResult(len(rows), len(reviews) - already, already, tuple(reviews))
