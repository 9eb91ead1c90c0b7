"""Send a case's AI result, after a clinician's review, into its original study as an SR.

The result sent is the case's latest unless the operator names one; the SR carries the
review bound to that result and is refused for a result the model's domain guard refused.

A push is recorded before it is tried (``pending``), then ``done`` or ``failed`` with the
reason and the number of attempts (:mod:`medtl.pacs.records`); :func:`retry_failed` tries
the failed and pending ones again, and ``medtl pacs status`` shows them. The SR's UIDs are
derived from the site secret, the case and the result, so a retry after a lost answer
replaces the SR in the PACS instead of adding a second one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medtl.pacs.types import PacsError

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.dataset import Dataset

    from medtl.pacs.settings import PacsSettings
    from medtl.review import ReviewStore, UserInfo
    from medtl.review.schemas import PredictionInfo
    from medtl.review.sr_content import SrContent, SrReview

logger = logging.getLogger(__name__)


class PushRefusedError(PacsError):
    """The result may not be sent: refused by the model's domain guard, not reviewed while
    the site requires a review, or another result of the case is the reviewed one."""


@dataclass(frozen=True)
class PushOutcome:
    """The result of one push attempt.

    Attributes:
        case_id: the case pseudonym.
        prediction_id: the AI result sent.
        status: ``done`` or ``failed``.
        attempts: attempts so far.
        unverified: sent without a clinician's review (``push_unverified``).
        error: why it failed.
        model: ``name@version`` of the model whose result was sent.
    """

    case_id: str
    prediction_id: int
    status: str
    attempts: int
    unverified: bool
    error: str | None = None
    model: str = ""


@dataclass(frozen=True)
class ResultChoice:
    """One AI result of a case as the PACS page offers it for sending.

    Attributes:
        prediction_id: the AI result.
        model: ``name@version``.
        reviewed: a clinician reviewed this result (the review the SR would carry).
        refused: the model's domain guard refused the study (never sent).
    """

    prediction_id: int
    model: str
    reviewed: bool
    refused: bool

    @property
    def label(self) -> str:
        """How the page names it, e.g. ``#3 cxr@1.1 · reviewed``."""
        state = "refused" if self.refused else "reviewed" if self.reviewed else "not reviewed"
        return f"#{self.prediction_id} {self.model} · {state}"


def result_choices(store: ReviewStore, case_id: str) -> list[ResultChoice]:
    """A case's AI results, newest first, with whether each was reviewed (read without
    recording a view, and unblinded: the operator sending needs to know which to send)."""
    from sqlalchemy import select

    from medtl.artifacts import PredictionDetails
    from medtl.review.models import Case, Prediction
    from medtl.review.sr_content import result_review

    def read(session: Any) -> list[tuple[int, str, bool]]:
        rows = session.execute(
            select(
                Prediction.id, Prediction.model_name, Prediction.model_version, Prediction.details
            )
            .join(Case, Prediction.case_pk == Case.id)
            .where(Case.case_id == case_id)
            .order_by(Prediction.id.desc())
        )
        return [
            (pk, f"{name}@{version}", PredictionDetails.from_stored(details).domain == "refuse")
            for pk, name, version, details in rows
        ]

    return [
        ResultChoice(pk, model, result_review(store, case_id, pk) is not None, refused)
        for pk, model, refused in store.db.read(read)
    ]


def default_choice(choices: list[ResultChoice]) -> int:
    """Index of the result to preselect: the newest reviewed one, else the newest."""
    return next((i for i, c in enumerate(choices) if c.reviewed and not c.refused), 0)


def _model(pred: PredictionInfo) -> str:
    return f"{pred.model_name}@{pred.model_version}"


