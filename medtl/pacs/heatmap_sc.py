"""The heat map as a DICOM Secondary Capture for viewers that cannot show an SR.

The model is run again on the case's stored (de-identified) image to get its Grad-CAM
map, which is blended over the windowed image (the peak slice of a volume) and written as
an RGB Secondary Capture (highdicom) into the original study. It is marked as not for
diagnosis three ways: "NOT FOR DIAGNOSIS" burned into the pixels (BurnedInAnnotation YES:
that text only, no identifier), the series description, and the image comments.

The image passes dicom3tools' ``dciodvfy`` with no error (docs/dicom_conformance.md): the
patient and study are the source's (highdicom copies the Type 2 patient/study attributes;
StudyDescription, IssuerOfPatientID, PatientAge/Size/Weight are copied here), and so is
the geometry the pixels keep (:func:`sc_geometry`): PatientOrientation from the source's
PatientOrientation (projection radiographs, e.g. ``L\\F`` for a PA chest) or from its
ImageOrientationPatient (the slice of a volume), BodyPartExamined, Laterality (Type 2C:
the source's, empty when unknown and the body part is not known to be unpaired) and
PixelSpacing (when the image has the source's rows and columns). The source instance is
referenced in SourceImageSequence. A header without geometry (a DIMSE-only PACS answers a
C-FIND with few attributes) gives empty Type 2 values, never invented ones.

highdicom warns about one-word person names *with the name*; the build runs inside
:func:`medtl.io.redact.redacted_warnings`, so the warning reaches the log redacted and
never stderr, and an error of highdicom is raised with its quoted values redacted.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.dataset import Dataset

    from medtl.review import ReviewStore
    from medtl.review.schemas import PredictionInfo

logger = logging.getLogger(__name__)

SERIES_NUMBER = 991
WARNING_TEXT = "NOT FOR DIAGNOSIS"


def overlay_rgb(grey: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] heat map (colour map ``inferno``) over a uint8 image; uint8 RGB."""
    from matplotlib import colormaps

    colours = colormaps["inferno"](np.clip(heat, 0.0, 1.0))[..., :3]
    base = np.repeat(grey[..., None].astype(np.float32) / 255.0, 3, axis=-1)
    weight = alpha * np.clip(heat, 0.0, 1.0)[..., None]
    return np.clip(np.rint((base * (1 - weight) + colours * weight) * 255), 0, 255).astype(np.uint8)


def _burn_warning(rgb: np.ndarray) -> np.ndarray:
    from PIL import Image, ImageDraw

    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    box = draw.textbbox((2, 2), WARNING_TEXT)
    draw.rectangle(box, fill=(0, 0, 0))
    draw.text((2, 2), WARNING_TEXT, fill=(255, 255, 0))
    return np.asarray(image)


def heatmap_image(store: ReviewStore, case_id: str, pred: PredictionInfo) -> np.ndarray:
    """The RGB overlay of the case's image and the model's heat map (peak slice in 3D)."""
    from medtl.io.display import apply_window, default_window
    from medtl.pacs.ingest import get_predictor

    image = next(i for i in store.get_images(case_id) if i.kind == "scan")
    scan = store.load_image(image)
    ref = (pred.details or {}).get("model_ref") or f"{pred.model_name}@{pred.model_version}"
    result = get_predictor(ref).predict(scan)
    if result.heatmap is None:
        raise ValueError("the model gives no heat map for this image")
    grey = apply_window(scan.array, default_window(scan))
    heat = np.asarray(result.heatmap, dtype=np.float32).reshape(grey.shape)
    if grey.ndim == 3:
        peak = result.heatmap_info.peak_index if result.heatmap_info else None
        k = int(peak[0]) if peak else int(np.argmax(heat.reshape(len(heat), -1).max(axis=1)))
        grey, heat = grey[k], heat[k]
    return _burn_warning(overlay_rgb(grey, heat))


#: BodyPartExamined values of unpaired regions: their Laterality (Type 2C) is left out.
UNPAIRED_BODY_PARTS = frozenset(
    {
        "ABDOMEN",
        "ABDOMENPELVIS",
        "BRAIN",
        "CHEST",
        "CHESTABDOMEN",
        "CHESTABDPELVIS",
        "CSPINE",
        "HEAD",
        "HEADNECK",
        "HEART",
        "LSPINE",
        "NECK",
        "PELVIS",
        "SKULL",
        "SPINE",
        "TSPINE",
        "WHOLEBODY",
    }
)
#: Study and patient attributes copied beyond those highdicom copies (all Type 3).
COPIED_KEYWORDS = (
    "StudyDescription",
    "IssuerOfPatientID",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
)
_LETTERS = (("L", "R"), ("P", "A"), ("H", "F"))  # +x, -x; +y, -y; +z, -z (LPS)


def direction_letters(vector: np.ndarray, tolerance: float = 0.1) -> str:
    """The PatientOrientation letters of a direction in LPS patient coordinates.

    Args:
        vector: a direction cosine (3,).
        tolerance: components below this magnitude are ignored (an oblique direction gets
            several letters, the principal one first, PS3.3 C.7.6.1.1.1).

    Returns:
        E.g. ``"L"`` for ``(1, 0, 0)``, ``"F"`` for ``(0, 0, -1)``, ``"LP"`` for an oblique.
    """
    order = np.argsort(-np.abs(vector))
    return "".join(
        _LETTERS[i][0 if vector[i] > 0 else 1] for i in order if abs(vector[i]) >= tolerance
    )


