"""``transferability.json``: backbone scores before fine-tuning (``medtl score --out``).

Read by the report (``--transferability``). Files written by hand for earlier releases held
only ``{backbone: {score: value}}``; they are read as ``scores``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from medtl.artifacts.base import Artifact

__all__ = ["FinetunedMatch", "RankCorrelationResult", "TransferabilityScores"]


class RankCorrelationResult(BaseModel):
    """Kendall's tau between a score and the fine-tuned metric over candidates."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="null")

    tau: float | None
    p_value: float | None
    n: int


class FinetunedMatch(BaseModel):
    """Which candidates matched a fine-tuned result by name (``medtl score --finetuned``)."""

    model_config = ConfigDict(extra="forbid")

    matched: list[str] = Field(default_factory=list)
    candidates_without_result: list[str] = Field(default_factory=list)
    results_without_candidate: list[str] = Field(default_factory=list)


class TransferabilityScores(Artifact):
    """Scores per candidate backbone (LogME, H-score, and LEEP/NCE with a source head).

    Attributes:
        scores: candidate -> score name -> value.
        ranking: score name -> candidates, best first.
        kendall_tau: score name -> rank agreement with the fine-tuned results.
        finetuned_match: with fine-tuned results, the names that matched and those that
            did not (``None``: no fine-tuned results given).
    """

    SCHEMA_VERSION: ClassVar[int] = 1
    FILE: ClassVar[str] = "transferability.json"

    schema_version: int = 1
    scores: dict[str, dict[str, float | None]] = Field(default_factory=dict)
    ranking: dict[str, list[str]] = Field(default_factory=dict)
    kendall_tau: dict[str, RankCorrelationResult] = Field(default_factory=dict)
    finetuned_match: FinetunedMatch | None = None

    @classmethod
    def upgrade(cls, data: Any, version: int) -> Any:
        if isinstance(data, dict) and "scores" not in data:
            return {"scores": {k: v for k, v in data.items() if k != "schema_version"}}
        return data