def _choose(
    store: ReviewStore, case_id: str, preds: list[PredictionInfo], prediction_id: int | None
) -> tuple[PredictionInfo, SrReview | None]:
    """The result to send and the review bound to it (``Review.prediction_pk``).

    By default the latest result. When it has no review but an earlier result has, the
    choice is the operator's: refused, naming both results and how to send either.
    """
    from medtl.review.sr_content import result_review

    if not preds:
        raise PushRefusedError(f"case {case_id} has no AI result to send")
    if prediction_id is not None:
        pred = next((p for p in preds if p.id == prediction_id), None)
        if pred is None:
            raise PushRefusedError(f"AI result {prediction_id} does not belong to case {case_id}")
        return pred, result_review(store, case_id, pred.id)
    pred = preds[-1]
    review = result_review(store, case_id, pred.id)
    if review is None:
        for earlier in reversed(preds[:-1]):
            if result_review(store, case_id, earlier.id) is not None:
                raise PushRefusedError(
                    f"the latest AI result of case {case_id}, result {pred.id} "
                    f"({_model(pred)}), has no review; result {earlier.id} "
                    f"({_model(earlier)}) was reviewed: send it with `medtl pacs push "
                    f"{case_id} --result {earlier.id}`, or review result {pred.id} first"
                )
    return pred, review


def _content(
    store: ReviewStore, case_id: str, pred: PredictionInfo, review: SrReview | None
) -> SrContent:
    """The SR content of ``pred``; a refused or unreadable result is a refusal."""
    from medtl.review.sr_content import sr_content

    try:
        return sr_content(pred, case_id, review)
    except ValueError as err:  # RefusedResultError included
        raise PushRefusedError(f"case {case_id}: {err}") from None


def _source_headers(
    store: ReviewStore, settings: PacsSettings, case_id: str, key: bytes
) -> list[Dataset]:
    from medtl.pacs import client
    from medtl.pacs.records import load_link

    link = load_link(store.db, case_id, key)
    headers = client.series_headers(settings, link.study_uid, link.series_uid)
    wanted = set(link.sop_instance_uids)
    sources = [h for h in headers if str(h.get("SOPInstanceUID", "")) in wanted]
    if not sources:
        raise PacsError("the source images of this case are no longer in the PACS")
    if {str(h.StudyInstanceUID) for h in sources} != {link.study_uid}:
        raise PacsError("the PACS returned images of another study")
    return sources


def _send(
    store: ReviewStore,
    settings: PacsSettings,
    content: SrContent,
    case_id: str,
    pred: PredictionInfo,
    key: bytes,
) -> None:
    """Re-read the source headers, build the SR (and the heat-map image) and store them."""
    from medtl.io.deid import pseudonymous_uid
    from medtl.pacs import client
    from medtl.pacs.logs import quiet_client_logs
    from medtl.review.sr import build_sr

    quiet_client_logs()
    sources = _source_headers(store, settings, case_id, key)
    objects = [
        build_sr(
            sources,
            content,
            sop_instance_uid=pseudonymous_uid(f"medtl-sr|{case_id}|{pred.id}", key=key),
            series_uid=pseudonymous_uid(f"medtl-sr-series|{case_id}", key=key),
        )
    ]
    if settings.push_heatmap:
        from medtl.pacs.heatmap_sc import build_sc, heatmap_image

        objects.append(
            build_sc(
                sources[0],
                heatmap_image(store, case_id, pred),
                model=_model(pred),
                sop_instance_uid=pseudonymous_uid(f"medtl-sc|{case_id}|{pred.id}", key=key),
                series_uid=pseudonymous_uid(f"medtl-sc-series|{case_id}", key=key),
            )
        )
    client.store(settings, objects)


def _audit(
    store: ReviewStore, actor: UserInfo | None, case_id: str, result_id: int, unverified: bool
) -> None:
    from medtl.review.models import add_audit

    details = {
        "format": "dicom-sr",
        "destination": "pacs",
        "prediction_id": result_id,
        "unverified": unverified,
    }
    store.db.write(
        lambda s: add_audit(
            s, store.db.now(), "export", user=actor, case_id=case_id, details=details
        ),
        what="export record",
    )


