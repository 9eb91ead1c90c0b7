"""Evaluate a run folder: calibrate on the calibration split, measure on the test split.

Reads ``predictions.csv`` and ``experiment.yaml`` written by
:func:`medtl.transfer.experiment.run_experiment`, and writes ``evaluation.json``:

* the calibrator fitted on the **calibration** split (never on test) and its parameters;
* test metrics with patient-level bootstrap CIs (binary: AUROC, AUPRC and the operating
  points chosen on the calibration split; multi-class: macro one-vs-rest AUROC and accuracy);
* calibration before/after on test (ECE, adaptive ECE, MCE, Brier, NLL) and reliability
  curves;
* subgroups (binary): nodule size and conspicuity bins and recorded attributes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

SIZE_BINS_MM = [(0.0, 8.0), (8.0, 15.0), (15.0, 1000.0)]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def make_calibrator(method: str):
    """A fresh calibrator for ``method`` (``temperature``, ``platt``, ``isotonic``)."""
    from medtl.evaluation.calibration import IsotonicCalibrator, PlattScaler, TemperatureScaler

    return {"temperature": TemperatureScaler, "platt": PlattScaler, "isotonic": IsotonicCalibrator}[
        method
    ]()


def multiclass_auroc(labels: np.ndarray, probs: np.ndarray) -> float:
    """Macro one-vs-rest AUROC over the classes present in ``labels``."""
    from sklearn.metrics import roc_auc_score

    present = np.unique(labels)
    if present.size < 2:
        return float("nan")
    return float(np.mean([roc_auc_score(labels == k, probs[:, k]) for k in present]))


def patient_resamples(patient_ids: np.ndarray, n_resamples: int, seed: int = 0):
    """Yield image indices of ``n_resamples`` patient-level bootstrap samples.

    Patients (not images) are drawn with replacement, so the correlation between images of
    one patient is kept.
    """
    rng = np.random.default_rng(seed)
    patients, inverse = np.unique(patient_ids, return_inverse=True)
    members = [np.flatnonzero(inverse == p) for p in range(patients.size)]
    for _ in range(n_resamples):
        pick = rng.integers(0, patients.size, patients.size)
        yield np.concatenate([members[p] for p in pick])


def multiclass_bootstrap(
    labels: np.ndarray,
    probs: np.ndarray,
    patient_ids: np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Patient-level bootstrap CIs of macro AUROC and accuracy (multi-class)."""
    aucs, accs = [], []
    pred = probs.argmax(1)
    for idx in patient_resamples(patient_ids, n_resamples, seed):
        a = multiclass_auroc(labels[idx], probs[idx])
        if np.isfinite(a):
            aucs.append(a)
        accs.append(float(np.mean(pred[idx] == labels[idx])))
    alpha = (1 - confidence) / 2

    def ci(estimate: float, reps: list[float]) -> dict[str, Any]:
        arr = np.asarray(reps)
        lo, hi = np.quantile(arr, [alpha, 1 - alpha]) if arr.size else (np.nan, np.nan)
        return {
            "estimate": estimate,
            "lower": float(lo),
            "upper": float(hi),
            "confidence": confidence,
            "n_resamples": n_resamples,
            "n_valid": int(arr.size),
            "std_error": float(arr.std(ddof=1)) if arr.size > 1 else float("nan"),
        }

    return {
        "auroc": ci(multiclass_auroc(labels, probs), aucs),
        "accuracy": ci(float(np.mean(pred == labels)), accs),
    }


def _subgroups(
    records: list[Any], y: np.ndarray, p: np.ndarray, threshold: float | None
) -> list[dict[str, Any]]:
    """AUROC of each positive subgroup against all negatives, and sensitivity at threshold."""
    from medtl.evaluation.bootstrap import bootstrap_ci
    from medtl.evaluation.metrics import wilson_interval

    rows: list[dict[str, Any]] = []
    negatives = np.flatnonzero(y == 0)

    def add(kind: str, name: str, pos: np.ndarray) -> None:
        if pos.size == 0 or negatives.size == 0:
            return
        idx = np.concatenate([pos, negatives])
        row: dict[str, Any] = {"group": kind, "name": name, "n_positive": int(pos.size)}
        if pos.size >= 2:
            ci = bootstrap_ci(y[idx], p[idx], "auroc", n_resamples=500, seed=0)
            row["auroc"] = ci.to_dict()
        if threshold is not None:
            hits = int(np.sum(p[pos] >= threshold))
            lo, hi = wilson_interval(hits, int(pos.size))
            row["sensitivity"] = {"estimate": hits / pos.size, "lower": lo, "upper": hi}
        rows.append(row)

    positives = np.flatnonzero(y == 1)
    sizes = np.array([r.nodule_diameter_mm or np.nan for r in records], dtype=float)
    if np.isfinite(sizes[positives]).any():
        for lo, hi in SIZE_BINS_MM:
            label = f"{lo:g}-{hi:g} mm" if hi < 1000 else f">= {lo:g} mm"
            add("nodule size", label, positives[(sizes[positives] >= lo) & (sizes[positives] < hi)])
    cnr = np.array(
        [r.conspicuity_cnr if r.conspicuity_cnr is not None else np.nan for r in records]
    )
    finite = positives[np.isfinite(cnr[positives])]
    if finite.size >= 3:
        edges = np.quantile(cnr[finite], [0, 1 / 3, 2 / 3, 1])
        for k, name in enumerate(("low", "medium", "high")):
            lo, hi = edges[k], edges[k + 1]
            sel = finite[
                (cnr[finite] >= lo) & ((cnr[finite] <= hi) if k == 2 else (cnr[finite] < hi))
            ]
            add("conspicuity", f"{name} (CNR {lo:.2g}-{hi:.2g})", sel)
    locations = {r.location for r in records if r.location}
    for loc in sorted(locations):
        add("location", loc, positives[[records[i].location == loc for i in positives]])
    # Recorded attributes: per-value AUROC on all images of that value.
    keys = sorted(
        {k for r in records for k in r.attributes if k not in ("seed", "virtual_patient")}
    )
    for key in keys:
        values = {str(r.attributes.get(key)) for r in records if key in r.attributes}
        if len(values) < 2 or len(values) > 12:
            continue
        for value in sorted(values):
            idx = np.flatnonzero([str(r.attributes.get(key)) == value for r in records])
            if np.unique(y[idx]).size < 2:
                continue
            ci = bootstrap_ci(y[idx], p[idx], "auroc", n_resamples=500, seed=0)
            rows.append(
                {"group": key, "name": value, "n_images": int(idx.size), "auroc": ci.to_dict()}
            )
    return rows


