"""Header and geometry checks of the domain guard (no model needed).

Each check adds one entry to a :class:`~medtl.inference.result.DomainCheck`:

* **modality**: a known modality the model was not trained on is refused; a file that does
  not record its modality (PNG/JPEG: ``OT``) gives a warning, unless the model was trained
  on such files declared as one expected modality (it is then taken as that modality);
* **body part**: a BodyPartExamined other than expected gives a warning (it is often missing
  or wrong in practice);
* **dimensionality and geometry**: a volume sent to a 2D model, or an image to a 3D model, is
  refused; an unusual aspect ratio or pixel spacing (when the file states one) warns.

:func:`default_expectations` gives the expected modalities and geometry of a preprocessing
modality family.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medtl.inference.result import DomainCheck

__all__ = ["check_body_part", "check_geometry", "check_modality", "default_expectations"]

# Modality codes per preprocessing family (medtl.transfer.presets.ModalityFamily).
_FAMILY_MODALITIES: dict[str, list[str]] = {
    "cxr": ["CR", "DX"],
    "ct": ["CT"],
    "mri": ["MR"],
    "generic": [],
}
# Plausible in-plane pixel spacing (mm) and aspect ratio (rows / columns) per family.
_FAMILY_GEOMETRY: dict[str, dict[str, tuple[float, float] | None]] = {
    "cxr": {"spacing": (0.05, 1.0), "aspect": (0.5, 2.0)},
    "ct": {"spacing": (0.1, 6.0), "aspect": (0.5, 2.0)},
    "mri": {"spacing": (0.1, 6.0), "aspect": (0.33, 3.0)},
    "generic": {"spacing": None, "aspect": None},
}
_MODALITY_WORDS = {
    "CR": "computed radiography (X-ray)",
    "DX": "digital radiography (X-ray)",
    "CT": "CT",
    "MR": "MRI",
    "US": "ultrasound",
    "MG": "mammography",
    "PT": "PET",
    "NM": "nuclear medicine",
    "XA": "angiography",
    "RF": "fluoroscopy",
    "OT": "other/unknown",
}
_UNKNOWN_MODALITIES = {"", "OT"}


def _words(modality: str) -> str:
    return _MODALITY_WORDS.get(modality, modality)


def default_expectations(family: str) -> dict[str, Any]:
    """Expected modalities and geometry of a preprocessing modality family.

    Args:
        family: ``"cxr"``, ``"ct"``, ``"mri"`` or ``"generic"``.

    Returns:
        ``{"modalities": [...], "spacing_range_mm": (lo, hi) | None,
        "aspect_ratio_range": (lo, hi) | None}``.
    """
    geometry = _FAMILY_GEOMETRY.get(family, _FAMILY_GEOMETRY["generic"])
    return {
        "modalities": list(_FAMILY_MODALITIES.get(family, [])),
        "spacing_range_mm": geometry["spacing"],
        "aspect_ratio_range": geometry["aspect"],
    }


def _spacing_known(scan: Any) -> bool:
    """False when the loader assumed a spacing (raster files, DICOM without spacing)."""
    if scan.meta.get("spacing_source") == "default":
        return False
    return not any("no pixel spacing" in w for w in scan.warnings)


def check_modality(
    scan: Any, modalities: Sequence[str], check: DomainCheck, assumed: str | None = None
) -> None:
    """Refuse a known modality the model was not trained on; warn when none is recorded.

    Args:
        scan: the loaded scan.
        modalities: expected modality codes (empty: any).
        check: the verdict to add to.
        assumed: the modality a file that records none is taken as (the training images
            were such files declared as it); ``None``: such a file gets a caution.
    """
    expected = [m.upper() for m in modalities]
    modality = str(scan.modality or "").upper()
    taken = assumed is not None and (not expected or assumed.upper() in expected)
    if not expected or (modality in _UNKNOWN_MODALITIES and taken):
        check.add("modality", "ok")
    elif modality in _UNKNOWN_MODALITIES:
        check.add(
            "modality",
            "warn",
            "The file does not record the imaging modality; this model expects "
            f"{' or '.join(_words(m) for m in expected)} images. Check the image type.",
        )
    elif modality not in expected:
        check.add(
            "modality",
            "refuse",
            f"This is a {_words(modality)} image; the model was trained on "
            f"{' or '.join(_words(m) for m in expected)} images only.",
        )
    else:
        check.add("modality", "ok")


def check_body_part(scan: Any, body_parts: Sequence[str], check: DomainCheck) -> None:
    """Warn when BodyPartExamined names another body part than expected."""
    expected = [b.upper() for b in body_parts]
    part = str(scan.meta.get("body_part") or "").strip().upper()
    if not expected or not part:
        check.add("body_part", "ok" if part or not expected else "not checked")
        return
    if part in expected:
        check.add("body_part", "ok")
    else:
        check.add(
            "body_part",
            "warn",
            f"The image header says the body part is {part.lower()}; the model was "
            f"trained on {' or '.join(b.lower() for b in expected)} images.",
        )


def check_geometry(
    scan: Any,
    spatial_dims: int,
    spacing_range_mm: tuple[float, float] | None,
    aspect_ratio_range: tuple[float, float] | None,
    check: DomainCheck,
) -> None:
    """Refuse the wrong dimensionality; warn on an unusual aspect ratio or pixel size."""
    shape = tuple(int(s) for s in scan.shape)
    ndim = len(shape)
    if spatial_dims == 2 and ndim == 3 and shape[0] == 1:
        shape, ndim = shape[1:], 2  # a single-slice volume is an image
    if ndim != spatial_dims:
        what = "a 3D volume" if ndim == 3 else "a 2D image"
        wanted = "2D images" if spatial_dims == 2 else "3D volumes"
        check.add(
            "dimensionality",
            "refuse",
            f"This is {what}; the model reads {wanted} only.",
        )
        return
    check.add("dimensionality", "ok")
    problems = []
    rows, cols = shape[-2], shape[-1]
    if aspect_ratio_range is not None and cols > 0:
        lo, hi = aspect_ratio_range
        ratio = rows / cols
        if not lo <= ratio <= hi:
            problems.append(
                f"The image is unusually {'tall' if ratio > hi else 'wide'} "
                f"({rows} x {cols} pixels) for this model."
            )
    if spacing_range_mm is not None and _spacing_known(scan):
        lo, hi = spacing_range_mm
        in_plane = [float(s) for s in scan.spacing[-2:]]
        if any(not (lo <= s <= hi) for s in in_plane):
            problems.append(
                f"The pixel size ({' x '.join(f'{s:.3g}' for s in in_plane)} mm) is "
                f"outside the usual {lo:g}-{hi:g} mm for this model."
            )
    if problems:
        check.add("geometry", "warn", " ".join(problems))
    else:
        check.add("geometry", "ok")
