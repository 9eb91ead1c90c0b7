"""Report sections read from ``evaluation.json``: metrics, thresholds, calibration, subgroups."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from medtl.artifacts.predictions import read_predictions
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
    from medtl.artifacts.evaluation import Evaluation
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

    ev, test = run.evaluation, run.evaluation.test
    names = run.label_names()
    ci_method = (
        f"Patient-level stratified bootstrap ({ev.n_resamples} resamples), 95% percentile "
        f"intervals; evaluated on the {ev.evaluated_on} split."
    )
    scores = ev.test_scores
    if not run.binary:
        counts = {
            (names[k] if k < len(names) else str(k)): v
            for k, v in (test.class_counts or {}).items()
        }
        return MetricsSection(
            binary=False,
            n_images=test.n_images,
            n_patients=test.n_patients,
            rows=[
                MetricRow(name="Macro AUROC (one-vs-rest)", value=CI.from_any(test.auroc)),
                MetricRow(name="Accuracy", value=CI.from_any(test.accuracy) or CI()),
            ],
            class_counts=counts,
            ci_method=ci_method,
            note="ROC and precision-recall curves: " + NOT_APPLICABLE_MULTICLASS + ".",
        )
    y = np.asarray(scores.label)
    p = np.asarray(scores.prob, dtype=float)
    auroc, auprc = CI.from_any(test.auroc), CI.from_any(test.auprc)
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
        n_images=test.n_images,
        n_patients=test.n_patients,
        n_positive=test.n_positive if test.n_positive is not None else int(y.sum()),
        rows=[
            MetricRow(name="AUROC", value=auroc or CI()),
            MetricRow(name="AUPRC (average precision)", value=auprc or CI()),
        ],
        class_counts={names[k]: int(np.sum(y == k)) for k in (0, 1) if k < len(names)},
        ci_method=ci_method,
        figures=figures,
    )


def _operating_point_objects(ev: Evaluation) -> list[Any]:
    """Test-split OperatingPoint objects (for the ROC markers)."""
    from medtl.evaluation.metrics import ThresholdMetrics
    from medtl.evaluation.operating_points import OperatingPoint

    out = []
    for d in ev.test.operating_points.values():
        m = d.metrics
        metrics = None if m is None else ThresholdMetrics(m.threshold, m.tp, m.fp, m.tn, m.fn)
        out.append(OperatingPoint(d.name, d.goal, d.threshold, metrics))
    return out


def operating_points_section(run: RunFiles) -> OperatingPointsSection:
    """Thresholds chosen on the calibration split and their test performance."""
    if not run.binary:
        return OperatingPointsSection(applicable=False, note=NOT_APPLICABLE_MULTICLASS)
    ev = run.evaluation
    rows = []
    for name, d in ev.test.operating_points.items():
        ci = d.ci or {}
        m = d.metrics
        chosen = ev.operating_points_chosen.get(name)
        cm = chosen.metrics if chosen is not None else None
        rows.append(
            OperatingPointRow(
                name=name,
                goal=d.goal,
                status=d.status,
                threshold=finite(d.threshold),
                chosen_on=ev.calibrated_on,
                chosen_sensitivity=finite(cm.sensitivity) if cm else None,
                chosen_specificity=finite(cm.specificity) if cm else None,
                sensitivity=CI.from_any(ci.get("sensitivity")),
                specificity=CI.from_any(ci.get("specificity")),
                ppv=CI.from_any(ci.get("ppv")),
                npv=CI.from_any(ci.get("npv")),
                confusion={"tp": m.tp, "fp": m.fp, "tn": m.tn, "fn": m.fn} if m else None,
            )
        )
    note = (
        f"Thresholds were chosen on the {ev.calibrated_on} split on "
        "calibrated probabilities and applied unchanged to the test split; a goal that no "
        "threshold met on the calibration split is shown as 'not reachable'."
    )
    return OperatingPointsSection(applicable=True, note=note, rows=rows)


CALIBRATION_CI_NOTE = (
    "Calibration measures are computed on the test split with 95% patient-level stratified "
    "bootstrap intervals ({n} replicates: patients drawn with replacement within label "
    "strata, all their images kept). The change after - before is computed on the same "
    "patient resamples (paired); calibration is said to have changed a measure only when "
    "that interval excludes 0. The calibrator is fitted on the calibration split only, and "
    "not at all when that split is below the method's minimum size ({minimums})."
)


def _minimums_text() -> str:
    from medtl.evaluation.calibration_evidence import CALIBRATION_MINIMUMS

    return "; ".join(
        f"{method}: {m.images} images of {m.patients} patients, {m.per_class} of every class"
        for method, m in CALIBRATION_MINIMUMS.items()
    )


def calibration_section(run: RunFiles) -> CalibrationSection:
    """Calibration table and the reliability diagram before/after."""
    from medtl.evaluation.plots import plot_reliability

    ev = run.evaluation
    figures = []
    preds = read_predictions(run.run_dir / "predictions.csv").get("test")
    scores = ev.test_scores
    if preds is not None and list(preds.index) == list(scores.index):
        logits = preds.logits
        if run.binary:
            raw = 1.0 / (1.0 + np.exp(-logits))
        else:
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            raw = e / e.sum(axis=1, keepdims=True)
        figures.append(
            as_figure(
                "reliability",
                "Reliability diagram on the test split before and after calibration "
                f"({ev.calibration_method}, fitted on the {ev.calibrated_on} "
                "split); bottom: cases per bin.",
                plot_reliability(
                    np.asarray(scores.label), raw, np.asarray(scores.prob, dtype=float)
                ),
            )
        )
    split = ev.calibration_split
    rows = [
        CalibrationRow(
            measure=row.measure,
            before=row.before,
            after=row.after,
            change=row.change,
            before_ci=CI.from_any(row.before_ci),
            after_ci=CI.from_any(row.after_ci),
            change_ci=CI.from_any(row.change_ci),
            finding=row.finding,
        )
        for row in ev.calibration.table
    ]
    return CalibrationSection(
        method=ev.calibration_method,
        calibrated_on=ev.calibrated_on,
        evaluated_on=ev.evaluated_on,
        requested=ev.calibration_requested,
        warning=ev.calibration_warning,
        split_images=split.n_images if split else None,
        split_patients=split.n_patients if split else None,
        calibrator=ev.calibrator,
        table=rows,
        findings=[r.finding for r in rows if r.finding and not r.measure.startswith("MCE")],
        method_note=(
            CALIBRATION_CI_NOTE.format(n=ev.n_resamples, minimums=_minimums_text())
            if rows and rows[0].before_ci
            else ""
        ),
        figures=figures,
    )


def subgroup_section(run: RunFiles) -> SubgroupSection:
    """Subgroup rows of the evaluation."""
    if not run.binary:
        return SubgroupSection(applicable=False, note=NOT_APPLICABLE_MULTICLASS)
    rows = [
        SubgroupRow(
            group=r.group,
            name=r.name,
            n_positive=r.n_positive,
            n_images=r.n_images,
            auroc=CI.from_any(r.auroc),
            sensitivity=CI.from_any(r.sensitivity),
        )
        for r in run.evaluation.subgroups
    ]
    note = (
        "Nodule size, conspicuity and location rows: AUROC of the positives in the subgroup "
        "against all test negatives (patient-level bootstrap CI, as for the headline metrics), "
        "and sensitivity at the Youden threshold (Wilson CI). "
        "Attribute rows (e.g. sex, site, device): AUROC on all images with that value."
    )
    if not rows:
        note = "No subgroup information is recorded in the manifest for the test split."
    return SubgroupSection(applicable=True, note=note, rows=rows)