def evaluate_run(
    run_dir: str | Path,
    *,
    method: str | None = None,
    n_resamples: int = 1000,
    n_bins: int = 15,
    seed: int = 0,
) -> dict[str, Any]:
    """Calibrate and evaluate a finished run; writes ``evaluation.json``.

    Args:
        run_dir: the run folder.
        method: calibration method (default: the experiment's ``calibration`` setting).
        n_resamples: bootstrap replicates for CIs.
        n_bins: bins for ECE/MCE and reliability curves.
        seed: bootstrap seed.

    Returns:
        The evaluation as a JSON-ready dict.
    """
    import yaml

    from medtl.data.manifest import Manifest
    from medtl.evaluation.calibration import calibration_table, reliability_curve
    from medtl.transfer.experiment import read_predictions

    run_dir = Path(run_dir)
    experiment = yaml.safe_load((run_dir / "experiment.yaml").read_text(encoding="utf-8"))
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    method = method or experiment.get("calibration", "temperature")
    preds = read_predictions(run_dir / "predictions.csv")
    if "test" not in preds:
        raise ValueError(f"{run_dir} has no test predictions")
    cal_split = "calibration" if "calibration" in preds else "val"
    manifest = Manifest.load(experiment["data"]["dataset"])
    cal, test = preds[cal_split], preds["test"]
    binary = cal["logits"].ndim == 1
    out: dict[str, Any] = {
        "run": summary["name"],
        "strategy": summary["strategy"],
        "binary": binary,
        "label_names": summary.get("label_names", []),
        "calibrated_on": cal_split,
        "evaluated_on": "test",
        "n_resamples": n_resamples,
    }
    if method == "none":
        calibrator = None
    else:
        if not binary and method != "temperature":
            logger.info("multi-class: using temperature scaling instead of %s", method)
            method = "temperature"
        calibrator = make_calibrator(method).fit(cal["logits"], cal["label"])
    out["calibration_method"] = method
    out["calibrator"] = calibrator.to_dict() if calibrator is not None else None

    raw = _sigmoid(test["logits"]) if binary else _softmax(test["logits"])
    calibrated = calibrator.transform(test["logits"]) if calibrator is not None else raw
    y = test["label"]
    out["calibration"] = {
        "table": calibration_table(raw, calibrated, y, n_bins=n_bins),
        "reliability_before": _curve(reliability_curve(raw, y, n_bins=n_bins)),
        "reliability_after": _curve(reliability_curve(calibrated, y, n_bins=n_bins)),
    }
    if binary:
        from medtl.evaluation.bootstrap import metrics_with_ci
        from medtl.evaluation.operating_points import operating_points

        cal_probs = (
            calibrator.transform(cal["logits"])
            if calibrator is not None
            else _sigmoid(cal["logits"])
        )
        points = operating_points(cal["label"], cal_probs)
        out["operating_points_chosen"] = {k: v.to_dict() for k, v in points.items()}
        out["test"] = metrics_with_ci(
            y,
            calibrated,
            patient_ids=test["patient_id"],
            points=points,
            n_resamples=n_resamples,
            seed=seed,
        )
        records = [manifest.records[i] for i in test["index"]]
        youden = points.get("youden")
        out["subgroups"] = _subgroups(records, y, calibrated, youden.threshold if youden else None)
    else:
        out["test"] = {
            "n_images": int(y.size),
            "n_patients": int(np.unique(test["patient_id"]).size),
            "class_counts": {
                int(k): int(v) for k, v in zip(*np.unique(y, return_counts=True), strict=True)
            },
            **multiclass_bootstrap(y, calibrated, test["patient_id"], n_resamples, seed),
        }
        out["subgroups"] = []
    out["test_scores"] = {
        "index": test["index"].tolist(),
        "label": y.tolist(),
        "patient_id": test["patient_id"].tolist(),
        "prob": calibrated.tolist(),
    }
    (run_dir / "evaluation.json").write_text(json.dumps(out, indent=2, default=_json), "utf-8")
    return out


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


def _json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value))
