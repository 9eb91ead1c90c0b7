"""What an AI-result SR says: the result read through its typed details, and its review.

:func:`sr_content` turns a stored AI result (:class:`~medtl.review.schemas.PredictionInfo`,
its details read as :class:`~medtl.artifacts.PredictionDetails`) into :class:`SrContent`:
the **named positive class** and its probability whatever the decision, the operating
point, whether it is calibrated, the domain guard's caution, and the package's weights
SHA-256 from its model card. A result the domain guard refused raises
:class:`RefusedResultError`: it has no probability to report. The review an SR carries is
the one bound to that result (``Review.prediction_pk``): :func:`result_review` reads it
unblinded (the PACS push), :func:`visible_review` as the exporting user may see it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from medtl.artifacts import PredictionDetails
    from medtl.review.auth import UserInfo
    from medtl.review.schemas import PredictionInfo
    from medtl.review.store import ReviewStore

__all__ = [
    "RefusedResultError",
    "SrContent",
    "SrReview",
    "result_image_pk",
    "result_review",
    "sr_content",
    "visible_review",
]


class RefusedResultError(ValueError):
    """The model's domain guard refused the study: there is no result to report."""


@dataclass(frozen=True)
class SrReview:
    """The clinician's review an SR carries.

    Attributes:
        review_id: the review's number.
        verdict: ``agree``, ``disagree`` or ``uncertain``.
        reader: the reviewer's user name.
        reader_id: the reviewer's account number (the verifying observer's identifier).
        at: when the review was saved (UTC).
        comment: the reviewer's comment.
        x: marked column (pixels on the source image), with ``y``.
        y: marked row.
        slice_index: marked slice of a volume.
    """

    review_id: int
    verdict: str
    reader: str
    reader_id: int | None
    at: datetime | None = None
    comment: str | None = None
    x: float | None = None
    y: float | None = None
    slice_index: int | None = None


@dataclass(frozen=True)
class SrContent:
    """What the SR says (identifiers come from the source headers, not from here).

    Attributes:
        result_id: the AI result's number.
        case_id: the case pseudonym.
        model_name: model package name.
        model_version: its version.
        label: the named positive class (e.g. ``nodule``), whatever the decision.
        probability: the probability of ``label``.
        threshold: operating-point threshold (``None``: no decision).
        operating_point: the operating point's name.
        positive: the decision at the operating point.
        calibrated: whether the probability is calibrated (``None``: not recorded).
        domain: the domain guard's verdict (``ok``, ``warn``, ``not checked``).
        domain_reasons: why the guard warned.
        weights_sha256: SHA-256 of the package's weights (``None``: package not found).
        family: the package's modality family (``cxr``, ``ct``, ``mri``...).
        review: the clinician's review (``None``: not reviewed).
    """

    result_id: int
    case_id: str
    model_name: str
    model_version: str
    label: str
    probability: float
    threshold: float | None = None
    operating_point: str | None = None
    positive: bool | None = None
    calibrated: bool | None = None
    domain: str | None = None
    domain_reasons: tuple[str, ...] = ()
    weights_sha256: str | None = None
    family: str | None = None
    review: SrReview | None = None

    @property
    def verified(self) -> bool:
        """True once a clinician reviewed the result."""
        return self.review is not None


def _named_class(pred: PredictionInfo, details: PredictionDetails) -> str:
    """The class whose probability ``pred.probability`` is.

    Binary packages store P(labels[1]) whatever the decision (``pred.label`` is the
    decided class); multi-class packages store the top class and its probability. A
    two-label result without a decision is binary unless its label is the first class
    with a probability of at least 0.5 (then it is a two-class softmax's top class).
    """
    labels = details.labels
    if len(labels) > 2:
        return pred.label
    if len(labels) == 2:
        if details.positive is None and pred.label == labels[0] and pred.probability >= 0.5:
            return labels[0]
        return labels[1]
    if details.positive is False:
        raise ValueError(
            f"AI result {pred.id} does not record its class names, so the class its "
            "probability belongs to is unknown"
        )
    return pred.label