def _orientation(source: Dataset) -> list[str] | None:
    orientation = source.get("PatientOrientation") or []
    values = [orientation] if isinstance(orientation, str) else list(orientation)
    if len(values) == 2 and all(values):
        return [str(v) for v in values]
    cosines = source.get("ImageOrientationPatient")
    try:
        iop = np.asarray([float(v) for v in cosines or []], dtype=float)
    except (TypeError, ValueError):
        return None
    if iop.shape != (6,):
        return None
    # PatientOrientation is the direction of the rows (increasing column) then of the
    # columns (increasing row): IOP's row then column cosines
    letters = [direction_letters(iop[:3]), direction_letters(iop[3:])]
    return letters if all(letters) else None


def _laterality(source: Dataset) -> str | None:
    """The SC's Laterality: R/L from the source, else empty (unknown) unless the body part
    is known to be unpaired (then None: left out)."""
    for keyword in ("Laterality", "ImageLaterality"):
        value = str(source.get(keyword, "") or "").strip().upper()
        if value in ("R", "L"):
            return value
    body_part = str(source.get("BodyPartExamined", "") or "").strip().upper()
    return None if body_part in UNPAIRED_BODY_PARTS else ""


def sc_geometry(source: Dataset, rows: int, columns: int) -> dict[str, object]:
    """The geometry attributes the heat-map image takes from its source header.

    Args:
        source: the source instance's header.
        rows: the heat-map image's rows.
        columns: its columns.

    Returns:
        Keyword -> value: PatientOrientation (empty when unknown), Laterality (when not
        left out), BodyPartExamined and PixelSpacing (when known).
    """
    out: dict[str, object] = {"PatientOrientation": _orientation(source) or ""}
    laterality = _laterality(source)
    if laterality is not None:
        out["Laterality"] = laterality
    body_part = str(source.get("BodyPartExamined", "") or "").strip()
    if body_part:
        out["BodyPartExamined"] = body_part
    spacing = source.get("PixelSpacing")
    same_grid = (source.get("Rows"), source.get("Columns")) == (rows, columns)
    if spacing and len(spacing) == 2 and same_grid:
        out["PixelSpacing"] = list(spacing)
    return out


def _source_reference(source: Dataset) -> list[Dataset]:
    from pydicom.dataset import Dataset

    sop_class, sop_instance = source.get("SOPClassUID"), source.get("SOPInstanceUID")
    if not (sop_class and sop_instance):
        return []
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_instance
    return [item]


def build_sc(
    source: Dataset, rgb: np.ndarray, *, model: str, sop_instance_uid: str, series_uid: str
) -> Dataset:
    """The Secondary Capture in the source's study (patient, study and geometry copied).

    Args:
        source: the header of the source instance (with the original patient and study).
        rgb: the overlay, uint8 ``(rows, columns, 3)``.
        model: the model's name and version, for the image comments.
        sop_instance_uid: the image's UID (deterministic per result).
        series_uid: its series UID.

    Returns:
        The ``highdicom.sc.SCImage`` dataset.

    Raises:
        ValueError: highdicom refused the header or the pixels (quoted values redacted).
    """
    import highdicom as hd
    from pydicom.sequence import Sequence

    from medtl.io.redact import redact_values, redacted_warnings
    from medtl.pacs.logs import quiet_client_logs
    from medtl.review.sr_sources import complete_header

    quiet_client_logs()
    geometry = sc_geometry(source, int(rgb.shape[0]), int(rgb.shape[1]))
    with redacted_warnings(logger, "building the heat-map image"):
        try:
            sc = hd.sc.SCImage.from_ref_dataset(
                ref_dataset=complete_header(source),
                pixel_array=rgb,
                photometric_interpretation="RGB",
                bits_allocated=8,
                coordinate_system="PATIENT",
                series_instance_uid=series_uid,
                series_number=SERIES_NUMBER,
                sop_instance_uid=sop_instance_uid,
                instance_number=1,
                manufacturer="medtl",
                # a placeholder highdicom's enumeration accepts; the real value, which may
                # be oblique ("LP") or unknown (empty), is set from the source below
                patient_orientation=("L", "F"),
            )
        except (ValueError, TypeError, AttributeError) as err:
            raise ValueError(
                f"the heat-map image could not be built: {redact_values(str(err))}"
            ) from None
    for keyword, value in geometry.items():
        setattr(sc, keyword, value)
    for keyword in COPIED_KEYWORDS:
        if source.get(keyword) not in (None, ""):
            setattr(sc, keyword, source[keyword].value)
    reference = _source_reference(source)
    if reference:
        sc.SourceImageSequence = Sequence(reference)
    sc.SeriesDescription = f"medtl AI heat map - {WARNING_TEXT}"
    sc.ImageComments = f"{WARNING_TEXT}: AI saliency (Grad-CAM) of {model}"[:10240]
    sc.DerivationDescription = "AI saliency map (Grad-CAM) blended over the source image"
    sc.BurnedInAnnotation = "YES"
    return sc
