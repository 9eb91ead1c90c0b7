"""Errors of the review store's case, AI-result and review API (all :class:`ReviewStoreError`)."""

from __future__ import annotations

from medtl.review.db import ReviewStoreError


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
