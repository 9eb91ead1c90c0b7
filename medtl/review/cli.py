"""``medtl users ...`` and ``medtl reviews ...``: the review store's command line.

``app`` holds two command groups, ``users`` and ``reviews``; ``medtl``'s main app adds it
with ``app.add_typer(medtl.review.cli.app)`` (no name: the groups appear at top level).
Commands run as the local operator on the server (recorded as such in the audit log).

Passwords are never command-line arguments (they would show in process lists and shell
history): ``users add`` prompts twice, or reads one line from standard input with
``--password-stdin``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from medtl._cli import fail as _fail

app = typer.Typer(
    help="Review store: accounts and exports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
users_app = typer.Typer(help="Manage local accounts of the clinician app.", no_args_is_help=True)
reviews_app = typer.Typer(
    help="Export clinicians' reviews; import reads done elsewhere.", no_args_is_help=True
)
app.add_typer(users_app, name="users")
app.add_typer(reviews_app, name="reviews")

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="SQLAlchemy URL (default: $MEDTL_DATABASE_URL or MEDTL_HOME)."),
]


def _open(db: str | None):  # type: ignore[no-untyped-def]
    from medtl.review.store import ReviewStore

    return ReviewStore.open(db)


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="Sign-in name (letters, digits, . _ -).")],
    role: Annotated[str, typer.Option("--role", help="clinician, researcher or admin.")] = (
        "clinician"
    ),
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Create an account (the password is prompted for, or read from stdin)."""
    from medtl.review.db import ReviewStoreError

    password = _read_password(password_stdin)
    try:
        with _open(db) as store:
            user = store.accounts.add_user(username, password, role)
    except ReviewStoreError as exc:
        raise _fail(exc) from None
    typer.echo(f"created {user.role} account {user.username!r}")


@users_app.command("list")
def users_list(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    db: DbOption = None,
) -> None:
    """List accounts with role and status."""
    from medtl.review.db import ReviewStoreError

    try:
        with _open(db) as store:
            users = store.accounts.list_users()
    except ReviewStoreError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "username": u.username,
                        "role": u.role,
                        "active": u.active,
                        "created_at": u.created_at.isoformat(),
                    }
                    for u in users
                ],
                indent=2,
            )
        )
        return
    for u in users:
        typer.echo(f"{u.username:<24} {u.role:<11} {'active' if u.active else 'disabled'}")


@users_app.command("set-role")
def users_set_role(
    username: Annotated[str, typer.Argument(help="Account name.")],
    role: Annotated[str, typer.Argument(help="clinician, researcher or admin.")],
    db: DbOption = None,
) -> None:
    """Change an account's role."""
    from medtl.review.db import ReviewStoreError

    try:
        with _open(db) as store:
            user = store.accounts.set_role(username, role)
    except ReviewStoreError as exc:
        raise _fail(exc) from None
    typer.echo(f"{user.username!r} is now {user.role}")


@users_app.command("disable")
def users_disable(
    username: Annotated[str, typer.Argument(help="Account name.")],
    db: DbOption = None,
) -> None:
    """Disable an account and end its sessions (accounts are never deleted)."""
    _set_active(username, False, db)


@users_app.command("enable")
def users_enable(
    username: Annotated[str, typer.Argument(help="Account name.")],
    db: DbOption = None,
) -> None:
    """Re-enable a disabled account."""
    _set_active(username, True, db)


@users_app.command("unlock")
def users_unlock(
    username: Annotated[str, typer.Argument(help="Account name.")],
    db: DbOption = None,
) -> None:
    """Clear an account's failed sign-ins from every client, so nobody has to wait."""
    from medtl.review.db import ReviewStoreError

    try:
        with _open(db) as store:
            cleared = store.accounts.unlock(username)
    except ReviewStoreError as exc:
        raise _fail(exc) from None
    typer.echo(f"unlocked {username.strip().lower()!r} ({cleared} failed sign-ins cleared)")


def _set_active(username: str, active: bool, db: str | None) -> None:
    from medtl.review.db import ReviewStoreError

    try:
        with _open(db) as store:
            user = store.accounts.set_active(username, active)
    except ReviewStoreError as exc:
        raise _fail(exc) from None
    typer.echo(f"{user.username!r} {'enabled' if active else 'disabled'}")


@reviews_app.command("export")
def reviews_export(
    out: Annotated[Path, typer.Argument(help="CSV file to write.")],
    no_comments: Annotated[
        bool, typer.Option("--no-comments", help="Leave the free-text comment column empty.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Export every review as CSV (columns: data_schemas/review_export.schema.json)."""
    from medtl.review.db import ReviewStoreError

    try:
        with _open(db) as store:
            n = store.export_reviews_csv(None, out, include_comments=not no_comments)
    except (ReviewStoreError, OSError) as exc:
        raise _fail(exc) from None
    typer.echo(f"wrote {n} reviews to {out}")


@reviews_app.command("export-sr")
def reviews_export_sr(
    case_id: Annotated[str, typer.Argument(help="Case pseudonym.")],
    out: Annotated[Path, typer.Argument(help="SR file, or a folder (<case>-ai-sr.dcm).")],
    result: Annotated[
        int | None, typer.Option("--result", help="AI result (default: the case's latest).")
    ] = None,
    db: DbOption = None,
) -> None:
    """Export a case's AI result as a pseudonymous DICOM SR (needs the pacs extra)."""
    from medtl.review.db import ReviewStoreError

    try:
        with _open(db) as store:
            path = store.export_sr(None, case_id, out, prediction_id=result)
    except (ReviewStoreError, ValueError, ImportError, OSError) as exc:
        raise _fail(exc) from None
    typer.echo(f"wrote {path}")


@reviews_app.command("import")
def reviews_import(
    reads: Annotated[
        Path, typer.Argument(help="CSV with the columns case_id, reader, verdict[, comment].")
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row; record nothing.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Record reads done outside the app as reviews (with their audit events).

    Every row is checked first: unknown cases or readers, invalid verdicts and repeated
    reads are all listed at once and nothing is recorded (exit status 1). Importing the same
    file again records nothing twice.
    """
    from medtl.review.db import ReviewStoreError
    from medtl.review.importer import ReadsImportError, import_reads

    try:
        with _open(db) as store:
            result = import_reads(store, reads, dry_run=dry_run)
    except ReadsImportError as exc:
        raise _fail(f"{reads.name}: {exc}", code=1) from None
    except (ReviewStoreError, OSError) as exc:
        raise _fail(exc) from None
    if dry_run:
        typer.echo(f"{result.rows} reads checked: all can be recorded (dry run, none recorded)")
        return
    again = f" ({result.already} already recorded by an earlier import)" if result.already else ""
    typer.echo(f"recorded {result.recorded} reviews from {result.rows} reads{again}")
