"""Evaluate a run folder: calibrate on the calibration split, measure on the test split.

Reads ``predictions.csv``, ``summary.json`` and ``experiment.yaml`` written by
:func:`medtl.transfer.experiment.run_experiment`, and writes ``evaluation.json`` (an
:class:`~medtl.artifacts.Evaluation`):

* the calibrator fitted on the **calibration** split (never on test) and its parameters;
* test metrics with patient-level stratified bootstrap CIs (binary: AUROC, AUPRC and the
  operating points chosen on the calibration split; multi-class: macro one-vs-rest AUROC and
  accuracy);
* calibration before/after on test (ECE, adaptive ECE, MCE, Brier, NLL), each with a
  patient-level bootstrap CI, the paired CI of the change and a finding sentence
  (:mod:`medtl.evaluation.calibration_evidence`), and reliability curves; the calibration
  split's size; a calibration split too small for the method
  (:data:`~medtl.evaluation.calibration_evidence.CALIBRATION_MINIMUMS`) is not fitted: the
  run falls back to no calibration and says so (log warning and ``calibration_warning``);
* subgroups (binary): nodule size and conspicuity bins and recorded attributes, with the
  same patient-level bootstrap (same ``n_resamples`` and ``seed``) as the headline metrics.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from medtl.artifacts.evaluation import Evaluation
from medtl.artifacts.predictions import SplitPredictions, read_predictions
from medtl.artifacts.run import RunSummary, run_built_from

logger = logging.getLogger(__name__)

__all__ = ["SIZE_BINS_MM", "evaluate_run", "multiclass_bootstrap", "subgroup_results"]

SIZE_BINS_MM = [(0.0, 8.0), (8.0, 15.0), (15.0, 1000.0)]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def multiclass_bootstrap(
    labels: np.ndarray,
    probs: np.ndarray,
    patient_ids: np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Patient-level stratified bootstrap CIs of macro AUROC and accuracy (multi-class).

    Returns:
        ``{"auroc": ..., "accuracy": ...}``, each a :meth:`BootstrapCI.to_dict`.
    """
    from medtl.evaluation.bootstrap import (
        macro_auroc_replicates,
        resample_indices,
        summarise_replicates,
    )
    from medtl.evaluation.metrics import macro_auroc

    pred = probs.argmax(1)
    # vectorised over replicates; the same replicates as the accuracy loop (same seed)
    aucs = macro_auroc_replicates(labels, probs, patient_ids, n_resamples, seed)
    accs = [
        float(np.mean(pred[idx] == labels[idx]))
        for idx in resample_indices(
            labels, patient_ids=patient_ids, n_resamples=n_resamples, seed=seed
        )
    ]
    kw = {"confidence": confidence, "n_resamples": n_resamples}
    return {
        "auroc": summarise_replicates(
            macro_auroc(labels, probs), aucs, name="macro AUROC", **kw
        ).to_dict(),
        "accuracy": summarise_replicates(
            float(np.mean(pred == labels)), accs, name="accuracy", **kw
        ).to_dict(),
    }


def _size_groups(records: list[Any], positives: np.ndarray) -> list[tuple[str, str, np.ndarray]]:
    sizes = np.array([r.nodule_diameter_mm or np.nan for r in records], dtype=float)
    if not np.isfinite(sizes[positives]).any():
        return []
    out = []
    for lo, hi in SIZE_BINS_MM:
        label = f"{lo:g}-{hi:g} mm" if hi < 1000 else f">= {lo:g} mm"
        sel = positives[(sizes[positives] >= lo) & (sizes[positives] < hi)]
        out.append(("nodule size", label, sel))
    return out


def _conspicuity_groups(
    records: list[Any], positives: np.ndarray
) -> list[tuple[str, str, np.ndarray]]:
    cnr = np.array(
        [r.conspicuity_cnr if r.conspicuity_cnr is not None else np.nan for r in records]
    )
    finite = positives[np.isfinite(cnr[positives])]
    if finite.size < 3:
        return []
    edges = np.quantile(cnr[finite], [0, 1 / 3, 2 / 3, 1])
    out = []
    for k, name in enumerate(("low", "medium", "high")):
        lo, hi = edges[k], edges[k + 1]
        upper = (cnr[finite] <= hi) if k == 2 else (cnr[finite] < hi)
        out.append(
            ("conspicuity", f"{name} (CNR {lo:.2g}-{hi:.2g})", finite[(cnr[finite] >= lo) & upper])
        )
    return out


def _attribute_groups(records: list[Any], y: np.ndarray) -> list[tuple[str, str, np.ndarray]]:
    """(attribute, value, image indices) of recorded attributes with 2-12 values, where the
    value's images hold both classes."""
    keys = sorted(
        {k for r in records for k in r.attributes if k not in ("seed", "virtual_patient")}
    )
    out = []
    for key in keys:
        values = {str(r.attributes.get(key)) for r in records if key in r.attributes}
        if len(values) < 2 or len(values) > 12:
            continue
        for value in sorted(values):
            idx = np.flatnonzero([str(r.attributes.get(key)) == value for r in records])
            if np.unique(y[idx]).size == 2:
                out.append((key, value, idx))
    return out


