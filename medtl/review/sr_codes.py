"""The codes of medtl's AI-result SR, with where each comes from.

Every concept comes from the DICOM standard's own context groups (PS3.16, shipped with
pydicom as :data:`pydicom.sr.codedict.codes`) or from SNOMED CT / LOINC as those groups use
them. A label of a model package maps to its finding and finding site through
:data:`FINDINGS`; a label with no standard code falls back to a private code of the
:data:`CODING_SCHEME` scheme, which :func:`coding_schemes` declares in the SR's
CodingSchemeIdentificationSequence (as does every other private code that remains: the
few medtl statements the standard has no concept for).

======================================  ==============================================
What                                    Code (source)
======================================  ==============================================
nodule                                  SCT 27925004 "Nodule" (CID 6104)
pneumonia                               SCT 233604007 "Pneumonia" (SNOMED CT)
lung lobes                              SCT 45653009 / 90572001 / 72481006 (CID 6170)
                                        with laterality SCT 7771000 / 24028007 (CID 244)
heart, aorta, liver, vertebra, rib      SCT codes of CID 7151 / 7192
finding site of lung findings           SCT 39607008 "Lung" (CID 7151)
probability of the positive class       DCM 122157 "Probability", unit UCUM 1 (CID 7181)
operating-point threshold               DCM 122411 "Threshold Value"
operating-point name                    DCM 111081 "CAD Operating Point Description"
decision at the operating point         <finding> = SCT 52101004 Present /
                                        SCT 272519000 Absent (CID 240)
reviewer's comment                      DCM 121106 "Comment"
procedure: chest X-ray / CT of chest    SCT 399208008 / SCT 169069000 (SNOMED CT)
procedure: other XR / CT / MR           LN 43468-8 / 25045-6 / 25056-3 (CID 100)
======================================  ==============================================
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.dataset import Dataset
    from pydicom.sr.coding import Code

#: Private coding scheme of medtl's SR concepts (DICOM reserves ``99`` prefixes for this).
CODING_SCHEME = "99MEDTL"
#: Private coding scheme of medtl user accounts (the verifying observer's identifier).
USER_SCHEME = "99MEDTLUSR"

_SCHEME_NAMES = {
    CODING_SCHEME: "medtl AI result concepts",
    USER_SCHEME: "medtl user accounts",
}

#: the private concepts that remain (code value, meaning)
CALIBRATED = ("CALIBRATED", "Probability calibrated on held-out data")
CONFIRMED = ("CONFIRMED", "AI result confirmed by clinician")
DOMAIN_CAUTION = ("DOMAINCAUTION", "Input outside the model's validated domain")

_LOBES = {"upper": "UpperLobeOfLung", "lower": "LowerLobeOfLung", "middle": "MiddleLobeOfRightLung"}
_ANATOMY = {
    "heart": "Heart",
    "aorta": "Aorta",
    "liver": "Liver",
    "vertebra": "Vertebra",
    "rib": "Rib",
}


@dataclass(frozen=True)
class FindingCodes:
    """How one class label is coded.

    Attributes:
        finding: the finding (TID 1501 "Finding") and the concept of the decision.
        site: the finding site (``None``: none).
        laterality: the site's laterality (CID 244; ``None``: none).
        standard: False when ``finding`` is a private fallback code.
    """

    finding: Code
    site: Code | None
    laterality: Code | None
    standard: bool


def private_code(value: str, meaning: str, scheme: str = CODING_SCHEME) -> Code:
    """A code of a private scheme (value cut to the 16 characters DICOM allows)."""
    from pydicom.sr.coding import Code

    return Code(value=value[:16], scheme_designator=scheme, meaning=meaning[:64])


def _label_key(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.strip().lower()).strip("_")


def finding_codes(label: str) -> FindingCodes:
    """The codes of a package's class label (e.g. ``nodule``, ``left_upper_lobe``).

    Args:
        label: the class name as the package spells it.

    Returns:
        Standard codes where the table has them; otherwise a private ``99MEDTL`` code
        derived from the label (declared by :func:`coding_schemes`).
    """
    from pydicom.sr.codedict import codes

    key = _label_key(label)
    if key in ("nodule", "lung_nodule", "pulmonary_nodule"):
        return FindingCodes(codes.cid6104.Nodule, codes.SCT.Lung, None, True)
    if key == "pneumonia":
        from pydicom.sr.coding import Code

        return FindingCodes(Code("233604007", "SCT", "Pneumonia"), codes.SCT.Lung, None, True)
    lobe = re.fullmatch(r"(left|right)_(upper|lower|middle)_lobe", key)
    if lobe and not (lobe[1] == "left" and lobe[2] == "middle"):
        structure = getattr(codes.cid6170, _LOBES[lobe[2]])
        side = codes.cid244.Left if lobe[1] == "left" else codes.cid244.Right
        return FindingCodes(structure, structure, side, True)
    if key in _ANATOMY:
        structure = getattr(codes.SCT, _ANATOMY[key])
        return FindingCodes(structure, structure, None, True)
    value = key.upper().replace("_", "")
    if not value or len(value) > 16:
        value = "L" + hashlib.sha256(label.encode()).hexdigest()[:12].upper()
    return FindingCodes(private_code(value, label), None, None, False)


def procedure_code(modality: str | None, family: str | None, chest: bool) -> Code:
    """The imaging procedure reported (TID 1500 row 4).

    Args:
        modality: the source image's Modality (``CR``, ``DX``, ``CT``, ``MR``, ``OT``...).
        family: the package's modality family (``cxr``, ``ct``, ``mri``), used when the
            image's own modality says nothing (``OT``, a PNG or NIfTI upload).
        chest: whether the image is of the chest (body part or finding site).

    Returns:
        Plain chest X-ray / CT of chest (SNOMED CT) for chest images, the CID 100
        "unspecified body region" LOINC codes otherwise, and CID 100 "Imaging procedure"
        only when neither the image nor the package names a modality.
    """
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    kind = {"CR": "XR", "DX": "XR", "XR": "XR", "CT": "CT", "MR": "MR"}.get(
        (modality or "").upper()
    ) or {"cxr": "XR", "ct": "CT", "mri": "MR"}.get((family or "").lower())
    if kind == "XR":
        if chest:
            return Code("399208008", "SCT", "Plain chest X-ray")
        return codes.LN.XRUnspecifiedBodyRegion
    if kind == "CT":
        return (
            Code("169069000", "SCT", "CT of chest") if chest else codes.LN.CTUnspecifiedBodyRegion
        )
    if kind == "MR":
        return codes.LN.MRIUnspecifiedBodyRegion
    return codes.SCT.ImagingProcedure


def coding_schemes(dataset: Dataset) -> list[Dataset]:
    """CodingSchemeIdentificationSequence items for every private scheme ``dataset`` uses.

    Args:
        dataset: the finished SR (every nested code is looked at).

    Returns:
        One item per private (``99``-prefixed) scheme found, naming it and medtl as the
        responsible organisation.
    """
    from pydicom.dataset import Dataset

    used: set[str] = set()

    def walk(ds: Any) -> None:
        for elem in ds:
            if elem.VR == "SQ":
                for item in elem.value:
                    walk(item)
            elif elem.keyword == "CodingSchemeDesignator":
                used.add(str(elem.value))

    walk(dataset)
    items = []
    for scheme in sorted(s for s in used if s.startswith("99")):
        item = Dataset()
        item.CodingSchemeDesignator = scheme
        item.CodingSchemeName = _SCHEME_NAMES.get(scheme, "medtl private codes")
        item.CodingSchemeResponsibleOrganization = "medtl"
        items.append(item)
    return items
