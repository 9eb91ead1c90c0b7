"""The review store: accounts, de-identified cases, AI results, clinicians' reviews, audit.

Public API::

    from medtl.review import ReviewStore, StoreBusyError, SessionExpiredError

    store = ReviewStore.open()            # MEDTL_HOME/db/review.sqlite, or $MEDTL_DATABASE_URL
    session = store.accounts.sign_in(username, password)
    user = store.accounts.validate_session(session.token)
    store.worklist(user, status="awaiting_review")

Names are resolved lazily: importing :mod:`medtl.review` does not import SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medtl._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from medtl.review.auth import (
        AccountError,
        AccountLockedError,
        Accounts,
        AuthError,
        AuthPolicy,
        InvalidCredentialsError,
        PermissionDeniedError,
        SessionExpiredError,
        SessionInfo,
        UserInfo,
    )
    from medtl.review.db import Database, RetryPolicy, ReviewStoreError, StoreBusyError
    from medtl.review.export import AgreementReport, fleiss_kappa
    from medtl.review.migrations import CURRENT_VERSION, SchemaVersionError
    from medtl.review.results import record_result
    from medtl.review.schemas import (
        AuditInfo,
        CaseDetail,
        CaseInfo,
        ImageInfo,
        PredictionInfo,
        ReviewExportRow,
        ReviewInfo,
        review_export_schema,
    )
    from medtl.review.store import (
        STATUSES,
        CaseExistsError,
        CaseNotFoundError,
        PHIRiskError,
        ReviewInputError,
        ReviewStore,
    )

_LAZY = {
    **dict.fromkeys(
        (
            "AccountError",
            "AccountLockedError",
            "Accounts",
            "AuthError",
            "AuthPolicy",
            "InvalidCredentialsError",
            "PermissionDeniedError",
            "SessionExpiredError",
            "SessionInfo",
            "UserInfo",
        ),
        "medtl.review.auth",
    ),
    **dict.fromkeys(
        ("Database", "RetryPolicy", "ReviewStoreError", "StoreBusyError"), "medtl.review.db"
    ),
    **dict.fromkeys(("AgreementReport", "fleiss_kappa"), "medtl.review.export"),
    "record_result": "medtl.review.results",
    **dict.fromkeys(("CURRENT_VERSION", "SchemaVersionError"), "medtl.review.migrations"),
    **dict.fromkeys(
        (
            "AuditInfo",
            "CaseDetail",
            "CaseInfo",
            "ImageInfo",
            "PredictionInfo",
            "ReviewExportRow",
            "ReviewInfo",
            "review_export_schema",
        ),
        "medtl.review.schemas",
    ),
    **dict.fromkeys(
        (
            "STATUSES",
            "CaseExistsError",
            "CaseNotFoundError",
            "PHIRiskError",
            "ReviewInputError",
            "ReviewStore",
        ),
        "medtl.review.store",
    ),
}

__all__ = [
    "CURRENT_VERSION",
    "STATUSES",
    "AccountError",
    "AccountLockedError",
    "Accounts",
    "AgreementReport",
    "AuditInfo",
    "AuthError",
    "AuthPolicy",
    "CaseDetail",
    "CaseExistsError",
    "CaseInfo",
    "CaseNotFoundError",
    "Database",
    "ImageInfo",
    "InvalidCredentialsError",
    "PHIRiskError",
    "PermissionDeniedError",
    "PredictionInfo",
    "RetryPolicy",
    "ReviewExportRow",
    "ReviewInfo",
    "ReviewInputError",
    "ReviewStore",
    "ReviewStoreError",
    "SchemaVersionError",
    "SessionExpiredError",
    "SessionInfo",
    "StoreBusyError",
    "UserInfo",
    "fleiss_kappa",
    "record_result",
    "review_export_schema",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
