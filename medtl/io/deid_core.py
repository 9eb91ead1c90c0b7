"""The de-identification of one dataset: :func:`deidentify` (see :mod:`medtl.io.deid`)."""

from __future__ import annotations

import copy
import logging
import re
from datetime import date
from typing import Any

import pydicom
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

from medtl.io.deid_actions import Context, clean_dataset, plausible_uid
from medtl.io.deid_clean import keep_free_text_setting
from medtl.io.deid_iod import removal_for, required_types
from medtl.io.deid_keys import pseudonym, resolve_key
from medtl.io.deid_tables import RETAINED_PATIENT_CHARACTERISTICS, profile_table
from medtl.io.redact import redacted_warnings

logger = logging.getLogger(__name__)

METHOD_MARKER = "medtl"
_MAX_AGE_YEARS = 90
_AGE_RE = re.compile(r"^(\d{3})([DWMY])$")
_PSEUDONYM_RE = re.compile(r"^PSN-[0-9A-F]{10}$")


# ------------------------------------------------------------------ damaged elements


def drop_unreadable(ds: Dataset, ctx: Context) -> None:
    """Remove elements whose bytes cannot be decoded: what cannot be read cannot be judged."""
    for tag in list(ds.keys()):
        try:
            elem = ds[tag]
        except Exception:  # any decoding failure of untrusted bytes (VR, length, charset)
            del ds[tag]
            ctx.removed += 1
            continue
        if elem.VR == "SQ" and elem.value is not None:
            for item in elem.value:
                drop_unreadable(item, ctx)


_MAX_CHARS = {
    "AE": 16,
    "AS": 4,
    "CS": 16,
    "DA": 18,
    "DS": 16,
    "DT": 26,
    "IS": 12,
    "LO": 64,
    "LT": 10240,
    "PN": 324,
    "SH": 16,
    "ST": 1024,
    "TM": 28,
    "UI": 64,
}
_TEXT_VRS = frozenset({*_MAX_CHARS, "UC", "UR", "UT"})
_FREE_TEXT_CONTROLS = frozenset("\r\n\f\t\x1b")


def _implausible(elem: Any) -> bool:
    """True for values no genuine element has: binary bytes in text, or text more than
    twice as long as the VR allows (mildly over-long values from real devices survive).

    A corrupt length makes an element swallow its neighbours (PHI included); their
    element headers hold bytes below 0x20, so such values are dropped rather than kept.
    """
    if elem.VR == "UN":
        return True
    if elem.VR not in _TEXT_VRS or elem.value is None:
        return False
    values = elem.value if elem.VM > 1 else [elem.value]
    limit = _MAX_CHARS.get(elem.VR)
    for value in values:
        text = str(value)
        if limit is not None and len(text) > 2 * limit:
            return True
        if any(ch < " " and ch not in _FREE_TEXT_CONTROLS for ch in text.rstrip("\x00")):
            return True
    return False


def _drop_implausible(ds: Dataset, ctx: Context) -> None:
    for tag in list(ds.keys()):
        elem = ds[tag]
        if elem.VR == "SQ" and elem.value is not None:
            for item in elem.value:
                _drop_implausible(item, ctx)
        elif _implausible(elem):
            del ds[tag]
            ctx.removed += 1


def _restore_required(out: Dataset, present: set[str], required: dict[str, str]) -> None:
    """Put back, empty, every Type 2/2C attribute of the IOD that was present in the source
    and is gone (dropped as unreadable or implausible, or a patient characteristic not
    retained): the object keeps the attribute without any original value.

    A Type 1 attribute that was dropped as damaged is not invented (a dummy Modality would
    mislead more than a missing one); the table's actions never drop one
    (:func:`medtl.io.deid_actions.conformant_action`).
    """
    for keyword in sorted(present & required.keys()):
        if keyword in out or removal_for(required[keyword]) != "Z":
            continue
        tag = tag_for_keyword(keyword)
        vr = dictionary_VR(tag).split(" or ")[0] if tag is not None else ""
        if tag is not None and vr:
            out.add_new(tag, vr, Sequence() if vr == "SQ" else None)


# --------------------------------------------------------------------- de-identify


def deid_method(*, cleaned_free_text: bool) -> str:
    """The DeidentificationMethod text: medtl, the profile and the table edition."""
    method = f"{METHOD_MARKER} PS3.15 E.1-1 {profile_table().edition} Basic Profile"
    return f"{method}; free text cleaned" if cleaned_free_text else method


def _is_marked(ds: Dataset) -> bool:
    """True when medtl already de-identified ``ds`` (marker, flag and pseudonym present)."""
    method = ds.get("DeidentificationMethod", "")
    values = method if isinstance(method, list | pydicom.multival.MultiValue) else [method]
    return (
        str(ds.get("PatientIdentityRemoved", "")).upper() == "YES"
        and any(METHOD_MARKER in str(v) for v in values)
        and bool(_PSEUDONYM_RE.match(str(ds.get("PatientID", "") or "")))
    )


def _parse_da(value: Any) -> date | None:
    text = str(value or "").strip()
    if len(text) < 8 or not text[:8].isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def _retained_age(ds: Dataset) -> str | None:
    """PatientAge to keep (``nnnY`` capped at 090Y), computed from dates when missing."""
    age = str(ds.get("PatientAge", "") or "").strip().upper()
    match = _AGE_RE.match(age)
    if match:
        if match.group(2) == "Y" and int(match.group(1)) >= _MAX_AGE_YEARS:
            return f"{_MAX_AGE_YEARS:03d}Y"
        return age
    birth = _parse_da(ds.get("PatientBirthDate"))
    when = None
    for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        when = _parse_da(ds.get(keyword))
        if when is not None:
            break
    if birth is None or when is None or when < birth:
        return None
    years = when.year - birth.year - ((when.month, when.day) < (birth.month, birth.day))
    return f"{min(years, _MAX_AGE_YEARS):03d}Y"


