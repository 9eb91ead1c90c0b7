"""``medtl users`` / ``medtl reviews`` sub-app, driven through Typer's test runner."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medtl.review.auth import AccountLockedError, InvalidCredentialsError
from medtl.review.cli import app

from .conftest import PASSWORD, open_store, tiny_scan

runner = CliRunner()


def _run(db_url: str, *args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [*args, "--db", db_url], input=stdin)


def test_users_lifecycle(db_url: str) -> None:
    added = _run(
        db_url,
        "users",
        "add",
        "Alice",
        "--role",
        "clinician",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert added.exit_code == 0, added.output
    assert "created clinician account 'alice'" in added.output
    prompted = _run(
        db_url, "users", "add", "root", "--role", "admin", stdin=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert prompted.exit_code == 0, prompted.output
    assert PASSWORD not in prompted.output  # hidden prompt

    listed = _run(db_url, "users", "list", "--json")
    assert [(u["username"], u["role"], u["active"]) for u in json.loads(listed.output)] == [
        ("alice", "clinician", True),
        ("root", "admin", True),
    ]
    assert _run(db_url, "users", "set-role", "alice", "researcher").exit_code == 0
    assert _run(db_url, "users", "disable", "alice").exit_code == 0
    text = _run(db_url, "users", "list").output.splitlines()
    assert text[0].split() == ["alice", "researcher", "disabled"]

    store = open_store(db_url)
    try:
        assert store.accounts.sign_in("root", PASSWORD).user.role == "admin"
        events = [(e.action, e.username, e.details) for e in store.audit_log(None)]
        assert events == [
            ("user_add", None, {"target": "alice", "role": "clinician", "via": "local operator"}),
            ("user_add", None, {"target": "root", "role": "admin", "via": "local operator"}),
            (
                "user_role",
                None,
                {
                    "target": "alice",
                    "from": "clinician",
                    "to": "researcher",
                    "via": "local operator",
                },
            ),
            ("user_disable", None, {"target": "alice", "via": "local operator"}),
            ("sign_in", "root", None),
        ]
    finally:
        store.close()


def test_user_errors_exit_2_without_traceback(db_url: str) -> None:
    ok = _run(db_url, "users", "add", "bob", "--password-stdin", stdin=PASSWORD + "\n")
    assert ok.exit_code == 0
    dup = _run(db_url, "users", "add", "bob", "--password-stdin", stdin=PASSWORD + "\n")
    assert dup.exit_code == 2 and "already exists" in dup.output
    short = _run(db_url, "users", "add", "carl", "--password-stdin", stdin="short\n")
    assert short.exit_code == 2 and "at least 12 characters" in short.output
    role = _run(db_url, "users", "set-role", "bob", "king")
    assert role.exit_code == 2 and "unknown role" in role.output
    missing = _run(db_url, "users", "disable", "nobody")
    assert missing.exit_code == 2 and "no user named" in missing.output
    assert "Traceback" not in dup.output + short.output + role.output + missing.output


def test_weak_password_refused_with_reason(db_url: str) -> None:
    for weak, reason in (
        ("aaaaaaaaaaaa", "too easy to guess"),
        ("password1234", "list of common passwords"),
    ):
        result = _run(db_url, "users", "add", "dana", "--password-stdin", stdin=weak + "\n")
        assert result.exit_code == 2 and reason in result.output, result.output
    assert _run(db_url, "users", "list", "--json").output.strip() == "[]"


def test_users_unlock(db_url: str) -> None:
    store = open_store(db_url)
    try:
        store.accounts.add_user("alice", PASSWORD, "clinician")
        for _ in range(5):
            with pytest.raises(InvalidCredentialsError):
                store.accounts.sign_in("alice", "guess guess guess", client="ward-3")
        with pytest.raises(AccountLockedError):
            store.accounts.sign_in("alice", PASSWORD, client="ward-3")
    finally:
        store.close()
    result = _run(db_url, "users", "unlock", "Alice")
    assert result.exit_code == 0, result.output
    assert "unlocked 'alice' (5 failed sign-ins cleared)" in result.output
    store = open_store(db_url)
    try:
        assert store.accounts.sign_in("alice", PASSWORD, client="ward-3").user.username == "alice"
        (event,) = store.audit_log(None, action="user_unlock")
        assert event.details == {"target": "alice", "cleared": 5, "via": "local operator"}
    finally:
        store.close()
    missing = _run(db_url, "users", "unlock", "nobody")
    assert missing.exit_code == 2 and "no user named" in missing.output


def test_password_is_never_a_cli_argument(db_url: str) -> None:
    result = _run(db_url, "users", "add", "eve", "--password", PASSWORD)
    assert result.exit_code != 0
    assert "No such option" in result.output


def test_reviews_export(db_url: str, tmp_path: Path) -> None:
    store = open_store(db_url)
    try:
        alice = store.accounts.add_user("alice", PASSWORD, "clinician")
        case = store.create_case(alice, tiny_scan()).case_id
        store.record_prediction(
            alice, case, model_name="m", model_version="1", label="nodule", probability=0.4
        )
        store.submit_review(alice, case, "disagree", comment="secretly fine")
    finally:
        store.close()
    out = tmp_path / "out.csv"
    result = _run(db_url, "reviews", "export", str(out), "--no-comments")
    assert result.exit_code == 0, result.output
    assert f"wrote 1 reviews to {out}" in result.output
    (row,) = csv.DictReader(out.open(encoding="utf-8"))
    assert (row["case_id"], row["reader"], row["decision"], row["comment"]) == (
        case,
        "alice",
        "disagree",
        "",
    )
