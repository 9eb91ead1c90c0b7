"""Recording a :class:`~medtl.inference.PredictionResult` in the review store.

The upload page and the PACS ingest both store an analysis the same way: one
:class:`~medtl.artifacts.PredictionDetails` built from the result, and one AI-result row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medtl.inference import PredictionResult
    from medtl.review.auth import UserInfo
    from medtl.review.schemas import PredictionInfo
    from medtl.review.store import ReviewStore

__all__ = ["record_result"]


def record_result(
    store: ReviewStore,
    actor: UserInfo | None,
    case_id: str,
    result: PredictionResult,
    *,
    image_id: int | None = None,
    source: str | None = None,
    model_ref: str | None = None,
) -> PredictionInfo:
    """Store ``result`` as the case's newest AI result, with its typed details.

    Args:
        store: the review store.
        actor: who ran the analysis (``None``: a system process such as a worker).
        case_id: the case the result belongs to.
        result: the predictor's result.
        image_id: the stored image analysed (``None``: the case's first).
        source: where the scan came from (``"pacs"``; ``None`` for an upload).
        model_ref: the package reference used, to run the same model again later.

    Returns:
        The stored AI result.

    Raises:
        ReviewInputError: the model refused the scan or gave no probability; a refused
            scan has no AI result, so nothing is stored.
    """
    from medtl.artifacts import PredictionDetails
    from medtl.review.errors import ReviewInputError

    if result.refused or result.probability is None:
        reasons = "; ".join(result.domain.reasons) or "no probability"
        raise ReviewInputError(f"the model gave no result for this scan ({reasons})")

    decision = result.decision
    details = PredictionDetails(
        domain=result.domain.status,
        domain_reasons=list(result.domain.reasons),
        calibrated=result.calibrated,
        operating_point=decision.operating_point if decision else None,
        expected_sensitivity=decision.expected_sensitivity if decision else None,
        expected_specificity=decision.expected_specificity if decision else None,
        positive=decision.positive if decision else None,
        heat_peak=result.heatmap_info.peak_index if result.heatmap_info else None,
        labels=list(result.labels),
        source=source,
        model_ref=model_ref,
    )
    name, _, version = result.package.partition("@")
    return store.record_prediction(
        actor,
        case_id,
        model_name=name,
        model_version=version or "unknown",
        label=decision.label if decision else (result.top_class or "unknown"),
        probability=float(result.probability),
        threshold=decision.threshold if decision else None,
        image_id=image_id,
        details=details,  # the store keeps its validated JSON
    )
