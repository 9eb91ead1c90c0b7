"""A case's AI result as a DICOM Comprehensive 3D SR: medtl's one SR builder.

The app's export (:func:`export_sr`, pseudonymous) and the PACS push
(:mod:`medtl.pacs.push`, into the original study) both build their SR here, with highdicom,
as a TID 1500 Measurement Report following the IHE AI Results (AIR) profile. Content tree
(codes and their sources: :mod:`medtl.review.sr_codes`):

* observation context: the model as device observer, and the reviewer as person observer
  once the result was reviewed; procedure reported: the imaging procedure (chest X-ray,
  CT of chest...);
* measurement group "AI result <id>" (TID 1501): the finding (e.g. SCT Nodule) and its
  site (e.g. SCT Lung), TID 4019 algorithm identification (name, version, parameters with
  the package's weights SHA-256 and calibration), the **probability of the named positive
  class** (DCM Probability: the same concept and value whatever the decision), the
  operating point's threshold and name, the decision (``<finding> = Present/Absent``),
  whether the probability is calibrated (as the package says), and the domain guard's
  caution with its reasons when it warned; the source images;
* measurement group "Clinician review <id>" (only once reviewed): whether the clinician
  confirmed the result (agree = Yes, disagree = No, uncertain = Undetermined), their
  comment and, when they marked the finding, the mark as an SCOORD POINT on the source
  image (TID 1410).

Document flags follow the review: a reviewed result is FINAL / COMPLETE / VERIFIED with the
reviewer as verifying observer (name, and a VerifyingObserverIdentificationCodeSequence
code of the medtl account); an unreviewed one is PRELIMINARY / PARTIAL / UNVERIFIED. The
CodingSchemeIdentificationSequence declares every private scheme used. A result the
domain guard refused has no probability and is never written as an SR.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medtl.io.redact import redacted_warnings
from medtl.review.auth import UserInfo, require_role
from medtl.review.files import open_private
from medtl.review.models import add_audit
from medtl.review.sr_codes import CODING_SCHEME
from medtl.review.sr_content import SrContent, SrReview, result_image_pk, sr_content, visible_review

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.dataset import Dataset

    from medtl.review.store import ReviewStore

__all__ = ["CODING_SCHEME", "SERIES_NUMBER", "build_sr", "export_sr"]

logger = logging.getLogger(__name__)


SERIES_NUMBER = 990
_VERDICTS = {"agree": "Yes", "disagree": "No", "uncertain": "Undetermined"}


def _concept(code: Any) -> Any:
    import highdicom as hd

    return hd.sr.CodedConcept.from_code(code) if not isinstance(code, hd.sr.CodedConcept) else code


def _text(name: Any, value: str) -> Any:
    import highdicom as hd

    return hd.sr.TextContentItem(
        name=_concept(name), value=value, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )


def _yes_no(value: bool | None) -> Any:
    from pydicom.sr.codedict import codes

    return {True: codes.cid230.Yes, False: codes.cid230.No}.get(value, codes.cid230.Undetermined)  # type: ignore[arg-type]


def _algorithm(content: SrContent) -> Any:
    import highdicom as hd

    params = [f"probability calibrated: {_yes_no(content.calibrated).meaning.lower()}"]
    if content.weights_sha256:
        params.insert(0, f"weights sha256: {content.weights_sha256}")
    if content.threshold is not None:
        params.append(f"operating point: {content.operating_point or '-'} ({content.threshold:g})")
    return hd.sr.AlgorithmIdentification(
        name=content.model_name[:64], version=content.model_version[:64], parameters=params
    )


def _result_group(content: SrContent, sources: list[Dataset], uid: str) -> Any:
    """TID 1501 "AI result": finding, site, algorithm, probability, decision, caution."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from medtl.review.sr_codes import CALIBRATED, DOMAIN_CAUTION, finding_codes, private_code

    coded = finding_codes(content.label)
    unit = codes.UCUM.NoUnits
    measurements = [hd.sr.Measurement(codes.DCM.Probability, float(content.probability), unit)]
    evaluations = []
    if content.threshold is not None:
        measurements.append(
            hd.sr.Measurement(codes.DCM.ThresholdValue, float(content.threshold), unit)
        )
    if content.positive is not None:
        value = codes.cid240.Present if content.positive else codes.cid240.Absent
        evaluations.append(hd.sr.QualitativeEvaluation(coded.finding, value))
    evaluations.append(
        hd.sr.QualitativeEvaluation(private_code(*CALIBRATED), _yes_no(content.calibrated))
    )
    sites = None
    if coded.site is not None:
        sites = [hd.sr.FindingSite(anatomic_location=coded.site, laterality=coded.laterality)]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=uid, identifier=f"AI result {content.result_id}"
        ),
        finding_type=coded.finding,
        finding_sites=sites,
        algorithm_id=_algorithm(content),
        measurements=measurements,
        qualitative_evaluations=evaluations,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(s) for s in sources],
    )
    items = group[0].ContentSequence
    if content.operating_point and content.threshold is not None:
        items.append(_text(codes.DCM.CADOperatingPointDescription, content.operating_point))
    if content.domain == "warn":
        why = "; ".join(content.domain_reasons) or "the domain guard warned"
        items.append(_text(private_code(*DOMAIN_CAUTION), f"CAUTION: {why}"))
    return group


