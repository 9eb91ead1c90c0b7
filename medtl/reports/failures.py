"""Failure cases: the worst false positives and false negatives, with Grad-CAM overlays.

Cases are ranked by calibrated probability at the Youden operating point chosen on the
calibration split: false positives from the highest probability down, false negatives from
the lowest up. When a kind has no error at all, the nearest miss of that class (the negative
with the highest probability, the positive with the lowest) is shown instead and labelled
as such, so a reader always sees where the model is least sure.

Images are loaded with :func:`medtl.io.load_scan` from the manifest paths, preprocessed
exactly like in training (the run's :class:`~medtl.artifacts.PreprocessingSpec`), and
the Grad-CAM map (:func:`medtl.inference.saliency.saliency_map`) is drawn with transparency
over the windowed image. Volumes show their central slice.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medtl.artifacts.base import ArtifactError
from medtl.artifacts.run import RunSummary
from medtl.io.errors import ScanError
from medtl.reports.figures import as_figure, overlay_png
from medtl.reports.schema import NOT_APPLICABLE_MULTICLASS, FailureCase, FailureSection

if TYPE_CHECKING:
    from medtl.reports.builder import RunFiles

logger = logging.getLogger(__name__)

#: Longest side of an overlay image, in pixels (keeps the HTML small).
DISPLAY_SIZE = 256

_SALIENCY_NOTE = {
    "drawn": " (Grad-CAM overlay)",
    "flat": " (Grad-CAM map flat: no overlay)",
    "off": "",
}


def select_failures(
    labels: np.ndarray, probs: np.ndarray, threshold: float, k: int = 3
) -> list[tuple[str, int]]:
    """Pick the cases to show: ``(kind, position in the test arrays)``.

    Args:
        labels: 0/1 test labels.
        probs: calibrated test probabilities.
        threshold: the Youden threshold (positive when ``prob >= threshold``).
        k: at most this many cases of each kind.

    Returns:
        False positives (highest probability first), then false negatives (lowest first);
        a ``nearest negative`` / ``nearest positive`` stands in for a kind without errors.
    """
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=float)
    out: list[tuple[str, int]] = []
    neg = np.flatnonzero(labels == 0)
    pos = np.flatnonzero(labels == 1)
    neg = neg[np.argsort(-probs[neg], kind="stable")]
    pos = pos[np.argsort(probs[pos], kind="stable")]
    fp = [int(i) for i in neg if probs[i] >= threshold][:k]
    fn = [int(i) for i in pos if probs[i] < threshold][:k]
    out += [("false positive", i) for i in fp] or (
        [("nearest negative", int(neg[0]))] if neg.size else []
    )
    out += [("false negative", i) for i in fn] or (
        [("nearest positive", int(pos[0]))] if pos.size else []
    )
    return out


def load_run_model(run_dir: Path, summary: RunSummary) -> Any:
    """Rebuild the run's backbone from ``summary.json`` and load ``model.safetensors``."""
    from safetensors.torch import load_file

    from medtl.models import build_backbone

    if summary.backbone is None:
        raise ArtifactError(str(run_dir / RunSummary.FILE), "no backbone config", "model_config")
    model = build_backbone(summary.backbone)
    model.load_state_dict(load_file(str(run_dir / "model.safetensors")), strict=True)
    return model.eval()


def _display_image(array: np.ndarray, scan: Any) -> np.ndarray:
    """Window a 2D slice for display (uint8)."""
    from medtl.io.display import apply_window, default_window

    return apply_window(array, default_window(scan))


def _display_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    scale = min(1.0, DISPLAY_SIZE / max(shape))
    return tuple(max(1, round(s * scale)) for s in shape)


