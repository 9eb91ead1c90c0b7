"""DICOM de-identification: PS3.15 Annex E Basic Application Level Confidentiality Profile.

What :func:`deidentify` does (the profile's action table lives in :mod:`medtl.io.deid_tables`):

* applies the action codes of Table E.1-1 (``X`` remove, ``Z`` empty, ``D`` dummy,
  ``K`` keep, ``U`` keyed UID) to every attribute, in the dataset and recursively in every
  sequence item;
* removes **all private tags** (the profile's default), curve groups (50xx) and overlay
  groups (60xx, which may hold burned-in text), and public tags unknown to pydicom's
  dictionary;
* safety nets beyond the table: any person name (VR ``PN``) not otherwise handled is
  emptied, any date/date-time/time (``DA``/``DT``/``TM``) not otherwise handled is removed,
  and any UID (``UI``) that is not a class/syntax UID or a DICOM-registry UID
  (``1.2.840.10008.*``) is replaced like a ``U`` attribute;
* ``U``: every instance UID becomes ``2.25.<int>`` where the integer is an RFC 4122 UUID
  built from ``HMAC-SHA256(key, uid)``: one key maps a UID to the same new UID in every
  file, so the files of a study/series stay together, and nobody without the key can
  reverse or recompute it;
* PatientID and PatientName become the pseudonym ``PSN-<10 hex>`` of the original
  PatientID (:func:`pseudonym`); without a PatientID, the pseudonym is derived from the
  original StudyInstanceUID so unrelated studies are not merged;
* option **113108 Retain Patient Characteristics** (default on): PatientSex, PatientAge,
  PatientSize and PatientWeight are kept. PatientAge is computed from the birth date and
  the study date when missing, and ages of 90 years or more become ``090Y`` (HIPAA Safe
  Harbor). All other dates are removed or emptied per the table (no date shifting, so
  option 113107 is *not* claimed; ``LongitudinalTemporalInformationModified`` = ``REMOVED``);
* **SeriesDescription and StudyDescription are removed** (action ``X``): free text often
  names the patient or the referring site, and cleaning free text reliably is not possible.
  The Clean Descriptors option (113105) is therefore not claimed;
* records PatientIdentityRemoved = ``YES``, DeidentificationMethod and
  DeidentificationMethodCodeSequence (113100, plus 113108 when retained).

Burned-in text in the pixels is *not* removed: :func:`safe_meta` flags it
(``burned_in_warning``), see there for the rule.

A dataset already de-identified by medtl (its DeidentificationMethod names medtl) keeps
its UIDs and pseudonym, so de-identifying twice is idempotent; the removals still run.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import logging
import os
import re
import secrets
import uuid
import warnings
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any

import pydicom
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from medtl.io.deid_tables import (
    BASIC_PROFILE,
    BURN_RISK_MODALITIES,
    DUMMY_BY_VR,
    KEPT_UIDS,
    RETAINED_PATIENT_CHARACTERISTICS,
    SECONDARY_CAPTURE_PREFIX,
)
from medtl.io.errors import CorruptScanError
from medtl.paths import home_subdir

logger = logging.getLogger(__name__)

KEY_FILE_NAME = "deid.key"
KEY_BYTES = 32
_MIN_KEY_BYTES = 16
METHOD_MARKER = "medtl"
DEID_METHOD = "medtl PS3.15 E.1 Basic Profile"
_DICOM_ROOT = "1.2.840.10008."
_MAX_AGE_YEARS = 90
_AGE_RE = re.compile(r"^(\d{3})([DWMY])$")
_PSEUDONYM_RE = re.compile(r"^PSN-[0-9A-F]{10}$")
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")

# --------------------------------------------------------------------------------- keys


def default_key_path() -> Path:
    """Return ``MEDTL_HOME/secrets/deid.key`` (the folder is created 0700 if missing)."""
    return home_subdir("secrets") / KEY_FILE_NAME


def load_key(path: Path | None = None) -> bytes:
    """Return the site de-identification key, creating it on first use.

    The key is 32 random bytes in a file created with mode 0600. Keep it secret and
    backed up: the same key is needed to map new files of a known patient or study to
    the same pseudonyms.

    Args:
        path: key file; default :func:`default_key_path`.

    Returns:
        The key bytes.

    Raises:
        ValueError: the existing key file is too short to be a key.
    """
    path = Path(path) if path is not None else default_key_path()
    if not path.exists():
        # Write the key to a private temporary file, then hard-link it into place: the link
        # is atomic and fails if another process got there first, so no process ever reads
        # a half-written key (two workers start at once when a dataset is built in parallel).
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(KEY_BYTES))
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process created it first: read theirs
            else:
                logger.info("created a new de-identification key in %s", path)
        finally:
            tmp.unlink(missing_ok=True)
    key = path.read_bytes()
    if len(key) < _MIN_KEY_BYTES:
        raise ValueError(
            f"The de-identification key file {path} is too short ({len(key)} bytes); "
            f"restore it from backup or delete it to create a new key."
        )
    return key


def _resolve_key(key: bytes | None) -> bytes:
    if key is None:
        return load_key()
    if not isinstance(key, bytes | bytearray) or len(key) < _MIN_KEY_BYTES:
        raise ValueError(f"the de-identification key must be at least {_MIN_KEY_BYTES} bytes")
    return bytes(key)


def _digest(key: bytes, domain: str, value: str) -> bytes:
    return hmac.new(key, f"{domain}\x00{value}".encode(), hashlib.sha256).digest()


def pseudonym(value: str, *, key: bytes | None = None, prefix: str = "PSN") -> str:
    """Return a keyed pseudonym ``<prefix>-<10 upper-case hex>`` of ``value``.

    Args:
        value: the identifier to hide (e.g. a PatientID); leading/trailing spaces ignored.
        key: HMAC key; default the site key (:func:`load_key`).
        prefix: short tag naming what the pseudonym stands for; part of the HMAC input,
            so pseudonyms with different prefixes cannot be linked.

    Returns:
        e.g. ``"PSN-3F9A0C21B7"``; the same value and key always give the same pseudonym.
    """
    digest = _digest(_resolve_key(key), prefix, str(value).strip())
    return f"{prefix}-{digest.hex()[:10].upper()}"


def pseudonymous_uid(uid: str, *, key: bytes | None = None) -> str:
    """Return the ``2.25.<int>`` UID that :func:`deidentify` substitutes for ``uid``.

    Args:
        uid: original UID (trailing NUL/space padding ignored).
        key: HMAC key; default the site key.

    Returns:
        A UID of at most 44 characters, derived from HMAC-SHA256(key, uid) as a UUID.
    """
    digest = _digest(_resolve_key(key), "uid", str(uid).strip("\x00 "))
    return f"2.25.{uuid.UUID(bytes=digest[:16], version=4).int}"


# ---------------------------------------------------------------- pydicom's log records


class _RedactQuotedValues(logging.Filter):
    """Replace quoted values in pydicom's log messages (``Invalid value for VR DA: '...'``
    quotes birth dates and UIDs as read from the file)."""

    _QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error handling
            return True
        redacted = self._QUOTED.sub("'<redacted>'", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def redact_pydicom_logs() -> None:
    """Install (once) a filter on the ``pydicom`` logger that redacts quoted values.

    pydicom logs value-validation problems with the offending value, e.g. a malformed
    PatientBirthDate. medtl calls this before reading headers; it is idempotent and only
    rewrites the text of pydicom's own records.
    """
    pydicom_logger = logging.getLogger("pydicom")
    if not any(isinstance(f, _RedactQuotedValues) for f in pydicom_logger.filters):
        pydicom_logger.addFilter(_RedactQuotedValues())


# ------------------------------------------------------------------------ de-identify


def _plausible_uid(value: Any) -> bool:
    text = str(value or "").strip("\x00 ")
    return 0 < len(text) <= 64 and bool(_UID_RE.match(text))


class _Context:
    def __init__(self, key: bytes, remap: bool, retain: bool) -> None:
        self.key = key
        self.remap = remap
        self.retain = retain
        self.removed = 0
        self.replaced_uids = 0

    def uid(self, value: str) -> str:
        text = str(value).strip("\x00 ")
        if not text:
            return text
        if _plausible_uid(text) and (text.startswith(_DICOM_ROOT) or not self.remap):
            return text
        self.replaced_uids += 1  # junk is hashed too, so no invalid value is re-assigned
        return pseudonymous_uid(text, key=self.key)


def _is_marked(ds: Dataset) -> bool:
    """True when medtl already de-identified ``ds`` (marker, flag and pseudonym present)."""
    method = ds.get("DeidentificationMethod", "")
    values = method if isinstance(method, list | pydicom.multival.MultiValue) else [method]
    return (
        str(ds.get("PatientIdentityRemoved", "")).upper() == "YES"
        and any(METHOD_MARKER in str(v) for v in values)
        and bool(_PSEUDONYM_RE.match(str(ds.get("PatientID", "") or "")))
    )


def _map_uid_element(elem: Any, ctx: _Context) -> None:
    if elem.VM == 0 or elem.value is None:
        return
    if elem.VM > 1:
        elem.value = [ctx.uid(v) for v in elem.value]
    else:
        elem.value = ctx.uid(elem.value)


def _apply(ds: Dataset, tag: BaseTag, action: str, ctx: _Context) -> None:
    elem = ds[tag]
    if action == "X":
        del ds[tag]
        ctx.removed += 1
    elif action == "Z":
        elem.value = [] if elem.VR == "SQ" else elem.empty_value
    elif action == "D":
        if elem.VR == "SQ":
            for item in elem.value:
                _clean(item, ctx, top=False)
        elif elem.VR == "UI":
            _map_uid_element(elem, ctx)
        else:
            elem.value = DUMMY_BY_VR.get(elem.VR, elem.empty_value)
    elif action == "U":
        if elem.VR == "UI":
            _map_uid_element(elem, ctx)
        elif elem.VR == "SQ":
            for item in elem.value:
                _clean(item, ctx, top=False)
        else:  # a UID stored under another VR: never keep it
            elem.value = elem.empty_value
    elif action == "K" and elem.VR == "SQ":
        for item in elem.value:
            _clean(item, ctx, top=False)


def _default_action(elem: Any, keyword: str) -> str:
    """Action for attributes outside the table: the safety nets described above."""
    vr = elem.VR
    if vr == "SQ":
        return "K"
    if vr == "UI":
        return "K" if keyword in KEPT_UIDS else "U"
    if vr == "PN":
        return "Z"
    if vr in ("DA", "DT", "TM"):
        return "X"
    return "K"


def _drop_unreadable(ds: Dataset, ctx: _Context) -> None:
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
                _drop_unreadable(item, ctx)


def _clean(ds: Dataset, ctx: _Context, *, top: bool) -> None:
    for tag in list(ds.keys()):
        group = tag.group
        if tag.is_private or 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:
            del ds[tag]
            ctx.removed += 1
            continue
        keyword = keyword_for_tag(tag)
        if not keyword or group < 0x0008:
            # a public tag no dictionary knows cannot be judged, and command (0000),
            # file meta (0002) and directory (0004) groups do not belong in a dataset body
            del ds[tag]
            ctx.removed += 1
            continue
        if keyword == "PatientID" and not top:
            if ctx.remap and str(ds[tag].value or "").strip():
                ds[tag].value = pseudonym(str(ds[tag].value), key=ctx.key)
            continue
        if top and keyword in ("PatientID", "PatientName"):
            continue  # replaced by the pseudonym in deidentify()
        if top and ctx.retain and keyword in RETAINED_PATIENT_CHARACTERISTICS:
            continue
        action = BASIC_PROFILE.get(keyword)
        if action is None:
            action = _default_action(ds[tag], keyword)
        _apply(ds, tag, action, ctx)


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


def _drop_implausible(ds: Dataset, ctx: _Context) -> None:
    for tag in list(ds.keys()):
        elem = ds[tag]
        if elem.VR == "SQ" and elem.value is not None:
            for item in elem.value:
                _drop_implausible(item, ctx)
        elif _implausible(elem):
            del ds[tag]
            ctx.removed += 1


def _rebuilt_file_meta(old: FileMetaDataset | None, ds: Dataset, ctx: _Context) -> FileMetaDataset:
    """A new file meta group: nothing of the original survives but its transfer syntax.

    (The original may name the sending application/station, and a damaged one may hold
    swallowed bytes of the dataset.)
    """
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    if old is not None:
        _drop_unreadable(old, ctx)
        syntax = old.get("TransferSyntaxUID")
        if _plausible_uid(syntax):
            meta.TransferSyntaxUID = str(syntax).strip("\x00 ")
        sop_class = old.get("MediaStorageSOPClassUID")
        if _plausible_uid(sop_class):
            meta.MediaStorageSOPClassUID = str(sop_class).strip("\x00 ")
    if _plausible_uid(ds.get("SOPClassUID")):
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if _plausible_uid(ds.get("SOPInstanceUID")):
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    return meta


def deidentify(
    ds: Dataset,
    *,
    key: bytes | None = None,
    in_place: bool = False,
    retain_patient_characteristics: bool = True,
) -> Dataset:
    """De-identify a DICOM dataset with the Basic Application Level Confidentiality Profile.

    See the module docstring for exactly what is removed, replaced and kept.

    Args:
        ds: the dataset (pixel data untouched).
        key: HMAC key for UIDs and pseudonyms; default the site key (:func:`load_key`).
        in_place: modify ``ds`` itself instead of a deep copy.
        retain_patient_characteristics: keep sex, age (capped at 90Y), size and weight
            (option 113108).

    Returns:
        The de-identified dataset (``ds`` itself when ``in_place``).

    Example:
        >>> clean = deidentify(pydicom.dcmread("ct.dcm"), key=my_key)  # doctest: +SKIP
    """
    key = _resolve_key(key)
    out = ds if in_place else copy.deepcopy(ds)
    ctx = _Context(key, remap=True, retain=retain_patient_characteristics)
    redact_pydicom_logs()
    with warnings.catch_warnings():  # pydicom's value warnings quote raw values (dates, UIDs)
        warnings.simplefilter("ignore", UserWarning)
        _drop_unreadable(out, ctx)
    ctx.remap = remap = not _is_marked(out)

    identity = pseudonym(_identity_source(out), key=key) if remap else None
    age = _retained_age(out) if retain_patient_characteristics else None

    _clean(out, ctx, top=True)

    if identity is not None:
        out.PatientID = identity
        out.PatientName = identity
    else:  # already medtl's: the PatientID is a pseudonym (checked by _is_marked)
        out.PatientName = str(out.PatientID)
    if retain_patient_characteristics:
        if age is not None:
            out.PatientAge = age
        elif "PatientAge" in out:
            del out.PatientAge
    else:
        for keyword in RETAINED_PATIENT_CHARACTERISTICS:
            if keyword in out:
                del out[keyword]

    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = DEID_METHOD
    codes = [_code_item("113100", "Basic Application Confidentiality Profile")]
    if retain_patient_characteristics:
        codes.append(_code_item("113108", "Retain Patient Characteristics Option"))
    out.DeidentificationMethodCodeSequence = Sequence(codes)
    out.LongitudinalTemporalInformationModified = "REMOVED"

    _drop_implausible(out, ctx)
    if getattr(out, "file_meta", None) is not None:
        out.file_meta = _rebuilt_file_meta(out.file_meta, out, ctx)
    if hasattr(out, "preamble") and out.preamble is not None:
        out.preamble = b"\x00" * 128  # a preamble may carry a second (e.g. TIFF) header
    logger.debug(
        "de-identified dataset: %d attributes removed, %d UIDs replaced",
        ctx.removed,
        ctx.replaced_uids,
    )
    return out


# -------------------------------------------------------------------------- safe meta


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


# ---------------------------------------------------------------------------- writing


def _read_dicom(path: Path, index: int, total: int) -> Dataset:
    """Read a DICOM file, also without preamble/file meta; errors never name the file."""
    problem: Exception | None = None
    for force in (False, True):
        try:
            ds = pydicom.dcmread(path, force=force)
        except (InvalidDicomError, OSError, EOFError, ValueError, KeyError) as exc:
            problem = exc
            continue
        if not force or "SOPClassUID" in ds:  # a forced read of junk has no SOP class
            return ds
    kind = type(problem).__name__ if problem is not None else "no SOP Class UID"
    raise CorruptScanError(
        f"Input file {index} of {total} is not a readable DICOM file ({kind}); "
        "check it was exported as DICOM."
    )


def write_deidentified(
    source_paths: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    key: bytes | None = None,
) -> list[Path]:
    """Write de-identified copies of DICOM files.

    Output names are ``<pseudonymous SOPInstanceUID>.dcm`` (never the original names);
    the 128-byte preamble is zeroed. Files are written in DICOM file format (part 10),
    also for inputs that lacked a preamble or file meta.

    Args:
        source_paths: DICOM files to copy.
        out_dir: destination folder (created if missing).
        key: HMAC key; default the site key.

    Returns:
        The written paths, in input order.

    Raises:
        CorruptScanError: an input is not a readable DICOM file (named by its position,
            since original file names may carry PHI).
    """
    key = _resolve_key(key)
    paths = [Path(p) for p in source_paths]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    redact_pydicom_logs()
    for index, path in enumerate(paths, start=1):
        ds = _read_dicom(path, index, len(paths))
        clean = deidentify(ds, key=key, in_place=True)
        if getattr(clean, "file_meta", None) is None:
            clean.file_meta = FileMetaDataset()
        if "TransferSyntaxUID" not in clean.file_meta:  # a bare dataset without file meta
            clean.file_meta.TransferSyntaxUID = (
                pydicom.uid.ImplicitVRLittleEndian
                if clean.original_encoding[0]
                else pydicom.uid.ExplicitVRLittleEndian
            )
        name = str(clean.get("SOPInstanceUID", "") or "") or pseudonym(
            f"{index}:{path.name}", key=key, prefix="FILE"
        )
        target = out / f"{name}.dcm"
        try:
            clean.save_as(target, enforce_file_format=True)
        except Exception as exc:  # pydicom raises many types for damaged headers
            target.unlink(missing_ok=True)
            raise CorruptScanError(
                f"Input file {index} of {len(paths)} has a damaged header and could not be "
                f"written ({type(exc).__name__}); export it again from the source system."
            ) from None
        written.append(target)
    logger.info("wrote %d de-identified DICOM files", len(written))
    return written


__all__ = [
    "BURN_RISK_MODALITIES",
    "burned_in_status",
    "default_key_path",
    "deidentify",
    "load_key",
    "pseudonym",
    "pseudonymous_uid",
    "redact_pydicom_logs",
    "safe_meta",
    "write_deidentified",
]
