"""The AI result as a DICOM Comprehensive 3D SR (TID 1500 Measurement Report, highdicom)
for the ORIGINAL study, as IHE AI Results describes.

The SR carries the original patient and study (copied from the source headers re-read from
the PACS at push time), references every source instance the model saw, names the model
(device observer name = model name, device observer model name = model version, plus
TID 4019 algorithm identification), and holds the calibrated probability, the decision at
the operating point, the reviewer's verdict and whether a clinician confirmed the result.
A result no clinician reviewed is marked UNVERIFIED (verification flag, series
description and a coded "confirmed by clinician: no").
"""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

SCHEME = "99MEDTL"
SERIES_NUMBER = 990
_STUDY_KEYWORDS = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)


@dataclass(frozen=True)
class SrContent:
    """What the SR says (no identifiers: those come from the source headers).

    Attributes:
        model_name: model package name.
        model_version: its version.
        label: the positive label (e.g. ``nodule``).
        probability: calibrated probability.
        threshold: operating-point threshold (``None``: no decision).
        operating_point: the operating point's name.
        positive: the decision at the operating point.
        verdict: the reviewer's latest verdict (``None``: not reviewed).
        reviewer: the reviewer's user name.
        case_id: the case pseudonym (for the tracking identifier).
    """

    model_name: str
    model_version: str
    label: str
    probability: float
    threshold: float | None
    operating_point: str | None
    positive: bool | None
    verdict: str | None
    reviewer: str | None
    case_id: str

    @property
    def confirmed(self) -> bool:
        """True when the reviewing clinician agreed with the AI result."""
        return self.verdict == "agree"


def _code(value: str, meaning: str, scheme: str = SCHEME):
    import highdicom as hd

    return hd.sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning[:64])


def _evaluations(content: SrContent) -> list:
    import highdicom as hd

    yes, no = _code("373066001", "Yes", "SCT"), _code("373067005", "No", "SCT")
    out = []
    if content.positive is not None:
        point = content.operating_point or "operating point"
        out.append(
            hd.sr.QualitativeEvaluation(
                name=_code("AIDECISION", f"AI decision at {point}"),
                value=_code("52101004", "Present", "SCT")
                if content.positive
                else _code("2667000", "Absent", "SCT"),
            )
        )
    verdict = content.verdict or "not reviewed"
    out.append(
        hd.sr.QualitativeEvaluation(
            name=_code("VERDICT", "Clinician verdict on AI result"),
            value=_code(verdict.upper().replace(" ", "")[:16], verdict),
        )
    )
    out.append(
        hd.sr.QualitativeEvaluation(
            name=_code("CONFIRMED", "AI result confirmed by clinician"),
            value=yes if content.confirmed else no,
        )
    )
    return out


def _measurements(content: SrContent) -> list:
    import highdicom as hd

    unit = _code("1", "no units", "UCUM")
    out = [
        hd.sr.Measurement(
            name=_code("PROB", f"Calibrated probability of {content.label}"),
            value=float(content.probability),
            unit=unit,
        )
    ]
    if content.threshold is not None:
        out.append(
            hd.sr.Measurement(
                name=_code("THRESH", "Operating point threshold"),
                value=float(content.threshold),
                unit=unit,
            )
        )
    return out


def complete_header(header: Dataset) -> Dataset:
    """A copy of ``header`` with every patient/study attribute highdicom reads (empty when
    the PACS did not return it)."""
    out = copy.deepcopy(header)
    for keyword in _STUDY_KEYWORDS:
        if keyword not in out:
            setattr(out, keyword, None)
    return out


def build_sr(
    sources: list[Dataset], content: SrContent, *, sop_instance_uid: str, series_uid: str
) -> Dataset:
    """Build the SR.

    Args:
        sources: headers of the source instances (with the original patient and study).
        content: the AI result and its review.
        sop_instance_uid: the SR's UID (deterministic per result, so a retried push
            replaces instead of duplicating).
        series_uid: the SR series UID.

    Returns:
        The ``highdicom.sr.Comprehensive3DSR`` dataset.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from medtl.pacs.logs import quiet_client_logs

    quiet_client_logs()
    if not sources:
        raise ValueError("an SR needs at least one source instance")
    evidence = [complete_header(sources[0]), *sources[1:]]
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(
                prefix=None,
                entropy_srcs=[f"medtl-device:{content.model_name}@{content.model_version}"],
            ),
            name=content.model_name[:64],
            manufacturer_name="medtl",
            model_name=content.model_version[:64],
        ),
    )
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=sop_instance_uid + ".1", identifier=f"AI result {content.case_id}"
        ),
        algorithm_id=hd.sr.AlgorithmIdentification(
            name=content.model_name[:64], version=content.model_version[:64]
        ),
        measurements=_measurements(content),
        qualitative_evaluations=_evaluations(content),
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(s) for s in sources],
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=_code("363679005", "Imaging", "SCT"),
        imaging_measurements=[group],
    )
    verified = content.verdict is not None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person")
        sr = hd.sr.Comprehensive3DSR(
            evidence=evidence,
            content=report[0],
            series_instance_uid=series_uid,
            series_number=SERIES_NUMBER,
            sop_instance_uid=sop_instance_uid,
            instance_number=1,
            manufacturer="medtl",
            is_complete=True,
            is_verified=verified,
            verifying_observer_name=(content.reviewer or "unknown") if verified else None,
            verifying_organization="medtl" if verified else None,
        )
    sr.SeriesDescription = "medtl AI result" + (
        "" if verified else " - UNVERIFIED: not reviewed by a clinician"
    )
    return sr
