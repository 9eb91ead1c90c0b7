"""Report sections read from ``evaluation.json``: metrics, thresholds, calibration, subgroups."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from medtl.reports.figures import as_figure
from medtl.reports.schema import (
    CI,
    NOT_APPLICABLE_MULTICLASS,
    CalibrationRow,
    CalibrationSection,
    MetricRow,
    MetricsSection,
    OperatingPointRow,
    OperatingPointsSection,
    SubgroupRow,
    SubgroupSection,
    finite,
)

if TYPE_CHECKING:
    from medtl.reports.builder import RunFiles

__all__ = [
    "calibration_section",
    "metrics_section",
    "operating_points_section",
    "subgroup_section",
]


def metrics_section(run: RunFiles) -> MetricsSection:
    """Discrimination on the test split (binary: with ROC and PR figures)."""
    from medtl.evaluation.plots import plot_pr, plot_roc

    ev, test = run.evaluation, run.evaluation["test"]
    names = run.label_names()
    ci_method = (
        f"Patient-level bootstrap ({ev.get('n_resamples', '?')} resamples), 95% percentile "
        f"intervals; evaluated on the {ev.get('evaluated_on', 'test')} split."
    )
    scores = ev["test_scores"]
    if not run.binary:
        counts = {
            (names[int(k)] if int(k) < len(names) else str(k)): int(v)
            for k, v in test.get("class_counts", {}).items()
        }
        return MetricsSection(
            binary=False,
            n_images=int(test["n_images"]),
            n_patients=int(test["n_patients"]),
            rows=[
                MetricRow(name="Macro AUROC (one-vs-rest)", value=CI.from_any(test["auroc"])),
                MetricRow(name="Accuracy", value=CI.from_any(test["accuracy"])),
            ],
            class_counts=counts,
            ci_method=ci_method,
            note="ROC and precision-recall curves: " + NOT_APPLICABLE_MULTICLASS + ".",
        )
    y = np.asarray(scores["label"])
    p = np.asarray(scores["prob"], dtype=float)
    auroc, auprc = CI.from_any(test["auroc"]), CI.from_any(test["auprc"])
    figures = []
    if np.unique(y).size == 2:
        points = _operating_point_objects(ev)
        figures.append(
            as_figure(
                "roc",
                "ROC curve on the test split; markers: operating points chosen on the "
                "calibration split.",
                plot_roc(
                    y,
                    {"model": p},
                    ci={"model": (auroc.lower, auroc.upper)} if auroc else None,
                    operating_points={"model": points},
                ),
            )
        )
        figures.append(
            as_figure(
                "pr",
                "Precision-recall curve on the test split (dashed: prevalence).",
                plot_pr(
                    y, {"model": p}, ci={"model": (auprc.lower, auprc.upper)} if auprc else None
                ),
            )
        )
    return MetricsSection(
        binary=True,
        n_images=int(test["n_images"]),
        n_patients=int(test["n_patients"]),
        n_positive=int(test.get("n_positive", int(y.sum()))),
        rows=[
            MetricRow(name="AUROC", value=auroc or CI()),
            MetricRow(name="AUPRC (average precision)", value=auprc or CI()),
        ],
        class_counts={names[k]: int(np.sum(y == k)) for k in (0, 1) if k < len(names)},
        ci_method=ci_method,
        figures=figures,
    )


def _operating_point_objects(ev: dict[str, Any]) -> list[Any]:
    """Test-split OperatingPoint objects (for the ROC markers)."""
    from medtl.evaluation.metrics import ThresholdMetrics
    from medtl.evaluation.operating_points import OperatingPoint

    out = []
    for d in (ev.get("test", {}).get("operating_points") or {}).values():
        m = d.get("metrics")
        metrics = None
        if m:
            metrics = ThresholdMetrics(m["threshold"], m["tp"], m["fp"], m["tn"], m["fn"])
        out.append(OperatingPoint(d["name"], d["goal"], d.get("threshold"), metrics))
    return out


def operating_points_section(run: RunFiles) -> OperatingPointsSection:
    """Thresholds chosen on the calibration split and their test performance."""
    if not run.binary:
        return OperatingPointsSection(applicable=False, note=NOT_APPLICABLE_MULTICLASS)
    ev = run.evaluation
    chosen = ev.get("operating_points_chosen") or {}
    rows = []
    for name, d in (ev["test"].get("operating_points") or {}).items():
        ci = d.get("ci") or {}
        m = d.get("metrics") or {}
        cm = chosen.get(name, {}).get("metrics") or {}
        rows.append(
            OperatingPointRow(
                name=name,
                goal=d["goal"],
                status=d["status"],
                threshold=finite(d.get("threshold")),
                chosen_on=ev.get("calibrated_on", "calibration"),
                chosen_sensitivity=finite(cm.get("sensitivity")),
                chosen_specificity=finite(cm.get("specificity")),
                sensitivity=CI.from_any(ci.get("sensitivity")),
                specificity=CI.from_any(ci.get("specificity")),
                ppv=CI.from_any(ci.get("ppv")),
                npv=CI.from_any(ci.get("npv")),
                confusion={k: int(m[k]) for k in ("tp", "fp", "tn", "fn")} if m else None,
            )
        )
    note = (
        f"Thresholds were chosen on the {ev.get('calibrated_on', 'calibration')} split on "
        "calibrated probabilities and applied unchanged to the test split; a goal that no "
        "threshold met on the calibration split is shown as 'not reachable'."
    )
    return OperatingPointsSection(applicable=True, note=note, rows=rows)


def calibration_section(run: RunFiles) -> CalibrationSection:
    """Calibration table and the reliability diagram before/after."""
    from medtl.evaluation.plots import plot_reliability
    from medtl.transfer.experiment import read_predictions

    ev = run.evaluation
    cal = ev["calibration"]
    figures = []
    preds = read_predictions(run.run_dir / "predictions.csv").get("test")
    scores = ev["test_scores"]
    if preds is not None and list(preds["index"]) == list(scores["index"]):
        logits = preds["logits"]
        if run.binary:
            raw = 1.0 / (1.0 + np.exp(-logits))
        else:
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            raw = e / e.sum(axis=1, keepdims=True)
        figures.append(
            as_figure(
                "reliability",
                "Reliability diagram on the test split before and after calibration "
                f"({ev.get('calibration_method')}, fitted on the {ev.get('calibrated_on')} "
                "split); bottom: cases per bin.",
                plot_reliability(
                    np.asarray(scores["label"]), raw, np.asarray(scores["prob"], dtype=float)
                ),
            )
        )
    return CalibrationSection(
        method=str(ev.get("calibration_method")),
        calibrated_on=str(ev.get("calibrated_on")),
        evaluated_on=str(ev.get("evaluated_on", "test")),
        calibrator=ev.get("calibrator"),
        table=[CalibrationRow(**row) for row in cal["table"]],
        figures=figures,
    )


def subgroup_section(run: RunFiles) -> SubgroupSection:
    """Subgroup rows of the evaluation."""
    if not run.binary:
        return SubgroupSection(applicable=False, note=NOT_APPLICABLE_MULTICLASS)
    rows = [
        SubgroupRow(
            group=r["group"],
            name=r["name"],
            n_positive=r.get("n_positive"),
            n_images=r.get("n_images"),
            auroc=CI.from_any(r.get("auroc")),
            sensitivity=CI.from_any(r.get("sensitivity")),
        )
        for r in run.evaluation.get("subgroups") or []
    ]
    note = (
        "Nodule size, conspicuity and location rows: AUROC of the positives in the subgroup "
        "against all test negatives, and sensitivity at the Youden threshold (Wilson CI). "
        "Attribute rows (e.g. sex, site, device): AUROC on all images with that value."
    )
    if not rows:
        note = "No subgroup information is recorded in the manifest for the test split."
    return SubgroupSection(applicable=True, note=note, rows=rows)