def subgroup_results(
    records: list[Any],
    y: np.ndarray,
    p: np.ndarray,
    patient_ids: np.ndarray,
    threshold: float | None,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Subgroup rows: AUROC of each positive subgroup against all negatives (and sensitivity
    at ``threshold``), then per-value AUROC of recorded attributes.

    Every AUROC interval is the patient-level stratified bootstrap of
    :func:`medtl.evaluation.bootstrap.bootstrap_ci` with the caller's ``n_resamples`` and
    ``seed``: images of one patient are resampled together, as for the headline metrics.
    Sensitivity uses the Wilson interval of the subgroup's positives.

    Args:
        records: manifest records of the test images (same order as ``y``).
        y: 0/1 labels.
        p: calibrated probabilities.
        patient_ids: patient per image.
        threshold: the Youden threshold (``None``: no sensitivity column).
        n_resamples: bootstrap replicates.
        seed: bootstrap seed.

    Returns:
        JSON-ready rows (see :class:`medtl.artifacts.SubgroupResult`).
    """
    from medtl.evaluation.bootstrap import bootstrap_ci
    from medtl.evaluation.metrics import wilson_interval

    pid = np.asarray(patient_ids)

    def auroc_ci(idx: np.ndarray) -> dict[str, Any]:
        ci = bootstrap_ci(
            y[idx], p[idx], "auroc", patient_ids=pid[idx], n_resamples=n_resamples, seed=seed
        )
        return ci.to_dict()

    rows: list[dict[str, Any]] = []
    negatives = np.flatnonzero(y == 0)
    positives = np.flatnonzero(y == 1)
    locations = sorted({r.location for r in records if r.location})
    groups = _size_groups(records, positives) + _conspicuity_groups(records, positives)
    groups += [
        ("location", loc, positives[[records[i].location == loc for i in positives]])
        for loc in locations
    ]
    for kind, name, pos in groups:
        if pos.size == 0 or negatives.size == 0:
            continue
        idx = np.concatenate([pos, negatives])
        row: dict[str, Any] = {"group": kind, "name": name, "n_positive": int(pos.size)}
        row["n_patients"] = int(np.unique(pid[idx]).size)
        if pos.size >= 2:
            row["auroc"] = auroc_ci(idx)
        if threshold is not None:
            hits = int(np.sum(p[pos] >= threshold))
            lo, hi = wilson_interval(hits, int(pos.size))
            row["sensitivity"] = {"estimate": hits / pos.size, "lower": lo, "upper": hi}
        rows.append(row)
    # Recorded attributes: per-value AUROC on all images of that value.
    for key, value, idx in _attribute_groups(records, y):
        rows.append(
            {
                "group": key,
                "name": value,
                "n_images": int(idx.size),
                "n_patients": int(np.unique(pid[idx]).size),
                "auroc": auroc_ci(idx),
            }
        )
    return rows


def _calibrate(method: str, binary: bool, cal: SplitPredictions) -> tuple[str, Any, str | None]:
    """The calibrator fitted on the calibration split, or ``None`` with the reason.

    Returns:
        ``(method applied, calibrator or None, warning or None)``: a split too small for the
        method (:data:`~medtl.evaluation.calibration_evidence.CALIBRATION_MINIMUMS`) gives
        ``("none", None, why)`` rather than a calibrator fitted on noise.
    """
    from medtl.evaluation.calibration import make_calibrator
    from medtl.evaluation.calibration_evidence import calibration_split_problem

    if method == "none":
        return method, None, None
    if not binary and method != "temperature":
        logger.info("multi-class: using temperature scaling instead of %s", method)
        method = "temperature"
    n_classes = 2 if binary else int(cal.logits.shape[1])
    problem = calibration_split_problem(method, cal.label, cal.patient_id, n_classes)
    if problem is not None:
        warning = f"Not calibrated: {problem}; probabilities are the model's own (uncalibrated)."
        logger.warning("%s", warning)
        return "none", None, warning
    return method, make_calibrator(method).fit(cal.logits, cal.label), None


def _split_size(name: str, split: SplitPredictions) -> dict[str, Any]:
    counts = zip(*np.unique(split.label, return_counts=True), strict=True)
    return {
        "split": name,
        "n_images": int(split.label.size),
        "n_patients": int(np.unique(split.patient_id).size),
        "class_counts": {int(k): int(v) for k, v in counts},
    }


def _binary_results(
    calibrator: Any,
    cal: SplitPredictions,
    test: SplitPredictions,
    calibrated: np.ndarray,
    records: list[Any],
    n_resamples: int,
    seed: int,
) -> dict[str, Any]:
    from medtl.evaluation.bootstrap import metrics_with_ci
    from medtl.evaluation.operating_points import operating_points

    cal_probs = calibrator.transform(cal.logits) if calibrator is not None else _sigmoid(cal.logits)
    points = operating_points(cal.label, cal_probs)
    youden = points.get("youden")
    return {
        "operating_points_chosen": {k: v.to_dict() for k, v in points.items()},
        "test": metrics_with_ci(
            test.label,
            calibrated,
            patient_ids=test.patient_id,
            points=points,
            n_resamples=n_resamples,
            seed=seed,
        ),
        "subgroups": subgroup_results(
            records,
            test.label,
            calibrated,
            test.patient_id,
            youden.threshold if youden else None,
            n_resamples=n_resamples,
            seed=seed,
        ),
    }


def evaluate_run(
    run_dir: str | Path,
    *,
    method: str | None = None,
    n_resamples: int = 1000,
    n_bins: int = 15,
    seed: int = 0,
) -> Evaluation:
    """Calibrate and evaluate a finished run; writes ``evaluation.json``.

    Args:
        run_dir: the run folder.
        method: calibration method (default: the experiment's ``calibration`` setting).
        n_resamples: bootstrap replicates for every CI (subgroups included).
        n_bins: bins for ECE/MCE and reliability curves.
        seed: bootstrap seed.

    Returns:
        The evaluation as written (validated; undefined values ``None``).
    """
    import yaml

    from medtl.data.manifest import Manifest
    from medtl.evaluation.calibration import reliability_curve
    from medtl.evaluation.calibration_evidence import calibration_table_ci

    run_dir = Path(run_dir)
    experiment = yaml.safe_load((run_dir / "experiment.yaml").read_text(encoding="utf-8"))
    summary = RunSummary.read(run_dir / RunSummary.FILE)
    preds = read_predictions(run_dir / "predictions.csv")
    if "test" not in preds:
        raise ValueError(f"{run_dir} has no test predictions")
    cal_split = "calibration" if "calibration" in preds else "val"
    cal, test = preds[cal_split], preds["test"]
    binary = cal.logits.ndim == 1
    requested = method or experiment.get("calibration", "temperature")
    method, calibrator, warning = _calibrate(requested, binary, cal)
    raw = _sigmoid(test.logits) if binary else _softmax(test.logits)
    calibrated = calibrator.transform(test.logits) if calibrator is not None else raw
    y = test.label
    out: dict[str, Any] = {
        "run": summary.name,
        "strategy": summary.strategy,
        "binary": binary,
        "label_names": summary.label_names,
        "calibrated_on": cal_split,
        "evaluated_on": "test",
        "n_resamples": n_resamples,
        "seed": seed,
        "calibration_method": method,
        "calibration_requested": requested,
        "calibration_split": _split_size(cal_split, cal),
        "calibration_warning": warning,
        "calibrator": calibrator.to_dict() if calibrator is not None else None,
        "calibration": {
            "table": calibration_table_ci(
                raw,
                calibrated,
                y,
                test.patient_id,
                n_bins=n_bins,
                n_resamples=n_resamples,
                seed=seed,
                calibrated=calibrator is not None,
            ),
            "reliability_before": _curve(reliability_curve(raw, y, n_bins=n_bins)),
            "reliability_after": _curve(reliability_curve(calibrated, y, n_bins=n_bins)),
        },
    }
    if binary:
        manifest = Manifest.load(experiment["data"]["dataset"])
        records = [manifest.records[i] for i in test.index]
        out.update(_binary_results(calibrator, cal, test, calibrated, records, n_resamples, seed))
    else:
        counts = zip(*np.unique(y, return_counts=True), strict=True)
        out["test"] = {
            "n_images": int(y.size),
            "n_patients": int(np.unique(test.patient_id).size),
            "class_counts": {int(k): int(v) for k, v in counts},
            **multiclass_bootstrap(y, calibrated, test.patient_id, n_resamples, seed),
        }
    # what it was computed from: a report or package checks it against the run as it is then
    out["built_from"] = run_built_from(run_dir, summary).model_dump(mode="json")
    out["test_scores"] = {
        "index": test.index.tolist(),
        "label": y.tolist(),
        "patient_id": [str(x) for x in test.patient_id],
        "prob": calibrated.tolist(),
    }
    evaluation = Evaluation.parse(_plain(out), "evaluation being written")
    evaluation.write(run_dir / Evaluation.FILE)
    return evaluation


def _curve(curve: Any) -> dict[str, list[float | None]]:
    """A reliability curve as JSON lists (empty bins as ``None``)."""

    def clean(values: np.ndarray) -> list[float | None]:
        return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, float)]

    return {
        "mean_predicted": clean(curve.mean_predicted),
        "fraction_positive": clean(curve.fraction_positive),
        "counts": [int(c) for c in curve.counts],
        "edges": clean(curve.edges),
    }


def _plain(value: Any) -> Any:
    """Numpy scalars and arrays as Python values (pydantic validates plain JSON types)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