def _review_group(content: SrContent, sources: list[Dataset], uid: str) -> Any:
    """TID 1501 (or TID 1410 with the mark) "Clinician review": verdict, comment, mark."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from medtl.review.sr_codes import CONFIRMED, finding_codes, private_code
    from medtl.review.sr_sources import mark_image

    review = content.review
    assert review is not None
    verdict = getattr(codes.cid230, _VERDICTS.get(review.verdict, "Undetermined"))
    common: dict[str, Any] = {
        "tracking_identifier": hd.sr.TrackingIdentifier(
            uid=uid, identifier=f"Clinician review {review.review_id}"
        ),
        "finding_type": finding_codes(content.label).finding,
        "qualitative_evaluations": [hd.sr.QualitativeEvaluation(private_code(*CONFIRMED), verdict)],
    }
    if review.x is not None and review.y is not None:
        import numpy as np

        region = hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POINT,
            graphic_data=np.array([[float(review.x) + 0.5, float(review.y) + 0.5]]),
            source_image=mark_image(sources, review.slice_index),
        )
        group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            referenced_region=region, **common
        )
    else:
        group = hd.sr.MeasurementsAndQualitativeEvaluations(**common)
    if review.comment:
        group[0].ContentSequence.append(_text(codes.DCM.Comment, review.comment))
    return group


def _observers(content: SrContent) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from medtl.review.sr_sources import derived_uid, person_name

    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=derived_uid("device", f"{content.model_name}@{content.model_version}"),
            name=content.model_name[:64],
            manufacturer_name="medtl",
            model_name=content.model_version[:64],
        ),
    )
    person = None
    if content.review is not None:
        person = hd.sr.ObserverContext(
            observer_type=codes.DCM.Person,
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                name=person_name(content.review.reader), login_name=content.review.reader[:64]
            ),
        )
    return hd.sr.ObservationContext(observer_person_context=person, observer_device_context=device)


def _description(content: SrContent) -> str:
    text = "medtl AI result"
    if content.domain == "warn":
        text += " - CAUTION: outside the validated domain"
    if not content.verified:
        text += " - UNVERIFIED: not reviewed by a clinician"
    return text[:64]


def _charset(content: SrContent, source: Dataset) -> dict[str, str]:
    """UTF-8 (``ISO_IR 192``) when medtl's own text is not ASCII, else the source's."""
    texts = [content.model_name, content.model_version, content.label, *content.domain_reasons]
    if content.review is not None:
        texts += [content.review.reader, content.review.comment or ""]
    if all(t.isascii() for t in texts if t):
        return {}
    return {"specific_character_set": "ISO_IR 192"}


def _verifier(sr: Dataset, review: SrReview) -> None:
    """Complete the verifying observer: the account as identifier, the review's time."""
    from pydicom.dataset import Dataset as Item
    from pydicom.valuerep import DT

    from medtl.review.sr_codes import USER_SCHEME

    observer = sr.VerifyingObserverSequence[0]
    code = Item()
    code.CodeValue = str(review.reader_id if review.reader_id is not None else review.reader)[:16]
    code.CodingSchemeDesignator = USER_SCHEME
    code.CodeMeaning = f"medtl user {review.reader}"[:64]
    observer.VerifyingObserverIdentificationCodeSequence = [code]
    if review.at is not None:
        observer.VerificationDateTime = DT(review.at)


