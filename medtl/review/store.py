"""The review store's service API: cases, images, AI results, reviews, worklist, audit, exports.

The Streamlit app calls only this class (and :class:`~medtl.review.auth.Accounts` through
:attr:`ReviewStore.accounts`). Every call that a user makes takes the signed-in ``actor``
(a :class:`~medtl.review.auth.UserInfo`; ``None`` is the local operator on the command
line), checks its role, and writes an audit event in the same transaction as the change.

Case status is derived, never stored (see :mod:`medtl.review.worklist`).

Reviews are blinded between clinicians: a clinician sees only their own reviews of a case;
researchers and admins see all of them.

Example::

    store = ReviewStore.open()                      # MEDTL_HOME/db/review.sqlite
    session = store.accounts.sign_in("alice", pw)
    case = store.create_case(session.user, deidentified_scan)
    store.record_prediction(session.user, case.case_id, model_name="cxr-nodule",
                            model_version="1.0", label="nodule", probability=0.83)
    store.submit_review(session.user, case.case_id, "agree", x=120, y=88)
"""

from __future__ import annotations

import json
import logging
import math
import secrets
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from medtl.io.scan import Scan
from medtl.paths import home_subdir
from medtl.review import casefiles
from medtl.review.auth import Accounts, AuthPolicy, UserInfo, require_role
from medtl.review.casefiles import PHIRiskError, StoredFile
from medtl.review.db import Clock, Database, RetryPolicy, ReviewStoreError
from medtl.review.migrations import check_version, upgrade
from medtl.review.models import (
    DECISIONS,
    Case,
    Image,
    Prediction,
    Review,
    User,
    add_audit,
    utcnow,
)
from medtl.review.schemas import (
    AuditInfo,
    CaseDetail,
    CaseInfo,
    ImageInfo,
    PredictionInfo,
    ReviewInfo,
)
from medtl.review.worklist import (
    STATUSES,
    case_info,
    case_status,
    latest_decisions,
    prediction_info,
    query_audit,
    query_worklist,
    review_info,
)

if TYPE_CHECKING:  # pragma: no cover
    from medtl.review.export import AgreementReport

logger = logging.getLogger(__name__)

READERS = ("clinician", "admin")
EVERYONE = ("clinician", "researcher", "admin")
MAX_COMMENT = 4000
__all__ = ["STATUSES", "CaseExistsError", "CaseNotFoundError", "PHIRiskError",
           "ReviewInputError", "ReviewStore", "case_status", "latest_decisions"]