def _sop_class(ds: Dataset) -> str | None:
    """The SOP Class UID, if it can be read (an undecodable one gives the fallback types)."""
    try:
        value = ds.get("SOPClassUID")
    except Exception:  # untrusted bytes: any decoding failure
        return None
    return str(value) if plausible_uid(value) else None


def _identity_source(ds: Dataset) -> str:
    patient_id = str(ds.get("PatientID", "") or "").strip()
    if patient_id:
        return patient_id
    return "study:" + str(ds.get("StudyInstanceUID", "") or "").strip()


def _code_item(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def _rebuilt_file_meta(old: FileMetaDataset | None, ds: Dataset, ctx: Context) -> FileMetaDataset:
    """A new file meta group: nothing of the original survives but its transfer syntax.

    (The original may name the sending application/station, and a damaged one may hold
    swallowed bytes of the dataset.)
    """
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    if old is not None:
        drop_unreadable(old, ctx)
        syntax = old.get("TransferSyntaxUID")
        if plausible_uid(syntax):
            meta.TransferSyntaxUID = str(syntax).strip("\x00 ")
        sop_class = old.get("MediaStorageSOPClassUID")
        if plausible_uid(sop_class):
            meta.MediaStorageSOPClassUID = str(sop_class).strip("\x00 ")
    if plausible_uid(ds.get("SOPClassUID")):
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if plausible_uid(ds.get("SOPInstanceUID")):
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    return meta


def _set_identity(out: Dataset, identity: str | None, age: str | None, retain: bool) -> None:
    if identity is not None:
        out.PatientID = identity
        out.PatientName = identity
    else:  # already medtl's: the PatientID is a pseudonym (checked by _is_marked)
        out.PatientName = str(out.PatientID)
    if retain:
        if age is not None:
            out.PatientAge = age
        elif "PatientAge" in out:
            del out.PatientAge
    else:
        for keyword in RETAINED_PATIENT_CHARACTERISTICS:
            if keyword in out:
                del out[keyword]


def _record_method(out: Dataset, *, retain: bool, cleaned_free_text: bool) -> None:
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = deid_method(cleaned_free_text=cleaned_free_text)
    codes = [_code_item("113100", "Basic Application Confidentiality Profile")]
    if retain:
        codes.append(_code_item("113108", "Retain Patient Characteristics Option"))
    out.DeidentificationMethodCodeSequence = Sequence(codes)
    out.LongitudinalTemporalInformationModified = "REMOVED"


def deidentify(
    ds: Dataset,
    *,
    key: bytes | None = None,
    in_place: bool = False,
    retain_patient_characteristics: bool = True,
    clean_free_text: bool | None = None,
) -> Dataset:
    """De-identify a DICOM dataset with the Basic Application Level Confidentiality Profile.

    See :mod:`medtl.io.deid` for exactly what is removed, replaced, cleaned and kept.

    Args:
        ds: the dataset (pixel data untouched).
        key: HMAC key for UIDs and pseudonyms; default the site key (:func:`load_key`).
        in_place: modify ``ds`` itself instead of a deep copy.
        retain_patient_characteristics: keep sex, age (capped at 90Y), size and weight
            (option 113108).
        clean_free_text: clean descriptive free text outside Table E.1-1
            (:mod:`medtl.io.deid_clean`); None: yes, unless the site set
            ``MEDTL_DEID_KEEP_FREE_TEXT=1``.

    Returns:
        The de-identified dataset (``ds`` itself when ``in_place``).

    Example:
        >>> clean = deidentify(pydicom.dcmread("ct.dcm"), key=my_key)  # doctest: +SKIP
    """
    key = resolve_key(key)
    if clean_free_text is None:
        clean_free_text = not keep_free_text_setting()
    retain = retain_patient_characteristics
    out = ds if in_place else copy.deepcopy(ds)
    required = dict(required_types(_sop_class(out)))
    # keys(), not iteration: iterating a Dataset decodes every element's value
    present = {keyword_for_tag(tag) for tag in out.keys()}  # noqa: SIM118
    ctx = Context(
        key, remap=True, retain=retain, clean_free_text=clean_free_text, required=required
    )
    # pydicom's value warnings quote raw values (dates, names, UIDs): logged redacted
    with redacted_warnings(logger, "de-identification"):
        drop_unreadable(out, ctx)
        ctx.remap = remap = not _is_marked(out)
        identity = pseudonym(_identity_source(out), key=key) if remap else None
        age = _retained_age(out) if retain else None
        clean_dataset(out, ctx, top=True)
        _set_identity(out, identity, age, retain)
        _record_method(out, retain=retain, cleaned_free_text=clean_free_text)
        _drop_implausible(out, ctx)
        _restore_required(out, present, required)
    if getattr(out, "file_meta", None) is not None:
        out.file_meta = _rebuilt_file_meta(out.file_meta, out, ctx)
    if hasattr(out, "preamble") and out.preamble is not None:
        out.preamble = b"\x00" * 128  # a preamble may carry a second (e.g. TIFF) header
    logger.debug(
        "de-identified dataset: %d attributes removed, %d UIDs replaced, %d texts cleaned",
        ctx.removed,
        ctx.replaced_uids,
        ctx.cleaned,
    )
    return out