def _resize_grey(grey: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if grey.shape == shape:
        return grey
    from PIL import Image

    return np.asarray(Image.fromarray(grey).resize((shape[1], shape[0]), Image.BILINEAR))


def render_case(
    model: Any,
    preprocessing: Any,
    image_path: Path,
    title: str,
    *,
    saliency: bool = True,
) -> tuple[bytes, str]:
    """Load, preprocess, explain and draw one case.

    Args:
        model: the backbone (eval mode).
        preprocessing: the deterministic MONAI transform of the run.
        image_path: the scan file.
        title: figure title.
        saliency: draw the Grad-CAM overlay (else the image alone).

    Returns:
        ``(png, saliency status)``: ``"drawn"``, ``"flat"`` (Grad-CAM is zero everywhere: no
        region raises the explained score, so nothing is overlaid) or ``"off"``.
    """
    from medtl.io import load_scan

    scan = load_scan(image_path)
    array = np.asarray(scan.array, dtype=np.float32)
    x = preprocessing(array[None])
    volume = array.ndim == 3
    centre = array.shape[0] // 2 if volume else None
    plane = array[centre] if volume else array
    shape = _display_shape(plane.shape)
    grey = _resize_grey(_display_image(plane, scan), shape)
    heat = None
    status = "off"
    if saliency:
        # medtl.inference is part of medtl: a failing import is a bug and must surface.
        from medtl.inference.saliency import saliency_map

        out_shape = (array.shape[0], *shape) if volume else shape
        heat = saliency_map(model, x, out_shape=out_shape)
        if volume:
            heat = heat[centre]
        status = "drawn" if float(heat.max(initial=0.0)) > 0 else "flat"
        if status == "flat":
            heat = None
    return overlay_png(grey, heat, title), status


def _failure_case(
    run: RunFiles,
    model: Any,
    transform: Any,
    kind: str,
    index: int,
    label: str,
    prob: float,
    threshold: float,
    *,
    figure_id: str,
    saliency: bool,
) -> tuple[FailureCase, str]:
    """One failure case with its overlay (when the model and the image are there)."""
    record = run.manifest.records[index]
    image = None
    status = "off"
    path = run.dataset_dir / record.image
    if model is not None and path.exists():
        title = f"{kind}: p = {prob:.3f} (truth: {label})"
        try:
            png, status = render_case(model, transform, path, title, saliency=saliency)
        except ScanError as err:  # an unreadable image must not sink the whole report
            logger.warning("could not render failure case %d: %s", index, err)
        else:
            image = as_figure(
                figure_id,
                f"{kind.capitalize()}, patient {record.patient_id}: calibrated probability "
                f"{prob:.3f} at threshold {threshold:.3f}" + _SALIENCY_NOTE[status],
                png,
            )
    case = FailureCase(
        kind=kind,  # type: ignore[arg-type]
        index=index,
        patient=record.patient_id,
        label=label,
        probability=prob,
        threshold=threshold,
        image=image,
        saliency=status == "drawn",
    )
    return case, status


def failure_section(run: RunFiles, *, k: int = 3, saliency: bool = True) -> FailureSection:
    """The failure-cases section of the report.

    Args:
        run: the loaded run (model, evaluation, manifest, preprocessing).
        k: cases per kind.
        saliency: draw Grad-CAM overlays.

    Returns:
        The :class:`FailureSection` (images embedded).
    """
    from medtl.data.preprocessing import build_preprocessing

    evaluation, run_dir = run.evaluation, run.run_dir
    if not evaluation.binary:
        return FailureSection(applicable=False, note=NOT_APPLICABLE_MULTICLASS)
    youden = evaluation.operating_points_chosen.get("youden")
    threshold = youden.threshold if youden is not None else None
    if threshold is None:
        return FailureSection(
            applicable=False, note="No Youden operating point was chosen on the calibration split."
        )
    scores = evaluation.test_scores
    labels = np.asarray(scores.label)
    probs = np.asarray(scores.prob, dtype=float)
    picks = select_failures(labels, probs, float(threshold), k=k)
    names = run.label_names()
    transform = build_preprocessing(run.preprocessing_spec())
    has_model = (run_dir / "model.safetensors").is_file()
    model = load_run_model(run_dir, run.summary) if has_model else None
    cases: list[FailureCase] = []
    statuses: set[str] = set()
    for kind, pos in picks:
        label = names[int(labels[pos])] if int(labels[pos]) < len(names) else str(labels[pos])
        case, status = _failure_case(
            run,
            model,
            transform,
            kind,
            int(scores.index[pos]),
            label,
            float(probs[pos]),
            float(threshold),
            figure_id=f"failure-{len(cases)}",
            saliency=saliency,
        )
        cases.append(case)
        statuses.add(status)
    n_fp = int(np.sum((labels == 0) & (probs >= threshold)))
    n_fn = int(np.sum((labels == 1) & (probs < threshold)))
    note = (
        f"{n_fp} false positive(s) and {n_fn} false negative(s) on {labels.size} test images at "
        f"the Youden threshold {float(threshold):.3f} (chosen on the "
        f"{evaluation.calibrated_on} split)."
    )
    if not n_fp or not n_fn:
        note += " Where a kind has no error, the nearest miss of that class is shown instead."
    if "flat" in statuses:
        note += (
            " Some Grad-CAM maps are flat (zero everywhere: no region raises the score); "
            "those images are shown without overlay."
        )
    return FailureSection(
        applicable=True,
        note=note,
        threshold=float(threshold),
        n_false_positive=n_fp,
        n_false_negative=n_fn,
        saliency_method=(
            "Grad-CAM (MONAI) on the last feature map" if statuses & {"drawn", "flat"} else ""
        ),
        cases=cases,
    )
