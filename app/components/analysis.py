"""Glue between the upload page and medtl: cached predictors, the upload size check and
saving an AI result as a pseudonymous case. No layout here, no logic that medtl lacks."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

if TYPE_CHECKING:  # pragma: no cover
    from medtl.inference import PredictionResult, Predictor
    from medtl.io import Scan
    from medtl.review import ReviewStore, UserInfo

logger = logging.getLogger(__name__)


@dataclass
class SavedResult:
    """An analysed upload: the result, where its model lives and the case it was saved to."""

    file_id: str
    package_dir: Path
    result: PredictionResult
    case_id: str | None = None
    prediction_id: int | None = None
    already_uploaded: bool = False


def _size(n: float) -> str:
    return f"{n / 1048576:.1f} MB" if n >= 104858 else f"{n / 1024:.0f} kB"


def too_large(size: int, limit: int) -> str | None:
    """The message for an upload above ``limit`` bytes, or ``None`` when it fits."""
    if size <= limit:
        return None
    return (
        f"The file is {_size(size)}; uploads are limited to {_size(limit)}. Upload a single "
        "series (zip) or ask your administrator to raise the limit."
    )


@st.cache_resource(show_spinner=False, max_entries=4)
def _predictor(path: str, stamp: float) -> Predictor:
    from medtl.inference import Predictor

    del stamp  # cache key only: a re-registered package is reloaded
    return Predictor.from_package(path)


def get_predictor(package_dir: Path) -> Predictor:
    """The predictor of a package folder (loaded once per process and package version)."""
    card = Path(package_dir) / "model.json"
    stamp = card.stat().st_mtime if card.is_file() else 0.0
    return _predictor(str(package_dir), stamp)


def heat_on_scan(result: PredictionResult, scan: Scan) -> np.ndarray | None:
    """The heat map as a numpy array with the scan's shape, or ``None``."""
    if result.heatmap is None:
        return None
    heat = np.asarray(result.heatmap, dtype=np.float32)
    if heat.shape != scan.shape and heat.size == int(np.prod(scan.shape)):
        heat = heat.reshape(scan.shape)
    return heat if heat.shape == scan.shape else None


def source_key(scan: Scan) -> str | None:
    """A pseudonymous key of the uploaded series (de-identified UIDs), or ``None``."""
    study, series = scan.meta.get("study_uid"), scan.meta.get("series_uid")
    if study and series:
        return f"{study}|{series}"
    return None


def save_result(store: ReviewStore, user: UserInfo, scan: Scan, saved: SavedResult) -> SavedResult:
    """Create the case (or find the existing one) and record the AI result.

    Args:
        store: the review store.
        user: the uploading clinician or admin.
        scan: the de-identified scan.
        saved: the analysis; updated with the case and prediction IDs.

    Returns:
        ``saved``.
    """
    from medtl.review import CaseExistsError, record_result

    result = saved.result
    try:
        case = store.create_case(user, scan, source_key=source_key(scan))
        case_id = case.case_id
        image_id = store.get_images(case_id)[0].id
    except CaseExistsError as err:
        case_id, image_id = err.case_id, None
        saved.already_uploaded = True
    pred = record_result(store, user, case_id, result, image_id=image_id)
    saved.case_id, saved.prediction_id = case_id, pred.id
    return saved