def build_sr(
    sources: list[Dataset],
    content: SrContent,
    *,
    sop_instance_uid: str,
    series_uid: str,
    series_number: int = SERIES_NUMBER,
) -> Dataset:
    """Build the SR of an AI result (the content tree is described in the module docstring).

    Args:
        sources: headers of the source instances; the first gives patient and study
            (the original ones for a PACS push, pseudonymous ones for an export).
        content: the AI result and its review (:func:`sr_content`).
        sop_instance_uid: the SR's UID (deterministic per result and review, so a retried
            push replaces instead of duplicating).
        series_uid: the SR series UID.
        series_number: the SR series number.

    Returns:
        The ``highdicom.sr.Comprehensive3DSR`` dataset.

    Raises:
        ValueError: no source instance, or a mark outside the source images.
    """
    import highdicom as hd

    from medtl.review.sr_codes import coding_schemes, finding_codes, procedure_code
    from medtl.review.sr_sources import complete_header, derived_uid, person_name

    if not sources:
        raise ValueError("an SR needs at least one source instance")
    groups = [_result_group(content, sources, derived_uid("tracking", sop_instance_uid))]
    if content.review is not None:
        groups.append(_review_group(content, sources, derived_uid("review", sop_instance_uid)))
    body = str(sources[0].get("BodyPartExamined") or "").upper()
    site = finding_codes(content.label).site
    chest = body in ("CHEST", "THORAX", "LUNG") or (
        site is not None and "lung" in site.meaning.lower()
    )
    procedure = procedure_code(sources[0].get("Modality"), content.family, chest)
    review = content.review
    # Library warnings quote header values: logged redacted, never printed. A one-component
    # person name (a pseudonym, or a source's one-word name) is expected: not even logged.
    with redacted_warnings(logger, "building the SR"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person")
        report = hd.sr.MeasurementReport(
            observation_context=_observers(content),
            procedure_reported=procedure,
            imaging_measurements=groups,
        )
        sr = hd.sr.Comprehensive3DSR(
            evidence=[complete_header(sources[0]), *sources[1:]],
            content=report[0],
            series_instance_uid=series_uid,
            series_number=series_number,
            sop_instance_uid=sop_instance_uid,
            instance_number=1,
            manufacturer="medtl",
            is_complete=review is not None,
            is_final=review is not None,
            is_verified=review is not None,
            verifying_observer_name=person_name(review.reader) if review else None,
            verifying_organization="medtl" if review else None,
            **_charset(content, sources[0]),
        )
    if review is not None:
        _verifier(sr, review)
    sr.SeriesDescription = _description(content)
    schemes = coding_schemes(sr)
    if schemes:
        sr.CodingSchemeIdentificationSequence = schemes
    return sr


def export_sr(
    store: ReviewStore,
    actor: UserInfo | None,
    case_id: str,
    dest: Path,
    *,
    prediction_id: int | None = None,
) -> Path:
    """Write a case's AI result as a pseudonymous DICOM SR (the app's "Export SR").

    Works for every case, upload (DICOM, PNG/JPEG, NIfTI) and PACS: the evidence is the
    case's de-identified DICOM file when it was stored as one, otherwise Secondary Capture
    headers made up from the case pseudonym and UIDs derived from the case and the
    image (:func:`medtl.review.sr_sources.case_sources`): the patient is the case
    pseudonym, and no original identifier appears. The review included is the latest one
    of that result that ``actor`` may see (a clinician who has not read the case yet sees
    none: blinded reading). The file is created with mode 0600.

    Args:
        store: the review store.
        actor: the user exporting (any role).
        case_id: the case pseudonym.
        dest: output file or folder (then ``<case_id>-ai-sr.dcm``).
        prediction_id: which AI result (default: the latest).

    Returns:
        The written path.

    Raises:
        ImportError: ``highdicom`` is not installed.
        RefusedResultError: the model's domain guard refused the study.
        ValueError: the case has no such AI result, or no stored image.
    """
    require_role(actor, "clinician", "researcher", "admin")
    import highdicom  # noqa: F401  (fail early, before any read, when it is missing)

    from medtl.review.sr_sources import case_sources, derived_uid

    case_id = store.get_case(case_id).case_id  # CaseNotFoundError for unknown IDs
    preds = store.open_case(actor, case_id).predictions
    if not preds:
        raise ValueError(f"case {case_id} has no AI result")
    pred = (
        preds[-1]
        if prediction_id is None
        else next((p for p in preds if p.id == prediction_id), None)
    )
    if pred is None:
        raise ValueError(f"AI result {prediction_id} does not belong to case {case_id}")
    images = store.get_images(case_id)
    if not images:
        raise ValueError(f"case {case_id} has no stored image for the SR to reference")
    image_pk = result_image_pk(store, pred.id)
    image = next((i for i in images if i.id == image_pk), images[0])
    review = visible_review(store, actor, case_id, pred.id)
    content = sr_content(pred, case_id, review)
    state = f"review-{review.review_id}" if review else "unreviewed"
    sr = build_sr(
        case_sources(store, image),
        content,
        sop_instance_uid=derived_uid("sr", case_id, str(pred.id), state),
        series_uid=derived_uid("sr-series", case_id),
    )
    sr.PatientIdentityRemoved = "YES"
    sr.DeidentificationMethod = "medtl: case pseudonym as patient; no original identifier"
    dest = Path(dest)
    path = dest / f"{case_id}-ai-sr.dcm" if dest.is_dir() else dest
    with open_private(path) as fh:
        sr.save_as(fh, enforce_file_format=True)
    details = {"format": "dicom-sr", "prediction_id": pred.id}
    store.db.write(
        lambda s: add_audit(
            s, store.db.now(), "export", user=actor, case_id=case_id, details=details
        ),
        what="export record",
    )
    return path