class CaseNotFoundError(ReviewStoreError, KeyError):
    """No case with that pseudonym."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "case not found"


class CaseExistsError(ReviewStoreError):
    """A case for this source already exists (``case_id`` names it)."""

    def __init__(self, case_id: str) -> None:
        super().__init__(f"this study was already uploaded as case {case_id}")
        self.case_id = case_id


class ReviewInputError(ReviewStoreError, ValueError):
    """Invalid review, prediction or filter input (the message says which field)."""


class ReviewStore:
    """Cases, AI results, reviews, worklist, audit and exports on one database.

    Args:
        db: the database, schema at the current version.
        cases_dir: folder of the stored files (default ``MEDTL_HOME/cases``).
        policy: account rules (rate limit, sessions, passwords).
        hasher: argon2 ``PasswordHasher`` (tests pass cheap parameters).
        pseudonym_key: key of :func:`medtl.io.deid.pseudonym` for case IDs derived from a
            source key (default: the site secret under ``MEDTL_HOME/secrets``).
    """

    def __init__(
        self,
        db: Database,
        *,
        cases_dir: Path | None = None,
        policy: AuthPolicy | None = None,
        hasher: PasswordHasher | None = None,
        pseudonym_key: bytes | None = None,
    ) -> None:
        self.db = db
        self._cases_dir = Path(cases_dir) if cases_dir is not None else None
        self.pseudonym_key = pseudonym_key
        self.accounts = Accounts(db, policy=policy, hasher=hasher)

    @classmethod
    def open(
        cls,
        url: str | None = None,
        *,
        upgrade_schema: bool = True,
        cases_dir: Path | None = None,
        clock: Clock = utcnow,
        retry: RetryPolicy | None = None,
        busy_timeout_ms: int = 5000,
        policy: AuthPolicy | None = None,
        hasher: PasswordHasher | None = None,
        pseudonym_key: bytes | None = None,
    ) -> ReviewStore:
        """Open (and by default create or upgrade) the store at ``url``.

        Args:
            url: SQLAlchemy URL; default ``$MEDTL_DATABASE_URL`` or ``MEDTL_HOME/db``.
            upgrade_schema: apply missing schema steps; ``False`` only checks the version.
            cases_dir: where files go (default ``MEDTL_HOME/cases``).
            clock: current UTC time (tests inject one).
            retry: retry policy of writes on a locked database.
            busy_timeout_ms: SQLite lock wait before a try counts as failed.
            policy: account rules.
            hasher: argon2 ``PasswordHasher``.
            pseudonym_key: key for case pseudonyms derived from a source key.

        Returns:
            The store.

        Raises:
            SchemaVersionError: the database is newer than this medtl (or, with
                ``upgrade_schema=False``, older).
        """
        db = Database.open(url, busy_timeout_ms=busy_timeout_ms, retry=retry, clock=clock)
        try:
            if upgrade_schema:
                upgrade(db)
            check_version(db)
        except BaseException:
            db.dispose()
            raise
        return cls(db, cases_dir=cases_dir, policy=policy, hasher=hasher,
                   pseudonym_key=pseudonym_key)

    def close(self) -> None:
        """Release the database connections."""
        self.db.dispose()

    def __enter__(self) -> ReviewStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def cases_dir(self) -> Path:
        """Root folder of stored case files."""
        if self._cases_dir is None:
            self._cases_dir = home_subdir("cases")
        return self._cases_dir

    # --- cases and images ---------------------------------------------------------------
    def _new_case_id(self, source_key: str | None) -> str:
        if source_key is None:
            return f"CASE-{secrets.token_hex(5).upper()}"
        from medtl.io.deid import pseudonym

        return pseudonym(source_key, key=self.pseudonym_key, prefix="CASE")

    def create_case(
        self,
        actor: UserInfo | None,
        data: Scan | bytes | None = None,
        *,
        source_key: str | None = None,
        modality: str | None = None,
    ) -> CaseInfo:
        """Create a case, optionally with its first de-identified image.

        Args:
            actor: the uploading user (clinician or admin).
            data: a de-identified :class:`~medtl.io.Scan` or de-identified DICOM bytes
                (see :meth:`add_image`), or ``None``.
            source_key: a stable, already pseudonymous key of the source (e.g. the
                de-identified StudyInstanceUID): the case ID is its keyed pseudonym, so the
                same study is not uploaded twice. Default: a random case ID.
            modality: DICOM modality code, if ``data`` does not say.

        Returns:
            The new case.

        Raises:
            CaseExistsError: a case for ``source_key`` exists.
            PHIRiskError: ``data`` is not known to be de-identified.
        """
        require_role(actor, *READERS)
        payload = casefiles.prepare(data) if data is not None else None
        modality = modality or (payload.modality if payload else None)
        for _ in range(5):
            case_id = self._new_case_id(source_key)
            stored = self._write_file(case_id, payload) if payload else None

            def work(
                session: Session, case_id: str = case_id, stored: StoredFile | None = stored
            ) -> None:
                if session.scalar(select(Case.id).where(Case.case_id == case_id)) is not None:
                    raise CaseExistsError(case_id)
                now = self.db.now()
                case = Case(case_id=case_id, created_at=now, created_by=getattr(
                    actor, "id", None), modality=modality)
                session.add(case)
                session.flush()
                if stored is not None:
                    self._add_image_row(session, case, stored, now)
                add_audit(session, now, "upload", user=actor, case_id=case_id, details={
                    "images": 1 if stored else 0, "kind": stored.kind if stored else None})

            try:
                self.db.write(work, what="upload")
            except CaseExistsError:
                self._discard(stored)
                if source_key is not None:
                    raise
                continue  # random ID collided: draw another
            except BaseException:
                self._discard(stored)
                raise
            return self.get_case(case_id)
        raise ReviewStoreError("could not allocate a unique case ID")  # pragma: no cover

    def add_image(self, actor: UserInfo | None, case_id: str, data: Scan | bytes) -> ImageInfo:
        """Store one more de-identified image for a case.

        Args:
            actor: the uploading user (clinician or admin).
            case_id: the case pseudonym.
            data: a de-identified :class:`~medtl.io.Scan` (stored as ``.npz``: pixels,
                geometry and the Scan's non-PHI meta), or DICOM bytes whose
                PatientIdentityRemoved is ``YES`` (stored as is). Other bytes are refused:
                pass the loaded, de-identified Scan instead.

        Returns:
            The stored image.
        """
        require_role(actor, *READERS)
        payload = casefiles.prepare(data)
        self.get_case(case_id)  # raises CaseNotFoundError before any file is written
        stored = self._write_file(case_id, payload)

        def work(session: Session) -> int:
            case = self._case(session, case_id)
            now = self.db.now()
            image = self._add_image_row(session, case, stored, now)
            add_audit(session, now, "upload", user=actor, case_id=case_id,
                      details={"images": 1, "kind": stored.kind})
            return image.id

        try:
            image_id = self.db.write(work, what="upload")
        except BaseException:
            self._discard(stored)
            raise
        return next(i for i in self.get_images(case_id) if i.id == image_id)

    def _write_file(self, case_id: str, payload: casefiles.Payload) -> StoredFile:
        return casefiles.write_file(self.cases_dir, case_id, payload)

    def _discard(self, stored: StoredFile | None) -> None:
        casefiles.discard(self.cases_dir, stored)

    @staticmethod
    def _add_image_row(session: Session, case: Case, stored: StoredFile, now: datetime) -> Image:
        image = Image(case_pk=case.id, relpath=stored.relpath, kind=stored.kind,
                      sha256=stored.sha256, n_bytes=stored.n_bytes, modality=stored.modality,
                      created_at=now)
        session.add(image)
        session.flush()
        return image

    @staticmethod
    def _case(session: Session, case_id: str) -> Case:
        if not casefiles.is_case_id(case_id):
            raise CaseNotFoundError(f"not a case ID: {case_id!r}")
        case = session.scalar(select(Case).where(Case.case_id == case_id).options(
            selectinload(Case.images), selectinload(Case.predictions),
            selectinload(Case.reviews).selectinload(Review.reader)))
        if case is None:
            raise CaseNotFoundError(f"no case {case_id!r}")
        return case

    @staticmethod
    def _case_info(case: Case) -> CaseInfo:
        return case_info(case)

    def _image_info(self, image: Image, case_id: str) -> ImageInfo:
        return ImageInfo(image.id, case_id, self.cases_dir / image.relpath, image.kind,
                         image.sha256, image.n_bytes, image.modality)

    def get_case(self, case_id: str) -> CaseInfo:
        """A case's summary, without recording a view (for lists; see :meth:`open_case`)."""
        return self.db.read(lambda s: self._case_info(self._case(s, case_id)))

    def get_images(self, case_id: str) -> list[ImageInfo]:
        """The stored images of a case (no audit event; the app calls :meth:`open_case`)."""
        return self.db.read(lambda s: [self._image_info(i, case_id)
                                       for i in self._case(s, case_id).images])

    def open_case(self, actor: UserInfo | None, case_id: str) -> CaseDetail:
        """Open a case for viewing; records a ``view`` audit event.

        Args:
            actor: the viewer (any role).
            case_id: the case pseudonym.

        Returns:
            The case with its images, AI results and reviews. Clinicians get only their own
            reviews (blinded reading); researchers and admins get all.

        Raises:
            CaseNotFoundError: no such case.
        """
        require_role(actor, *EVERYONE)

        def work(session: Session) -> CaseDetail:
            case = self._case(session, case_id)
            add_audit(session, self.db.now(), "view", user=actor, case_id=case_id)
            blinded = actor is not None and actor.role == "clinician"
            reviews = [review_info(r, case_id) for r in case.reviews
                       if not blinded or r.reader_pk == actor.id]
            return CaseDetail(self._case_info(case),
                              [self._image_info(i, case_id) for i in case.images],
                              [prediction_info(p, case_id) for p in case.predictions], reviews)

        return self.db.write(work, what="case view")

    def load_image(self, image: ImageInfo) -> Scan | bytes:
        """Read a stored image back: a :class:`Scan` for ``scan`` images, else the bytes."""
        return casefiles.load_file(image.path, image.kind)

    # --- predictions and reviews ------------------------------------------------------
    def record_prediction(
        self,
        actor: UserInfo | None,
        case_id: str,
        *,
        model_name: str,
        model_version: str,
        label: str,
        probability: float,
        threshold: float | None = None,
        image_id: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> PredictionInfo:
        """Save an AI result for a case (audit ``predict``).

        Args:
            actor: the user who ran the model.
            case_id: the case pseudonym.
            model_name: model package name.
            model_version: its version.
            label: the label reported (e.g. ``nodule``).
            probability: calibrated probability in [0, 1].
            threshold: operating-point threshold used for ``label``.
            image_id: the image the model saw.
            details: small JSON-able extras (no PHI), e.g. saliency peak.

        Returns:
            The stored result.
        """
        require_role(actor, *READERS)
        if not (isinstance(probability, int | float) and 0.0 <= float(probability) <= 1.0):
            raise ReviewInputError("probability must be a number in [0, 1]")
        if not model_name or not model_version or not label:
            raise ReviewInputError("model_name, model_version and label are required")
        if details is not None:
            json.dumps(details)  # fail early on values the JSON column cannot hold

        def work(session: Session) -> PredictionInfo:
            case = self._case(session, case_id)
            if image_id is not None and image_id not in {i.id for i in case.images}:
                raise ReviewInputError(f"image {image_id} does not belong to case {case_id}")
            now = self.db.now()
            p = Prediction(case_pk=case.id, image_pk=image_id, model_name=model_name,
                           model_version=model_version, label=label,
                           probability=float(probability), threshold=threshold,
                           details=details, created_at=now, created_by=getattr(actor, "id", None))
            session.add(p)
            session.flush()
            add_audit(session, now, "predict", user=actor, case_id=case_id, details={
                "model": model_name, "version": model_version, "prediction_id": p.id})
            return prediction_info(p, case_id)

        return self.db.write(work, what="AI result")

    def submit_review(
        self,
        actor: UserInfo,
        case_id: str,
        decision: str,
        *,
        x: float | None = None,
        y: float | None = None,
        slice_index: int | None = None,
        comment: str | None = None,
        prediction_id: int | None = None,
        submission_id: str | None = None,
    ) -> ReviewInfo:
        """Save a reader's review of a case's AI result (audit ``review``).

        A locked database is retried (see :class:`~medtl.review.db.RetryPolicy`); if it
        stays locked, :class:`~medtl.review.db.StoreBusyError` is raised and nothing is
        saved, so the app must keep the form. Passing the same ``submission_id`` again (a
        resubmitted form) returns the first review instead of storing a second one.

        Args:
            actor: the reader (clinician or admin; required).
            case_id: the case pseudonym.
            decision: ``agree``, ``disagree`` or ``uncertain``.
            x: finding column in pixels (optional, with ``y``).
            y: finding row in pixels.
            slice_index: finding slice for volumes.
            comment: free text (up to 4000 characters).
            prediction_id: the AI result reviewed (default: the case's latest).
            submission_id: idempotency key chosen by the client (e.g. a UUID per form).

        Returns:
            The saved review.
        """
        if actor is None:
            raise ReviewInputError("a review needs a signed-in reader")
        require_role(actor, *READERS)
        if decision not in DECISIONS:
            raise ReviewInputError(f"decision must be one of {', '.join(DECISIONS)}")
        if (x is None) != (y is None):
            raise ReviewInputError("a finding location needs both x and y")
        for name, value in (("x", x), ("y", y)):
            if value is not None and not (math.isfinite(float(value)) and float(value) >= 0):
                raise ReviewInputError(f"{name} must be a finite, non-negative pixel position")
        if slice_index is not None and (int(slice_index) != slice_index or slice_index < 0):
            raise ReviewInputError("slice_index must be a non-negative integer")
        if comment is not None and len(comment) > MAX_COMMENT:
            raise ReviewInputError(f"comments are limited to {MAX_COMMENT} characters")
        if submission_id is not None and not 1 <= len(submission_id) <= 64:
            raise ReviewInputError("submission_id must be 1-64 characters")

        def work(session: Session) -> ReviewInfo:
            if submission_id is not None:
                done = session.scalar(select(Review).where(
                    Review.submission_id == submission_id))
                if done is not None:
                    if done.reader_pk != actor.id:
                        raise ReviewInputError("submission_id already used by another reader")
                    return review_info(done, done.case.case_id)
            case = self._case(session, case_id)
            if not case.predictions:
                raise ReviewInputError(f"case {case_id} has no AI result to review yet")
            pred_ids = {p.id for p in case.predictions}
            pred = prediction_id if prediction_id is not None else case.predictions[-1].id
            if pred not in pred_ids:
                raise ReviewInputError(f"AI result {pred} does not belong to case {case_id}")
            reader = session.get(User, actor.id)
            if reader is None or not reader.active:
                raise ReviewInputError("this account is disabled")
            now = self.db.now()
            review = Review(case_pk=case.id, prediction_pk=pred, reader_pk=actor.id,
                            decision=decision, x=None if x is None else float(x),
                            y=None if y is None else float(y),
                            slice_index=None if slice_index is None else int(slice_index),
                            comment=comment or None, created_at=now,
                            submission_id=submission_id)
            review.reader = reader
            session.add(review)
            session.flush()
            add_audit(session, now, "review", user=actor, case_id=case_id, details={
                "decision": decision, "review_id": review.id, "prediction_id": pred})
            return review_info(review, case_id)

        try:
            info = self.db.write(work, what="review")
        except IntegrityError:
            if submission_id is None:
                raise
            # The same form was committed concurrently: return that review.
            info = self.db.write(work, what="review")
        logger.info("review store: review %d saved", info.id)
        return info

    # --- worklist and audit ---------------------------------------------------------------
    def worklist(
        self,
        actor: UserInfo | None,
        *,
        status: str | Iterable[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        model: str | None = None,
        reader: str | None = None,
        not_reviewed_by: str | None = None,
        limit: int | None = None,
    ) -> list[CaseInfo]:
        """Cases to work on, oldest first.

        Args:
            actor: the user asking.
            status: one status or several (see :data:`STATUSES`); default all.
            since: only cases created at or after this UTC time.
            until: only cases created before this UTC time.
            model: only cases with an AI result from this model name.
            reader: only cases this user name has reviewed.
            not_reviewed_by: only cases this user name has not reviewed (a reader's queue).
            limit: at most this many cases.

        Returns:
            Case summaries sorted by creation time, then case number.
        """
        require_role(actor, *EVERYONE)
        wanted = {status} if isinstance(status, str) else set(status or STATUSES)
        unknown = wanted - set(STATUSES)
        if unknown:
            raise ReviewInputError(f"unknown status {sorted(unknown)}; use {STATUSES}")

        return self.db.read(lambda s: query_worklist(
            s, wanted, since=since, until=until, model=model, reader=reader,
            not_reviewed_by=not_reviewed_by, limit=limit))

    def audit_log(
        self,
        actor: UserInfo | None,
        *,
        case_id: str | None = None,
        action: str | None = None,
        username: str | None = None,
        since: datetime | None = None,
    ) -> list[AuditInfo]:
        """Audit events in time order (admins and the local operator only).

        Args:
            actor: an admin, or ``None`` for the local operator.
            case_id: only events about this case pseudonym.
            action: only this action (see :data:`medtl.review.models.AUDIT_ACTIONS`).
            username: only events by this user.
            since: only events at or after this UTC time.

        Returns:
            The matching events, oldest first.
        """
        require_role(actor, "admin")

        return self.db.read(lambda s: query_audit(
            s, case_id=case_id, action=action, username=username, since=since))

    # --- exports and agreement (implemented in medtl.review.export) -------------------------
    def export_reviews_csv(
        self, actor: UserInfo | None, dest: Path | TextIO, *, include_comments: bool = True
    ) -> int:
        """Write every review as CSV (see :class:`~medtl.review.schemas.ReviewExportRow`).

        Returns:
            The number of rows written. Records an ``export`` audit event.
        """
        from medtl.review.export import export_reviews_csv

        return export_reviews_csv(self, actor, dest, include_comments=include_comments)

    def export_sr(
        self, actor: UserInfo | None, case_id: str, dest: Path, *, prediction_id: int | None = None
    ) -> Path:
        """Write a case's AI result as a DICOM Structured Report (needs ``highdicom``)."""
        from medtl.review.export import export_sr

        return export_sr(self, actor, case_id, dest, prediction_id=prediction_id)

    def agreement(self, actor: UserInfo | None) -> AgreementReport:
        """Reader agreement per case and across readers (admins only).

        Returns:
            Per-case agreement, pairwise Cohen's kappa and Fleiss' kappa.
        """
        require_role(actor, "admin")
        from medtl.review.export import agreement_report

        return agreement_report(self)
