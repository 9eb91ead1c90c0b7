"""Oversight part of the review store: the audit log, exports and reader agreement.

:class:`Oversight` is mixed into :class:`~medtl.review.store.ReviewStore`; its methods are
for admins and researchers (and the local operator, ``actor=None``). The work is done in
:mod:`medtl.review.worklist` (audit query), :mod:`medtl.review.export` (CSV, agreement)
and :mod:`medtl.review.sr` (DICOM SR).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from medtl.review.auth import UserInfo, require_role
from medtl.review.db import Database
from medtl.review.schemas import AuditInfo
from medtl.review.worklist import UNBLINDED_ROLES, query_audit

if TYPE_CHECKING:  # pragma: no cover
    from medtl.review.export import AgreementReport
    from medtl.review.store import ReviewStore


class Oversight:
    """Audit log, exports and agreement of a store whose database is ``self.db``."""

    db: Database

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

        return self.db.read(
            lambda s: query_audit(s, case_id=case_id, action=action, username=username, since=since)
        )

    # --- exports and agreement (implemented in medtl.review.export) -------------------------
    def export_reviews_csv(
        self: ReviewStore,
        actor: UserInfo | None,
        dest: Path | TextIO,
        *,
        include_comments: bool = True,
    ) -> int:
        """Write every review as CSV (see :class:`~medtl.review.schemas.ReviewExportRow`).

        Returns:
            The number of rows written. Records an ``export`` audit event.
        """
        from medtl.review.export import export_reviews_csv

        return export_reviews_csv(self, actor, dest, include_comments=include_comments)

    def export_sr(
        self: ReviewStore,
        actor: UserInfo | None,
        case_id: str,
        dest: Path,
        *,
        prediction_id: int | None = None,
    ) -> Path:
        """Write a case's AI result as a DICOM Structured Report (needs ``highdicom``)."""
        from medtl.review.sr import export_sr

        return export_sr(self, actor, case_id, dest, prediction_id=prediction_id)

    def agreement(self: ReviewStore, actor: UserInfo | None) -> AgreementReport:
        """Reader agreement per case and across readers (admins and researchers).

        Clinicians are refused: agreement is derived from other readers' verdicts, which
        blinded reading keeps from them.

        Returns:
            Per-case agreement, pairwise Cohen's kappa and Fleiss' kappa.
        """
        require_role(actor, *UNBLINDED_ROLES)
        from medtl.review.export import agreement_report

        return agreement_report(self)