def push_case(
    store: ReviewStore,
    settings: PacsSettings,
    case_id: str,
    *,
    actor: UserInfo | None = None,
    prediction_id: int | None = None,
    key: bytes | None = None,
) -> PushOutcome:
    """Store the SR of a case's AI result in its original study.

    The SR (:func:`medtl.review.sr.build_sr`) carries the study's original identifiers,
    re-read from the PACS, and the review bound to the result sent.

    Args:
        store: the review store.
        settings: the PACS settings (``push_unverified`` allows unreviewed results).
        case_id: the case pseudonym.
        actor: the user sending (``None``: the local operator).
        prediction_id: which AI result (default: the latest; see :class:`PushRefusedError`).
        key: the site secret (default ``MEDTL_HOME/secrets/deid.key``).

    Returns:
        The outcome, naming the result and model sent; a failure is recorded (status
        ``failed``, reason, attempts) and returned, not raised, so it can be shown and
        retried.

    Raises:
        PushRefusedError: the case has no (such) AI result; the domain guard refused the
            study; no clinician reviewed the result and ``push_unverified`` is off; or,
            without ``prediction_id``, the latest result is unreviewed while an earlier
            one was reviewed.
    """
    from medtl.pacs.ingest import site_key
    from medtl.pacs.records import mark_push
    from medtl.review.auth import require_role

    key = site_key(key)
    require_role(actor, "clinician", "admin")
    detail = store.open_case(actor, case_id)
    pred, review = _choose(store, case_id, detail.predictions, prediction_id)
    content = _content(store, case_id, pred, review)
    unverified = review is None
    if unverified and not settings.push_unverified:
        raise PushRefusedError(
            f"no clinician has reviewed AI result {pred.id} ({_model(pred)}) of case "
            f"{case_id}; review it first (or set push_unverified for this site)"
        )
    mark_push(store.db, case_id, pred.id, "pending", unverified=unverified)
    try:
        _send(store, settings, content, case_id, pred, key)
    except Exception as err:  # any failure is recorded and shown, never lost
        reason = str(err) if isinstance(err, PacsError) else f"{type(err).__name__}: {err}"
        record = mark_push(
            store.db,
            case_id,
            pred.id,
            "failed",
            error=reason,
            attempted=True,
            unverified=unverified,
        )
        logger.warning("pacs: push of case %s failed (attempt %d)", case_id, record.attempts)
        return PushOutcome(
            case_id, pred.id, "failed", record.attempts, unverified, reason, _model(pred)
        )
    record = mark_push(store.db, case_id, pred.id, "done", attempted=True, unverified=unverified)
    _audit(store, actor, case_id, pred.id, unverified)
    logger.info("pacs: SR of case %s (result %d) stored in the original study", case_id, pred.id)
    return PushOutcome(case_id, pred.id, "done", record.attempts, unverified, None, _model(pred))


#: automatic retries (``medtl worker``) stop after this many attempts; a person can still
#: retry with ``medtl pacs push --retry-failed``.
MAX_AUTO_ATTEMPTS = 8


def push_backoff_s(attempts: int) -> float:
    """Seconds to wait after ``attempts`` failed attempts before retrying (2, 4, 8... 300)."""
    return float(min(300, 2**attempts))


def retry_failed(
    store: ReviewStore,
    settings: PacsSettings,
    *,
    actor: UserInfo | None = None,
    key: bytes | None = None,
    due_only: bool = False,
) -> list[PushOutcome]:
    """Try failed or pending pushes again (oldest first).

    Args:
        store: the review store.
        settings: the PACS settings.
        actor: the user retrying (``None``: the local operator or a worker).
        key: the site secret.
        due_only: only pushes whose back-off (:func:`push_backoff_s`) has passed and that
            have fewer than :data:`MAX_AUTO_ATTEMPTS` attempts (what workers retry).

    Returns:
        One outcome per retried push.
    """
    from medtl.pacs.records import list_pushes

    out = []
    now = store.db.now()
    for record in list_pushes(store.db):
        if record.status == "done":
            continue
        if due_only and (
            record.attempts >= MAX_AUTO_ATTEMPTS
            or (now - record.updated_at).total_seconds() < push_backoff_s(record.attempts)
        ):
            continue
        try:
            out.append(
                push_case(
                    store,
                    settings,
                    record.case_id,
                    actor=actor,
                    prediction_id=record.prediction_id,
                    key=key,
                )
            )
        except PushRefusedError as err:
            logger.warning("pacs: push of case %s not retried: %s", record.case_id, err)
    return out
