"""A case's AI result as a DICOM Comprehensive 3D SR (TID 1500 Measurement Report).

The SR references the case's de-identified DICOM image as evidence, so it carries that
image's pseudonymous patient and study, nothing else. Needs ``highdicom`` (imported lazily)
and a case stored from DICOM bytes.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import select

from medtl.review.auth import UserInfo, require_role
from medtl.review.files import open_private
from medtl.review.models import Case, Prediction, add_audit

if TYPE_CHECKING:  # pragma: no cover
    from medtl.review.store import ReviewStore

#: Private coding scheme of medtl's SR concepts (DICOM reserves ``99`` prefixes for this).
CODING_SCHEME = "99MEDTL"


class _Result(NamedTuple):
    id: int
    model_name: str
    model_version: str
    label: str
    probability: float
    image_pk: int | None


def _choose(store: ReviewStore, case_id: str, prediction_id: int | None) -> _Result:
    def load(session: Any) -> list[_Result]:
        query = select(Prediction).join(Case).where(Case.case_id == case_id).order_by(Prediction.id)
        return [
            _Result(p.id, p.model_name, p.model_version, p.label, p.probability, p.image_pk)
            for p in session.scalars(query)
        ]

    results = store.db.read(load)
    if not results:
        raise ValueError(f"case {case_id} has no AI result")
    if prediction_id is None:
        return results[-1]
    for result in results:
        if result.id == prediction_id:
            return result
    raise ValueError(f"AI result {prediction_id} does not belong to case {case_id}")


def _measurement_group(hd: Any, result: _Result, source: Any) -> Any:
    from pydicom.uid import generate_uid

    def concept(value: str, meaning: str, scheme: str = CODING_SCHEME) -> Any:
        return hd.sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)

    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(), identifier=f"AI result {result.id}"
        ),
        algorithm_id=hd.sr.AlgorithmIdentification(
            name=result.model_name, version=result.model_version
        ),
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(
                name=concept("AIRESULT", "AI result"),
                value=concept(result.label.upper()[:16], result.label[:64]),
            )
        ],
        measurements=[
            hd.sr.Measurement(
                name=concept("PROB", "Calibrated probability"),
                value=float(result.probability),
                unit=concept("1", "no units", scheme="UCUM"),
            )
        ],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
    )


def build_sr(result: _Result, source: Any) -> Any:
    """The SR dataset of ``result``, with ``source`` (a pydicom dataset) as evidence."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name=result.model_name[:64], model_name=result.model_version[:64]
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=hd.sr.CodedConcept(
            value="363679005", scheme_designator="SCT", meaning="Imaging"
        ),
        imaging_measurements=[_measurement_group(hd, result, source)],
    )
    with warnings.catch_warnings():
        # Pseudonymous patient names ("PSN-...") are single-component on purpose.
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person")
        return hd.sr.Comprehensive3DSR(
            evidence=[source],
            content=report[0],
            series_instance_uid=generate_uid(),
            series_number=900,
            sop_instance_uid=generate_uid(),
            instance_number=1,
            manufacturer="medtl",
            is_complete=True,
        )


def export_sr(
    store: ReviewStore,
    actor: UserInfo | None,
    case_id: str,
    dest: Path,
    *,
    prediction_id: int | None = None,
) -> Path:
    """Write a case's AI result as a DICOM Comprehensive 3D SR (TID 1500 Measurement Report).

    The report holds the model (algorithm identification), the reported label as a
    qualitative evaluation and the probability as a measurement, and references the case's
    de-identified DICOM image as evidence. The file is created with mode 0600.

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
        ValueError: the case has no AI result, or no DICOM image to reference.
    """
    require_role(actor, "clinician", "researcher", "admin")
    import highdicom  # noqa: F401  (fail early, before any read, when it is missing)
    import pydicom

    case_id = store.get_case(case_id).case_id  # CaseNotFoundError for unknown IDs
    images = [i for i in store.get_images(case_id) if i.kind == "dicom"]
    result = _choose(store, case_id, prediction_id)
    if not images:
        raise ValueError("a DICOM SR needs the case's image stored as de-identified DICOM")
    image = next((i for i in images if i.id == result.image_pk), images[0])
    sr = build_sr(result, pydicom.dcmread(image.path, stop_before_pixels=True))
    dest = Path(dest)
    path = dest / f"{case_id}-ai-sr.dcm" if dest.is_dir() else dest
    with open_private(path) as fh:
        sr.save_as(fh)
    details = {"format": "dicom-sr", "prediction_id": result.id}
    store.db.write(
        lambda s: add_audit(
            s, store.db.now(), "export", user=actor, case_id=case_id, details=details
        ),
        what="export record",
    )
    return path
