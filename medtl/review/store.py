"""The review store's service API: cases, images, AI results, reviews, worklist, audit, exports.

The Streamlit app calls only this class (and :class:`~medtl.review.auth.Accounts` through
:attr:`ReviewStore.accounts`). Every call that a user makes takes the signed-in ``actor``
(a :class:`~medtl.review.auth.UserInfo`; ``None`` is the local operator on the command
line), checks its role, and writes an audit event in the same transaction as the change.

The work is done by topic modules: :mod:`~medtl.review.cases` (cases, images, opening a
case), :mod:`~medtl.review.readings` (AI results and reviews), :mod:`~medtl.review.worklist`
(status, worklist and audit queries) and :mod:`~medtl.review.export`. This class checks
roles and is the one documented entry point.

Case status is stored with each AI result and review (see :mod:`medtl.review.status`).

Reviews are blinded between clinicians: until a clinician has submitted their own review of
a case, they see no other verdict and nothing derived from one (status, readers); researchers
and admins see all of them.

Example::

    store = ReviewStore.open()                      # MEDTL_HOME/db/review.sqlite
    session = store.accounts.sign_in("alice", pw)
    case = store.create_case(session.user, deidentified_scan)
    store.record_prediction(session.user, case.case_id, model_name="cxr-nodule",
                            model_version="1.0", label="nodule", probability=0.83)
    store.submit_review(session.user, case.case_id, "agree", x=120, y=88)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher

from medtl.paths import home_subdir
from medtl.review import casefiles, cases, readings
from medtl.review.auth import Accounts, AuthPolicy, UserInfo, require_role
from medtl.review.casefiles import PHIRiskError
from medtl.review.db import Clock, Database, RetryPolicy
from medtl.review.errors import CaseExistsError, CaseNotFoundError, ReviewInputError
from medtl.review.migrations import check_version, upgrade
from medtl.review.models import utcnow
from medtl.review.oversight import Oversight
from medtl.review.readings import MAX_COMMENT, PredictionInput, ReviewInput
from medtl.review.schemas import (
    CaseDetail,
    CaseInfo,
    ImageInfo,
    PredictionInfo,
    ReviewInfo,
)
from medtl.review.worklist import (
    BLIND,
    STATUSES,
    Viewer,
    case_info,
    case_status,
    latest_decisions,
    query_worklist,
)

if TYPE_CHECKING:  # pragma: no cover
    from medtl.artifacts.details import PredictionDetails
    from medtl.io.scan import Scan

    pass

logger = logging.getLogger(__name__)

READERS = ("clinician", "admin")
EVERYONE = ("clinician", "researcher", "admin")
__all__ = [
    "MAX_COMMENT",
    "STATUSES",
    "CaseExistsError",
    "CaseNotFoundError",
    "PHIRiskError",
    "ReviewInputError",
    "ReviewStore",
    "case_status",
    "latest_decisions",
]


class ReviewStore(Oversight):
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
        return cls(
            db, cases_dir=cases_dir, policy=policy, hasher=hasher, pseudonym_key=pseudonym_key
        )

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
        case_id = cases.create_case(self, actor, data, source_key=source_key, modality=modality)
        return self.get_case(case_id, viewer=actor)

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
        image_id = cases.add_image(self, actor, case_id, data)
        return next(i for i in self.get_images(case_id) if i.id == image_id)

    def get_case(self, case_id: str, *, viewer: Viewer = BLIND) -> CaseInfo:
        """A case's summary, without recording a view (for lists; see :meth:`open_case`).

        Args:
            case_id: the case pseudonym.
            viewer: who will see it (keyword-only). The default, :data:`BLIND`, hides
                everything derived from readers' verdicts; pass the signed-in user (a
                clinician sees status and readers once they have reviewed the case), or
                ``None`` for the local operator.

        Returns:
            The case summary as ``viewer`` may see it.
        """
        return self.db.read(lambda s: case_info(cases.load_case(s, case_id), viewer=viewer))

    def get_images(self, case_id: str) -> list[ImageInfo]:
        """The stored images of a case (no audit event; the app calls :meth:`open_case`)."""
        return self.db.read(
            lambda s: [
                cases.image_info(self.cases_dir, i, case_id)
                for i in cases.load_case(s, case_id).images
            ]
        )

    def open_case(self, actor: UserInfo | None, case_id: str) -> CaseDetail:
        """Open a case for viewing; records a ``view`` audit event.

        Args:
            actor: the viewer (any role).
            case_id: the case pseudonym.

        Returns:
            The case with its images, AI results and reviews. Until a clinician has
            submitted their own review of the case, they get no reviews and a blinded case
            summary (blinded reading); afterwards, and for researchers and admins, all.

        Raises:
            CaseNotFoundError: no such case.
        """
        require_role(actor, *EVERYONE)
        return cases.open_case(self, actor, case_id)

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
        details: PredictionDetails | dict[str, Any] | None = None,
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
            details: a :class:`~medtl.artifacts.PredictionDetails` (stored as its validated
                JSON), or a dict of small JSON-able extras (no PHI).

        Returns:
            The stored result.
        """
        require_role(actor, *READERS)
        result = PredictionInput.of(
            model_name, model_version, label, probability, threshold, image_id, details=details
        )
        return readings.record_prediction(self, actor, case_id, result)

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
        form = ReviewInput(decision, x, y, slice_index, comment, prediction_id, submission_id)
        info = readings.submit_review(self, actor, case_id, form)
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
        after: str | None = None,
    ) -> list[CaseInfo]:
        """Cases to work on, oldest first.

        Args:
            actor: the user asking. A clinician's rows are blinded until they have reviewed
                the case (status ``new``/``awaiting_review``, no readers, ``blinded=True``),
                and status and reader filters match only what they may see.
            status: one status or several (see :data:`STATUSES`); default all.
            since: only cases created at or after this UTC time.
            until: only cases created before this UTC time.
            model: only cases with an AI result from this model name.
            reader: only cases this user name has reviewed.
            not_reviewed_by: only cases this user name has not reviewed (a reader's queue).
            limit: at most this many cases (a page).
            after: the case ID of the previous page's last row: the page starts after it
                (keyset pagination; filters and pages run in SQL, see
                :mod:`medtl.review.worklist`).

        Returns:
            Case summaries sorted by creation time, then case number.
        """
        require_role(actor, *EVERYONE)
        wanted = {status} if isinstance(status, str) else set(status or STATUSES)
        unknown = wanted - set(STATUSES)
        if unknown:
            raise ReviewInputError(f"unknown status {sorted(unknown)}; use {STATUSES}")

        return self.db.read(
            lambda s: query_worklist(
                s,
                wanted,
                since=since,
                until=until,
                model=model,
                reader=reader,
                not_reviewed_by=not_reviewed_by,
                limit=limit,
                after=after,
                viewer=actor,
            )
        )
