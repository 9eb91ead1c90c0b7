"""One confidence-interval shape for every artifact (evaluation, card, report inputs)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["ConfidenceInterval"]


class ConfidenceInterval(BaseModel):
    """A point estimate and its interval, as :meth:`medtl.evaluation.BootstrapCI.to_dict`
    writes it (bootstrap fields present) or a closed-form interval (Wilson: only
    ``estimate``, ``lower``, ``upper``).

    Undefined values (NaN) are ``None``.
    """

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="null")

    estimate: float | None
    lower: float | None
    upper: float | None
    confidence: float | None = None
    n_resamples: int | None = None
    n_valid: int | None = None
    std_error: float | None = None
