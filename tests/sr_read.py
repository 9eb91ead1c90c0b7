"""Reading medtl's AI-result SRs back in tests: content items by code, every code used."""

from __future__ import annotations

import pydicom
import pytest

#: coding schemes of PS3.16 section 8 that need no CodingSchemeIdentificationSequence item
STANDARD_SCHEMES = frozenset({"DCM", "SCT", "LN", "UCUM", "RFC5646"})


def content_items(ds: pydicom.Dataset) -> list[pydicom.Dataset]:
    """Every content item of the tree, depth first."""
    out = []
    for item in ds.get("ContentSequence", []):
        out.append(item)
        out.extend(content_items(item))
    return out


def items_named(ds: pydicom.Dataset, value: str, scheme: str) -> list[pydicom.Dataset]:
    """The content items whose concept name is ``(value, scheme)``."""
    out = []
    for item in content_items(ds):
        name = item.get("ConceptNameCodeSequence")
        if name and (name[0].CodeValue, name[0].CodingSchemeDesignator) == (value, scheme):
            out.append(item)
    return out


def item_named(ds: pydicom.Dataset, value: str, scheme: str) -> pydicom.Dataset:
    """The one content item named ``(value, scheme)`` (fails the test otherwise)."""
    found = items_named(ds, value, scheme)
    if len(found) != 1:
        pytest.fail(f"{len(found)} content items ({value}, {scheme})")
    return found[0]


def code_of(item: pydicom.Dataset) -> tuple[str, str]:
    """``(value, scheme)`` of a CODE content item's value."""
    code = item.ConceptCodeSequence[0]
    return str(code.CodeValue), str(code.CodingSchemeDesignator)


def number_of(item: pydicom.Dataset) -> float:
    """The value of a NUM content item."""
    return float(item.MeasuredValueSequence[0].NumericValue)


def groups(ds: pydicom.Dataset) -> dict[str, pydicom.Dataset]:
    """Measurement groups by tracking identifier (``AI result 3``, ``Clinician review 1``)."""
    out = {}
    for group in items_named(ds, "125007", "DCM"):
        (tracking,) = [
            i
            for i in group.ContentSequence
            if i.ConceptNameCodeSequence[0].CodeValue == "112039"  # Tracking Identifier
        ]
        out[str(tracking.TextValue)] = group
    return out


def all_codes(ds: pydicom.Dataset) -> list[pydicom.Dataset]:
    """Every coded entry of the dataset (concept names, values, units, observer codes)."""
    return [
        item
        for elem in ds.iterall()
        if elem.VR == "SQ" and elem.keyword.endswith("CodeSequence")
        for item in elem.value
    ]


def declared_schemes(ds: pydicom.Dataset) -> set[str]:
    """The schemes the CodingSchemeIdentificationSequence declares."""
    return {str(i.CodingSchemeDesignator) for i in ds.get("CodingSchemeIdentificationSequence", [])}
