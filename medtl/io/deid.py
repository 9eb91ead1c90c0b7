"""DICOM de-identification: PS3.15 Annex E Basic Application Level Confidentiality Profile.

What :func:`deidentify` does:

* applies the actions of Table E.1-1 in the edition generated into
  ``deid_table_e11.json`` (:func:`medtl.io.deid_tables.profile_table`; ``X`` remove, ``Z``
  empty, ``D`` dummy value of the VR, ``U`` keyed UID) to every attribute, in the dataset
  and recursively in every sequence item. Combined codes are resolved to the strictest
  choice (``X/Z``, ``X/D``, ``X/Z/D`` remove; ``Z/D`` empties); ``X/Z/U*`` reference
  sequences are kept with every UID inside replaced. A few attributes are removed where the
  table is milder (``STRICTER_THAN_TABLE``: SR content, graphic annotations, some names);
* **keeps the object valid for its IOD** (PS3.15 E.1.1): a top-level attribute the IOD
  requires is never deleted, whatever removed it (the table's ``X``, a combined code,
  medtl's stricter choices, free text cleaned to nothing, a safety net): Type 2/2C
  attributes are emptied (``Z``), Type 1/1C ones get a dummy value (``D``), and a ``Z`` on a
  Type 1 attribute becomes ``D`` (:mod:`medtl.io.deid_iod`, types generated from PS3.3);
* removes **all private tags** (the profile's default), curve groups (50xx) and overlay
  groups (60xx, which may hold burned-in text), and public tags unknown to pydicom's
  dictionary (including attributes of the table newer than pydicom);
* safety nets beyond the table: any person name (VR ``PN``) not otherwise handled is
  emptied, any date/date-time/time (``DA``/``DT``/``TM``) not otherwise handled is removed,
  and any UID (``UI``) that is not a class/syntax UID or a DICOM-registry UID
  (``1.2.840.10008.*``) is replaced like a ``U`` attribute;
* **descriptive free text outside the table** (``LO``/``LT``/``SH``/``ST``/``UC``/``UT``,
  e.g. PostprocessingFunction) is cleaned as the Clean Descriptors option describes: only
  words of an imaging vocabulary and numbers survive (:mod:`medtl.io.deid_clean`). A site
  can opt out with ``MEDTL_DEID_KEEP_FREE_TEXT=1``;
* ``U``: every instance UID becomes ``2.25.<int>`` built from ``HMAC-SHA256(key, uid)``
  (:mod:`medtl.io.deid_keys`): one key maps a UID to the same new UID in every file;
* PatientID and PatientName become the pseudonym ``PSN-<10 hex>`` of the original
  PatientID (:func:`pseudonym`); without a PatientID, the pseudonym is derived from the
  original StudyInstanceUID so unrelated studies are not merged;
* option **113108 Retain Patient Characteristics** (default on): PatientSex, PatientAge,
  PatientSize and PatientWeight are kept. PatientAge is computed from the birth date and
  the study date when missing, and ages of 90 years or more become ``090Y`` (HIPAA Safe
  Harbor). All other dates are removed or emptied per the table (no date shifting, so
  option 113107 is *not* claimed; ``LongitudinalTemporalInformationModified`` = ``REMOVED``);
* **descriptors listed in the table are removed**, not cleaned (SeriesDescription,
  StudyDescription, ProtocolName...: action ``X``, stricter than option 113105's ``C``),
  so the Clean Descriptors option is not claimed;
* records PatientIdentityRemoved = ``YES``, DeidentificationMethod (naming the table
  edition) and DeidentificationMethodCodeSequence (113100, plus 113108 when retained).

Burned-in text in the pixels is *not* removed: :func:`safe_meta` flags it
(``burned_in_warning``), see there for the rule.

A dataset already de-identified by medtl (its DeidentificationMethod names medtl) keeps
its UIDs and pseudonym, so de-identifying twice is idempotent; the removals still run.

This module is the public face; the work is done in ``deid_keys`` (keys, pseudonyms),
``deid_tables`` (the table), ``deid_iod`` (the IOD types), ``deid_actions`` (applying
them), ``deid_clean`` (free text),
``deid_core`` (:func:`deidentify`), ``deid_meta`` (:func:`safe_meta`) and ``deid_write``
(:func:`write_deidentified`).
"""

from __future__ import annotations

from medtl.io.deid_core import METHOD_MARKER, deid_method, deidentify
from medtl.io.deid_keys import (
    KEY_BYTES,
    KEY_FILE_NAME,
    default_key_path,
    load_key,
    pseudonym,
    pseudonymous_uid,
)
from medtl.io.deid_meta import burned_in_status, safe_meta
from medtl.io.deid_tables import BURN_RISK_MODALITIES, profile_table
from medtl.io.deid_write import write_deidentified
from medtl.io.redact import redact_pydicom_logs

__all__ = [
    "BURN_RISK_MODALITIES",
    "KEY_BYTES",
    "KEY_FILE_NAME",
    "METHOD_MARKER",
    "burned_in_status",
    "default_key_path",
    "deid_method",
    "deidentify",
    "load_key",
    "profile_table",
    "pseudonym",
    "pseudonymous_uid",
    "redact_pydicom_logs",
    "safe_meta",
    "write_deidentified",
]
