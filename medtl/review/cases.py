"""Cases and their images: creation, stored files, loading a case, opening it for viewing.

The functions here do the work of the case methods of
:class:`~medtl.review.store.ReviewStore` (which checks roles first and documents the API).
Files are written before the database row and removed again if the transaction fails, so
the database never points to a missing file.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from medtl.review import casefiles
from medtl.review.auth import UserInfo
from medtl.review.casefiles import StoredFile
from medtl.review.db import ReviewStoreError
from medtl.review.errors import CaseExistsError, CaseNotFoundError
from medtl.review.models import Case, Image, Review, add_audit
from medtl.review.schemas import CaseDetail, ImageInfo
from medtl.review.worklist import (
    blinded_for,
    case_info,
    current_reviews,
    prediction_info,
    review_info,
)

if TYPE_CHECKING:  # pragma: no cover
    from medtl.io.scan import Scan
    from medtl.review.store import ReviewStore


def new_case_id(source_key: str | None, pseudonym_key: bytes | None) -> str:
    """A random case ID, or the keyed pseudonym of ``source_key``."""
    if source_key is None:
        return f"CASE-{secrets.token_hex(5).upper()}"
    from medtl.io.deid import pseudonym

    return pseudonym(source_key, key=pseudonym_key, prefix="CASE")


def load_case(session: Session, case_id: str, *, for_update: bool = False) -> Case:
    """The case row with images, predictions and reviews (and their readers) loaded.

    Args:
        session: the open session.
        case_id: the case pseudonym.
        for_update: lock the case row (``SELECT ... FOR UPDATE``; SQLite's write
            transactions are exclusive already), for writes that update its status.

    Raises:
        CaseNotFoundError: ``case_id`` is not a case pseudonym, or no such case.
    """
    if not casefiles.is_case_id(case_id):
        raise CaseNotFoundError(f"not a case ID: {case_id!r}")
    query = (
        select(Case)
        .where(Case.case_id == case_id)
        .options(
            selectinload(Case.images),
            selectinload(Case.predictions),
            selectinload(Case.reviews).selectinload(Review.reader),
        )
    )
    case = session.scalar(query.with_for_update(of=Case) if for_update else query)
    if case is None:
        raise CaseNotFoundError(f"no case {case_id!r}")
    return case


def image_info(cases_dir: Path, image: Image, case_id: str) -> ImageInfo:
    """Plain-data copy of an image row, with its absolute path."""
    return ImageInfo(
        image.id,
        case_id,
        cases_dir / image.relpath,
        image.kind,
        image.sha256,
        image.n_bytes,
        image.modality,
    )


def add_image_row(session: Session, case: Case, stored: StoredFile, now: datetime) -> Image:
    """Insert the row of a file already written under the cases folder."""
    image = Image(
        case_pk=case.id,
        relpath=stored.relpath,
        kind=stored.kind,
        sha256=stored.sha256,
        n_bytes=stored.n_bytes,
        modality=stored.modality,
        created_at=now,
    )
    session.add(image)
    session.flush()
    return image


def create_case(
    store: ReviewStore,
    actor: UserInfo | None,
    data: Scan | bytes | None,
    *,
    source_key: str | None,
    modality: str | None,
) -> str:
    """Create a case (see :meth:`ReviewStore.create_case`); return its ID."""
    payload = casefiles.prepare(data) if data is not None else None
    modality = modality or (payload.modality if payload else None)
    for _ in range(5):
        case_id = new_case_id(source_key, store.pseudonym_key)
        stored = casefiles.write_file(store.cases_dir, case_id, payload) if payload else None

        def work(
            session: Session, case_id: str = case_id, stored: StoredFile | None = stored
        ) -> None:
            if session.scalar(select(Case.id).where(Case.case_id == case_id)) is not None:
                raise CaseExistsError(case_id)
            now = store.db.now()
            case = Case(
                case_id=case_id,
                created_at=now,
                created_by=getattr(actor, "id", None),
                modality=modality,
                status="new",
            )
            session.add(case)
            session.flush()
            if stored is not None:
                add_image_row(session, case, stored, now)
            details = {"images": 1 if stored else 0, "kind": stored.kind if stored else None}
            add_audit(session, now, "upload", user=actor, case_id=case_id, details=details)

        try:
            try:
                store.db.write(work, what="upload")
            except IntegrityError as exc:
                # The same ID committed concurrently (PostgreSQL; SQLite writers queue).
                if not _is_case_id_clash(store, case_id):
                    raise
                raise CaseExistsError(case_id) from exc
        except CaseExistsError:
            casefiles.discard(store.cases_dir, stored)
            if source_key is not None:
                raise
            continue  # random ID collided: draw another
        except BaseException:
            casefiles.discard(store.cases_dir, stored)
            raise
        return case_id
    raise ReviewStoreError("could not allocate a unique case ID")  # pragma: no cover


def _is_case_id_clash(store: ReviewStore, case_id: str) -> bool:
    return store.db.read(
        lambda s: s.scalar(select(Case.id).where(Case.case_id == case_id)) is not None
    )


def add_image(store: ReviewStore, actor: UserInfo | None, case_id: str, data: Scan | bytes) -> int:
    """Store one more image of a case (see :meth:`ReviewStore.add_image`); return its row ID."""
    payload = casefiles.prepare(data)
    store.db.read(lambda s: load_case(s, case_id))  # CaseNotFoundError before any write
    stored = casefiles.write_file(store.cases_dir, case_id, payload)

    def work(session: Session) -> int:
        case = load_case(session, case_id)
        now = store.db.now()
        image = add_image_row(session, case, stored, now)
        add_audit(
            session,
            now,
            "upload",
            user=actor,
            case_id=case_id,
            details={"images": 1, "kind": stored.kind},
        )
        return image.id

    try:
        return store.db.write(work, what="upload")
    except BaseException:
        casefiles.discard(store.cases_dir, stored)
        raise


def open_case(store: ReviewStore, actor: UserInfo | None, case_id: str) -> CaseDetail:
    """Load a case for viewing and record a ``view`` (see :meth:`ReviewStore.open_case`)."""

    def work(session: Session) -> CaseDetail:
        case = load_case(session, case_id)
        add_audit(session, store.db.now(), "view", user=actor, case_id=case_id)
        # Blinded reading: other readers' reviews only once the viewer has submitted one
        # of the current AI result; their own earlier reviews stay visible.
        blinded = blinded_for(actor, (r.reader_pk for r in current_reviews(case)))
        own = getattr(actor, "id", None)
        reviews = [
            review_info(r, case_id) for r in case.reviews if not blinded or r.reader_pk == own
        ]
        return CaseDetail(
            case_info(case, viewer=actor),
            [image_info(store.cases_dir, i, case_id) for i in case.images],
            [prediction_info(p, case_id) for p in case.predictions],
            reviews,
        )

    return store.db.write(work, what="case view")
