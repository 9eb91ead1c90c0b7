"""One confidence-interval shape for every artifact (evaluation, card, report inputs)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field

from medtl.artifacts.base import DocumentModel
from medtl.artifacts.types import OptionalCount, OptionalSpread, undefined_as_none

__all__ = ["ConfidenceInterval"]


class ConfidenceInterval(DocumentModel):
    """A point estimate and its interval, as :meth:`medtl.evaluation.BootstrapCI.to_dict`
    writes it (bootstrap fields present) or a closed-form interval (Wilson: only
    ``estimate``, ``lower``, ``upper``).

    Undefined values (NaN) are ``None``. The estimate's own range depends on the measure
    (an AUROC, a difference of AUROCs, an ECE change), so only the level, counts and
    standard error are bounded here.
    """

    estimate: float | None
    lower: float | None
    upper: float | None
    confidence: Annotated[
        Annotated[float, Field(gt=0.0, lt=1.0)] | None, BeforeValidator(undefined_as_none)
    ] = None
    n_resamples: OptionalCount = None
    n_valid: OptionalCount = None
    std_error: OptionalSpread = None
