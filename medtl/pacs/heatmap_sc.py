"""The heat map as a DICOM Secondary Capture for viewers that cannot show an SR.

The model is run again on the case's stored (de-identified) image to get its Grad-CAM
map, which is blended over the windowed image (the peak slice of a volume) and written as
an RGB Secondary Capture (highdicom) into the original study. It is marked as not for
diagnosis three ways: "NOT FOR DIAGNOSIS" burned into the pixels (BurnedInAnnotation YES:
that text only, no identifier), the series description, and the image comments.
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


def build_sc(
    source: Dataset, rgb: np.ndarray, *, model: str, sop_instance_uid: str, series_uid: str
) -> Dataset:
    """The Secondary Capture in the source's study (patient and study copied from it)."""
    import highdicom as hd

    from medtl.pacs.sr import complete_header

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
        patient_orientation=("L", "P"),
    )
    sc.SeriesDescription = f"medtl AI heat map - {WARNING_TEXT}"
    sc.ImageComments = f"{WARNING_TEXT}: AI saliency (Grad-CAM) of {model}"[:10240]
    sc.BurnedInAnnotation = "YES"
    return sc