def _package_facts(
    pred: PredictionInfo, details: PredictionDetails
) -> tuple[str | None, str | None]:
    """``(weights SHA-256, modality family)`` from the result's model card, if it is still
    installed and names the same model version (``(None, None)`` otherwise)."""
    from medtl.models.package import PackageError, read_card, resolve_package

    for ref in (details.model_ref, f"{pred.model_name}@{pred.model_version}"):
        if not ref:
            continue
        try:
            card = read_card(resolve_package(ref))
        except (PackageError, OSError, ValueError):
            continue
        if (card.name, card.version) == (pred.model_name, pred.model_version):
            family = card.preprocessing.modality if card.preprocessing else None
            return card.weights_sha256, family
    return None, None


def sr_content(pred: PredictionInfo, case_id: str, review: SrReview | None) -> SrContent:
    """What the SR of ``pred`` says, read through :class:`~medtl.artifacts.PredictionDetails`.

    Args:
        pred: the AI result.
        case_id: its case.
        review: the review bound to that result (``None``: not reviewed).

    Returns:
        The SR content.

    Raises:
        RefusedResultError: the domain guard refused the study.
        ValueError: the result does not say which class its probability belongs to.
    """
    from medtl.artifacts import PredictionDetails

    details = PredictionDetails.from_stored(pred.details)
    if details.domain == "refuse":
        why = "; ".join(details.domain_reasons) or "outside the model's domain"
        raise RefusedResultError(
            f"AI result {pred.id} was refused by the model's domain guard ({why}): it has no "
            "probability to report"
        )
    sha, family = _package_facts(pred, details)
    return SrContent(
        result_id=pred.id,
        case_id=case_id,
        model_name=pred.model_name,
        model_version=pred.model_version,
        label=_named_class(pred, details),
        probability=float(pred.probability),
        threshold=pred.threshold,
        operating_point=details.operating_point,
        positive=details.positive,
        calibrated=details.calibrated,
        domain=details.domain,
        domain_reasons=tuple(details.domain_reasons),
        weights_sha256=sha,
        family=family,
        review=review,
    )


def result_review(store: ReviewStore, case_id: str, prediction_id: int) -> SrReview | None:
    """The latest review of one AI result, by any reader (``None``: not reviewed).

    Read unblinded, for the PACS push: the PACS gets the verdict whoever sends it.
    """
    from sqlalchemy import select

    from medtl.review.models import Case, Review, User

    def read(session: Any) -> Any:
        return session.execute(
            select(Review, User.username)
            .join(Case, Review.case_pk == Case.id)
            .join(User, Review.reader_pk == User.id)
            .where(Case.case_id == case_id, Review.prediction_pk == prediction_id)
            .order_by(Review.created_at.desc(), Review.id.desc())
            .limit(1)
        ).first()

    def load(session: Any) -> SrReview | None:
        row = read(session)
        if row is None:
            return None
        r, name = row
        return SrReview(
            r.id,
            r.decision,
            str(name),
            r.reader_pk,
            r.created_at,
            r.comment,
            r.x,
            r.y,
            r.slice_index,
        )

    return store.db.read(load)


def visible_review(
    store: ReviewStore, actor: UserInfo | None, case_id: str, result_id: int
) -> SrReview | None:
    """The latest review of the result that ``actor`` may see (blinded reading applies)."""
    visible = [r for r in store.open_case(actor, case_id).reviews if r.prediction_id == result_id]
    if not visible:
        return None
    r = max(visible, key=lambda v: (v.created_at, v.id))
    try:
        reader_id: int | None = store.accounts.get_user(r.reader).id
    except Exception:  # a renamed or unknown account: the name still identifies it
        reader_id = None
    return SrReview(
        r.id, r.decision, r.reader, reader_id, r.created_at, r.comment, r.x, r.y, r.slice_index
    )


def result_image_pk(store: ReviewStore, prediction_id: int) -> int | None:
    """The stored image an AI result was computed on (``None``: not recorded)."""
    from sqlalchemy import select

    from medtl.review.models import Prediction

    return store.db.read(
        lambda s: s.scalar(select(Prediction.image_pk).where(Prediction.id == prediction_id))
    )
