"""``transferability.json``: backbone scores before fine-tuning (``medtl score --out``).

Read by the report (``--transferability``). Files written by hand for earlier releases held
only ``{backbone: {score: value}}``; they are read as ``scores``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from medtl.artifacts.base import Artifact, DocumentModel
from medtl.artifacts.types import Count, OptionalCorrelation, OptionalProbability

__all__ = ["FinetunedMatch", "RankCorrelationResult", "TransferabilityScores"]


class RankCorrelationResult(DocumentModel):
    """Kendall's tau (in [-1, 1]) between a score and the fine-tuned metric over candidates,
    with its p-value (``None``: undefined)."""

    tau: OptionalCorrelation
    p_value: OptionalProbability
    n: Count


class FinetunedMatch(DocumentModel):
    """Which candidates matched a fine-tuned result by name (``medtl score --finetuned``)."""

    matched: list[str] = Field(default_factory=list)
    candidates_without_result: list[str] = Field(default_factory=list)
    results_without_candidate: list[str] = Field(default_factory=list)


class TransferabilityScores(Artifact):
    """Scores per candidate backbone (LogME, H-score, and LEEP/NCE with a source head).

    Attributes:
        scores: candidate -> score name -> value (at least one candidate).
        ranking: score name -> candidates, best first.
        kendall_tau: score name -> rank agreement with the fine-tuned results.
        finetuned_match: with fine-tuned results, the names that matched and those that
            did not (``None``: no fine-tuned results given).
    """

    SCHEMA_VERSION: ClassVar[int] = 1
    FILE: ClassVar[str] = "transferability.json"
    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = ("ranking", "kendall_tau")

    schema_version: int = 1
    scores: dict[str, dict[str, float | None]] = Field(min_length=1)
    ranking: dict[str, list[str]] = Field(default_factory=dict)
    kendall_tau: dict[str, RankCorrelationResult] = Field(default_factory=dict)
    finetuned_match: FinetunedMatch | None = None

    @classmethod
    def upgrade(cls, data: Any, version: int) -> Any:
        if not isinstance(data, dict):
            return data
        if "scores" not in data:
            data = {"scores": {k: v for k, v in data.items() if k != "schema_version"}}
        # hand-written files of earlier releases held the scores alone
        return {"ranking": {}, "kendall_tau": {}, **data}
