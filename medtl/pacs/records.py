"""What medtl keeps about PACS studies: the encrypted link back to the original study and
the status of each SR push, in two tables of the review database.

The link (original study, series and SOP instance UIDs) is sealed with AES-256-GCM under a
key derived by HKDF-SHA256 from the site secret (``MEDTL_HOME/secrets/deid.key``, see
:func:`medtl.io.deid.load_key`); the case pseudonym is the associated data, so a sealed link
copied onto another case does not open. A stolen database without the key file reveals no
identifier. Push rows hold a status, attempt count and a short reason (never PHI).

The tables live in their own SQLAlchemy ``MetaData``; schema version 6 of the review store
creates them (:mod:`medtl.review.migrations` keeps a frozen copy of these definitions), and
they are still created when missing (``CREATE TABLE IF NOT EXISTS``) for a database opened
without the store.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    select,
    update,
)

from medtl.pacs.types import PacsError, SourceLink
from medtl.review.models import UTCDateTime

if TYPE_CHECKING:  # pragma: no cover
    from medtl.review.db import Database

logger = logging.getLogger(__name__)

PUSH_STATUSES = ("pending", "failed", "done")
_HKDF_INFO = b"medtl pacs link v1"
_PREFIX = "v1:"

metadata = MetaData()
links_table = Table(
    "pacs_links",
    metadata,
    Column("case_id", String(64), primary_key=True),
    Column("sealed", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)
pushes_table = Table(
    "pacs_pushes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("case_id", String(64), nullable=False, index=True),
    Column("prediction_id", Integer, nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", String(255), nullable=True),
    Column("unverified", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("case_id", "prediction_id", name="uq_pacs_push_case_prediction"),
)


@dataclass(frozen=True)
class PushRecord:
    """The state of sending one AI result of a case to the PACS."""

    case_id: str
    prediction_id: int
    status: str
    attempts: int
    last_error: str | None
    unverified: bool
    updated_at: datetime


def ensure_tables(db: Database) -> None:
    """Create the PACS tables when missing (idempotent)."""
    metadata.create_all(db.engine, checkfirst=True)


# --- sealing --------------------------------------------------------------------------------
def _derive(site_key: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(site_key)


def seal_json(value: object, context: str, site_key: bytes) -> str:
    """Encrypt a JSON-able value bound to ``context`` (AES-256-GCM, random 96-bit nonce)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    plain = json.dumps(value, sort_keys=True).encode()
    blob = nonce + AESGCM(_derive(site_key)).encrypt(nonce, plain, context.encode())
    return _PREFIX + base64.urlsafe_b64encode(blob).decode("ascii")


def unseal_json(sealed: str, context: str, site_key: bytes) -> Any:
    """Decrypt what :func:`seal_json` sealed for ``context`` (:class:`PacsError` if not)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not sealed.startswith(_PREFIX):
        raise PacsError("unknown format of a sealed PACS record")
    blob = base64.urlsafe_b64decode(sealed[len(_PREFIX) :])
    try:
        plain = AESGCM(_derive(site_key)).decrypt(blob[:12], blob[12:], context.encode())
    except InvalidTag:
        raise PacsError(
            "the link to the original study cannot be decrypted: wrong site key "
            "(MEDTL_HOME/secrets/deid.key) or a damaged record"
        ) from None
    return json.loads(plain)


def seal(link: SourceLink, case_id: str, site_key: bytes) -> str:
    """Encrypt ``link`` for ``case_id``."""
    return seal_json(link.__dict__, case_id, site_key)


def unseal(sealed: str, case_id: str, site_key: bytes) -> SourceLink:
    """Decrypt a link sealed by :func:`seal` (raises :class:`PacsError` if it does not open)."""
    return SourceLink(**unseal_json(sealed, case_id, site_key))


# --- links ------------------------------------------------------------------------------------
def save_link(db: Database, case_id: str, link: SourceLink, site_key: bytes) -> None:
    """Store (or keep) the sealed link of a case."""
    ensure_tables(db)
    sealed = seal(link, case_id, site_key)

    def work(session) -> None:
        if (
            session.scalar(select(links_table.c.case_id).where(links_table.c.case_id == case_id))
            is None
        ):
            session.execute(
                insert(links_table).values(case_id=case_id, sealed=sealed, created_at=db.now())
            )

    db.write(work, what="PACS link")


def load_link(db: Database, case_id: str, site_key: bytes) -> SourceLink:
    """The original study of a case (raises :class:`PacsError` when it has none)."""
    ensure_tables(db)
    sealed = db.read(
        lambda s: s.scalar(select(links_table.c.sealed).where(links_table.c.case_id == case_id))
    )
    if sealed is None:
        raise PacsError(f"case {case_id} did not come from the PACS (no link to a study)")
    return unseal(sealed, case_id, site_key)


# --- pushes -----------------------------------------------------------------------------------
def _record(row) -> PushRecord:
    return PushRecord(
        row.case_id,
        row.prediction_id,
        row.status,
        row.attempts,
        row.last_error,
        bool(row.unverified),
        row.updated_at,
    )


def get_push(db: Database, case_id: str, prediction_id: int) -> PushRecord | None:
    """The push record of one AI result, or ``None``."""
    ensure_tables(db)
    t = pushes_table
    row = db.read(
        lambda s: s.execute(
            select(t).where(t.c.case_id == case_id, t.c.prediction_id == prediction_id)
        ).first()
    )
    return _record(row) if row is not None else None


def mark_push(
    db: Database,
    case_id: str,
    prediction_id: int,
    status: str,
    *,
    error: str | None = None,
    attempted: bool = False,
    unverified: bool = False,
) -> PushRecord:
    """Create or update the push record of one AI result.

    Args:
        db: the review database.
        case_id: the case pseudonym.
        prediction_id: the AI result pushed.
        status: ``pending``, ``failed`` or ``done``.
        error: the reason of a failure (short, no PHI).
        attempted: count one more attempt.
        unverified: the SR says no clinician reviewed the result.

    Returns:
        The record after the change.
    """
    if status not in PUSH_STATUSES:
        raise ValueError(f"unknown push status {status!r}")
    ensure_tables(db)
    t = pushes_table

    def work(session) -> None:
        now = db.now()
        row = session.execute(
            select(t.c.id, t.c.attempts).where(
                t.c.case_id == case_id, t.c.prediction_id == prediction_id
            )
        ).first()
        values = {
            "status": status,
            "last_error": (error or None) and error[:255],
            "updated_at": now,
            "unverified": int(unverified),
        }
        if row is None:
            session.execute(
                insert(t).values(
                    case_id=case_id,
                    prediction_id=prediction_id,
                    created_at=now,
                    attempts=int(attempted),
                    **values,
                )
            )
        else:
            session.execute(
                update(t)
                .where(t.c.id == row.id)
                .values(attempts=row.attempts + int(attempted), **values)
            )

    db.write(work, what="PACS push status")
    record = get_push(db, case_id, prediction_id)
    assert record is not None
    return record


def list_pushes(db: Database, status: str | None = None) -> list[PushRecord]:
    """Push records, oldest first, optionally of one status."""
    ensure_tables(db)
    t = pushes_table
    query = select(t).order_by(t.c.created_at, t.c.id)
    if status is not None:
        query = query.where(t.c.status == status)
    return db.read(lambda s: [_record(r) for r in s.execute(query)])


def linked_cases(db: Database) -> list[str]:
    """Case pseudonyms that came from the PACS (they have a sealed link), oldest first."""
    ensure_tables(db)
    t = links_table
    return db.read(lambda s: list(s.scalars(select(t.c.case_id).order_by(t.c.created_at))))
