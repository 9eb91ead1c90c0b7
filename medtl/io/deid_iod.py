"""Which attributes an object's IOD requires, so that de-identification keeps them present.

PS3.15 E.1.1 (Table E.1-1a) resolves the combined action codes by the attribute's type in
the object's IOD: ``X/Z`` is X unless Z is needed for IOD conformance (Type 3 versus
Type 2), ``X/D`` and ``Z/D`` pick D for a Type 1 attribute, ``X/Z/D`` picks by all three.
medtl applies the same reasoning to every removal it makes (a plain ``X`` of the table,
medtl's stricter choices, free text cleaned to nothing, the safety nets): an attribute that
is Type 1 or 1C in the IOD gets a dummy value (``D``), one that is Type 2 or 2C is emptied
(``Z``), and only Type 3 attributes (and those outside the IOD) are deleted. That is what
keeps a de-identified CT's Position Reference Indicator (Type 2) present, and what
dicom-anonymizer does too (it never deletes an attribute whose code offers Z or D).

The types come from ``deid_iod_types.json`` beside this module, generated from the PS3.3
tables shipped by highdicom (:mod:`medtl.io._deid_iod_gen`), for the image IODs medtl
reads. An object of another SOP class is treated with the strictest type any of those IODs
gives (a choice that can only keep an attribute empty instead of removing it).

Only top-level attributes are judged, and only those present in the source (a conditional
attribute that was present is taken to have met its condition), except the ones in
:data:`REMOVED_WHATEVER_TYPE`, whose condition de-identification itself takes away.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from types import MappingProxyType

TYPES_FILE = "deid_iod_types.json"

#: Conditional attributes removed whatever their type: their condition no longer holds
#: once de-identified (the encrypted original attributes are never carried over; the
#: alternative-calendar dates that make a calendar required are removed).
REMOVED_WHATEVER_TYPE: frozenset[str] = frozenset(
    {"EncryptedAttributesSequence", "PatientAlternativeCalendar"}
)


@cache
def _document() -> Mapping[str, object]:
    text = resources.files("medtl.io").joinpath(TYPES_FILE).read_text(encoding="utf-8")
    return json.loads(text)


@cache
def _fallback() -> Mapping[str, str]:
    """The strictest type each attribute has in any IOD of the table."""
    order = {"1": 0, "1C": 1, "2": 2, "2C": 3}
    out: dict[str, str] = {}
    for types in _document()["iods"].values():  # type: ignore[union-attr]
        for keyword, kind in types.items():
            if keyword not in out or order[kind] < order[out[keyword]]:
                out[keyword] = kind
    return MappingProxyType(out)


def required_types(sop_class_uid: str | None) -> Mapping[str, str]:
    """The Type 1/1C/2/2C top-level attributes of the IOD of ``sop_class_uid``.

    Args:
        sop_class_uid: the object's SOP Class UID (None or unknown: the strictest type of
            any image IOD in the table).

    Returns:
        Keyword -> ``"1"``, ``"1C"``, ``"2"`` or ``"2C"``, without
        :data:`REMOVED_WHATEVER_TYPE`.

    Example:
        >>> required_types("1.2.840.10008.5.1.4.1.1.2")["PositionReferenceIndicator"]
        '2'
    """
    return _required(str(sop_class_uid or "").strip("\x00 "))


@cache
def _required(sop_class_uid: str) -> Mapping[str, str]:
    doc = _document()
    iod = doc["sop_classes"].get(sop_class_uid)  # type: ignore[union-attr]
    types = doc["iods"][iod] if iod is not None else _fallback()  # type: ignore[index]
    return MappingProxyType({k: t for k, t in types.items() if k not in REMOVED_WHATEVER_TYPE})


def removal_for(kind: str | None) -> str:
    """The action that replaces a removal for an attribute of type ``kind``.

    Args:
        kind: its type in the IOD (None: Type 3 or not in the IOD).

    Returns:
        ``D`` for Type 1/1C, ``Z`` for Type 2/2C, ``X`` otherwise.
    """
    if kind in ("1", "1C"):
        return "D"
    if kind in ("2", "2C"):
        return "Z"
    return "X"
