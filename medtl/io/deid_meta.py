"""The whitelist of non-PHI header fields of a de-identified dataset, and the burned-in
text rule."""

from __future__ import annotations

from typing import Any

import pydicom
from pydicom.dataset import Dataset

from medtl.io.deid_tables import BURN_RISK_MODALITIES, SECONDARY_CAPTURE_PREFIX


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    return str(value).strip() or None


def _int(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    try:
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


def burned_in_status(ds: Dataset) -> tuple[str, bool]:
    """Return ``(burned_in_annotation, burned_in_warning)`` for a dataset.

    Rule: ``burned_in_annotation`` is BurnedInAnnotation upper-cased (``YES``/``NO``),
    or ``UNKNOWN`` when absent or not YES/NO. ``burned_in_warning`` is True when it is
    ``YES``; False when ``NO``; when ``UNKNOWN`` it is True only for modalities that
    commonly burn text into the pixels (:data:`BURN_RISK_MODALITIES`: US, OT, XA, ES, SC,
    XC, DOC, GM) or any Secondary Capture SOP class, and False otherwise (CT, MR, CR, DX...).

    Args:
        ds: a DICOM dataset.

    Returns:
        The flag string and the warning boolean.
    """
    flag = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if flag not in ("YES", "NO"):
        flag = "UNKNOWN"
    if flag == "YES":
        return flag, True
    if flag == "NO":
        return flag, False
    modality = str(ds.get("Modality", "") or "").strip().upper()
    sop_class = str(ds.get("SOPClassUID", "") or "")
    risky = modality in BURN_RISK_MODALITIES or sop_class.startswith(SECONDARY_CAPTURE_PREFIX)
    return flag, risky


def safe_meta(ds: Dataset) -> dict[str, Any]:
    """Return a whitelist of non-PHI header fields of a de-identified dataset.

    Keys: ``modality``, ``sop_class_uid``, ``sop_class_name``, ``body_part``,
    ``laterality``, ``view_position``, ``manufacturer``, ``manufacturer_model``,
    ``photometric``, ``bits_stored``, ``rows``, ``columns``, ``number_of_frames``,
    ``patient_pseudonym``, ``study_uid``, ``series_uid``, ``instance_uid``, ``patient_sex``,
    ``patient_age`` (when retained), ``burned_in_annotation``, ``burned_in_warning``
    (see :func:`burned_in_status`), ``deidentified`` (always True). Missing fields are None.

    Args:
        ds: a dataset returned by :func:`deidentify`.

    Returns:
        A JSON-friendly dict.

    Raises:
        ValueError: ``ds`` is not marked de-identified (PatientIdentityRemoved != YES).
    """
    if str(ds.get("PatientIdentityRemoved", "")).upper() != "YES":
        raise ValueError("safe_meta needs a de-identified dataset: call deidentify() first")
    sop_class = _text(ds, "SOPClassUID")
    sop_name = None
    if sop_class:
        name = pydicom.uid.UID(sop_class).name
        sop_name = name if name != sop_class else None
    flag, warning = burned_in_status(ds)
    return {
        "modality": _text(ds, "Modality"),
        "sop_class_uid": sop_class,
        "sop_class_name": sop_name,
        "body_part": _text(ds, "BodyPartExamined"),
        "laterality": _text(ds, "ImageLaterality") or _text(ds, "Laterality"),
        "view_position": _text(ds, "ViewPosition"),
        "manufacturer": _text(ds, "Manufacturer"),
        "manufacturer_model": _text(ds, "ManufacturerModelName"),
        "photometric": _text(ds, "PhotometricInterpretation"),
        "bits_stored": _int(ds, "BitsStored"),
        "rows": _int(ds, "Rows"),
        "columns": _int(ds, "Columns"),
        "number_of_frames": _int(ds, "NumberOfFrames"),
        "patient_pseudonym": _text(ds, "PatientID"),
        "study_uid": _text(ds, "StudyInstanceUID"),
        "series_uid": _text(ds, "SeriesInstanceUID"),
        "instance_uid": _text(ds, "SOPInstanceUID"),
        "patient_sex": _text(ds, "PatientSex"),
        "patient_age": _text(ds, "PatientAge"),
        "burned_in_annotation": flag,
        "burned_in_warning": warning,
        "deidentified": True,
    }
