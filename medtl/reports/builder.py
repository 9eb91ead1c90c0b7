"""Collect everything a validation report shows into a :class:`ReportData` (``report.json``).

Inputs are a **run folder** (``experiment.yaml``, ``summary.json``, ``predictions.csv``,
``model.safetensors``, phase ``metrics.csv`` files) and its ``evaluation.json`` (computed
with :func:`medtl.evaluation.run.evaluate_run` when missing), the dataset's manifest, and
optionally:

* a scratch run (``against``) or a ready comparison dict from
  :func:`medtl.evaluation.compare.compare_runs` (transfer-vs-scratch verdict);
* learning curves: see :func:`read_learning_curves` for the accepted file format;
* transferability scores: JSON ``{backbone: {"logme": ..., "h_score": ..., ...}}``;
* baselines: the dataset's ``histogram_baseline.json`` (written by ``medtl data build``)
  is picked up automatically; others can be passed as dicts.

Example:
    >>> data = build_report_data("runs/cxr-full", against="runs/cxr-scratch")  # doctest: +SKIP
    >>> write_report_json(data, "runs/cxr-full/report.json")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from medtl.reports.figures import as_figure
from medtl.reports.schema import (
    CI,
    NOT_APPLICABLE_MULTICLASS,
    CalibrationRow,
    CalibrationSection,
    DataSection,
    DataSplit,
    IntendedUse,
    MetricRow,
    MetricsSection,
    OperatingPointRow,
    OperatingPointsSection,
    ReportData,
    SubgroupRow,
    SubgroupSection,
    finite,
)
from medtl.reports.sections import (
    headline_summary,
    model_section,
    transfer_section,
)

logger = logging.getLogger(__name__)

__all__ = [
    "RunFiles",
    "build_report_data",
    "load_run",
    "read_learning_curves",
    "write_report_json",
]


class RunFiles:
    """The parsed files of a run folder (loaded once, shared by report, card and package).

    Attributes:
        run_dir: the run folder.
        experiment: ``experiment.yaml`` content.
        summary: ``summary.json`` content.
        evaluation: ``evaluation.json`` content.
        manifest: the dataset manifest.
        dataset_dir: the dataset folder.
    """

    def __init__(
        self,
        run_dir: Path,
        experiment: dict[str, Any],
        summary: dict[str, Any],
        evaluation: dict[str, Any],
        manifest: Any,
        dataset_dir: Path,
    ) -> None:
        self.run_dir = run_dir
        self.experiment = experiment
        self.summary = summary
        self.evaluation = evaluation
        self.manifest = manifest
        self.dataset_dir = dataset_dir

    @property
    def binary(self) -> bool:
        """True for a one-logit (binary) task."""
        return bool(self.evaluation.get("binary", True))

    def preprocessing_spec(self) -> Any:
        """The run's :class:`~medtl.transfer.presets.PreprocessingSpec`."""
        from medtl.transfer.experiment import ExperimentConfig

        return ExperimentConfig.model_validate(self.experiment).preprocessing()

    def label_names(self) -> list[str]:
        """Class names (manifest, else numbers)."""
        names = list(self.summary.get("label_names") or self.manifest.label_names)
        return names or [str(k) for k in range(max(2, self.manifest.num_classes))]


def load_run(run_dir: str | Path, *, evaluate: bool = True) -> RunFiles:
    """Read a run folder (evaluating it first when ``evaluation.json`` is missing).

    Args:
        run_dir: the run folder written by :func:`medtl.transfer.experiment.run_experiment`.
        evaluate: run :func:`medtl.evaluation.run.evaluate_run` if there is no evaluation.

    Returns:
        The parsed :class:`RunFiles`.

    Raises:
        FileNotFoundError: not a finished run folder (or no evaluation and ``evaluate=False``).
    """
    import yaml

    from medtl.data.manifest import Manifest

    run = Path(run_dir)
    for name in ("experiment.yaml", "summary.json", "predictions.csv"):
        if not (run / name).is_file():
            raise FileNotFoundError(f"{run} is not a finished run folder (no {name})")
    if not (run / "evaluation.json").is_file():
        if not evaluate:
            raise FileNotFoundError(f"{run} has no evaluation.json; run `medtl evaluate` first")
        from medtl.evaluation.run import evaluate_run

        evaluate_run(run)
    experiment = yaml.safe_load((run / "experiment.yaml").read_text(encoding="utf-8"))
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    evaluation = json.loads((run / "evaluation.json").read_text(encoding="utf-8"))
    dataset_dir = Path(experiment["data"]["dataset"])
    manifest = Manifest.load(dataset_dir)
    if dataset_dir.is_file():
        dataset_dir = dataset_dir.parent
    return RunFiles(run, experiment, summary, evaluation, manifest, dataset_dir)


def read_learning_curves(source: str | Path | list[Any]) -> list[Any]:
    """Read learning-curve points (:class:`~medtl.evaluation.LearningCurvePoint`).

    Accepted format (JSON): a list of objects, or ``{"points": [...]}``, each with
    ``strategy`` (``"scratch"`` for the baseline), ``fraction`` in (0, 1], ``seed``,
    ``auroc``, and optionally ``auprc``, ``n_train`` and ``extra`` (``{metric: value}``);
    unknown keys with numeric values go to ``extra``.

    Args:
        source: a JSON file or the already-parsed list.

    Returns:
        The points.

    Raises:
        ValueError: a point misses a required key or has an invalid fraction.
    """
    from medtl.evaluation.transfer_analysis import LearningCurvePoint

    raw: Any = source
    if isinstance(source, (str, Path)):
        raw = json.loads(Path(source).read_text(encoding="utf-8"))
    if isinstance(raw, dict):
        raw = raw.get("points", [])
    points = []
    known = {"strategy", "fraction", "seed", "auroc", "auprc", "n_train", "extra"}
    for k, item in enumerate(raw):
        missing = {"strategy", "fraction", "auroc"} - set(item)
        if missing:
            raise ValueError(f"learning-curve point {k} misses {sorted(missing)}")
        extra = dict(item.get("extra") or {})
        extra.update(
            {
                key: float(v)
                for key, v in item.items()
                if key not in known and isinstance(v, (int, float))
            }
        )
        points.append(
            LearningCurvePoint(
                strategy=str(item["strategy"]),
                fraction=float(item["fraction"]),
                seed=int(item.get("seed", 0)),
                auroc=float(item["auroc"]),
                auprc=None if item.get("auprc") is None else float(item["auprc"]),
                n_train=None if item.get("n_train") is None else int(item["n_train"]),
                extra=extra,
            )
        )
    return points


def _data_section(run: RunFiles) -> DataSection:
    m = run.manifest
    names = run.label_names()
    splits = []
    for split in ("train", "val", "calibration", "test"):
        recs = m.by_split(split)
        if not recs:
            continue
        labels = np.array([r.label for r in recs])
        counts = {
            (names[k] if k < len(names) else str(k)): int(np.sum(labels == k))
            for k in sorted(set(labels.tolist()))
        }
        binary = run.binary
        splits.append(
            DataSplit(
                split=split,
                n_images=len(recs),
                n_patients=len({r.patient_id for r in recs}),
                n_positive=int(np.sum(labels == 1)) if binary else None,
                prevalence=float(np.mean(labels == 1)) if binary else None,
                class_counts=counts,
            )
        )
    sources = sorted({r.source for r in m.records if r.source})
    if m.simulated:
        provenance = (
            "Simulated data: labels are known by construction (the generator "
            f"'{m.generator or 'unknown'}' created or inserted the findings), not read by "
            "radiologists. " + (m.description or "")
        ).strip()
    else:
        provenance = (
            f"Labels as supplied with the dataset (generator: '{m.generator or 'not recorded'}'). "
            "How the reference standard was established (readers, consensus, pathology) is "
            "not recorded in the manifest."
        )
    fraction = run.summary.get("label_fraction", 1.0)
    split_method = (
        "Splits are by patient (no patient appears in two splits), as recorded in the "
        f"manifest. Training used {run.summary.get('train_images', '?')} images of "
        f"{run.summary.get('train_patients', '?')} patients (label fraction {fraction:g})."
    )
    return DataSection(
        dataset=m.name,
        task=m.task or run.experiment.get("task") or "",
        modality=m.modality,
        simulated=m.simulated,
        description=m.description,
        generator=m.generator,
        sources=sources[:10] + ([f"... and {len(sources) - 10} more"] if len(sources) > 10 else []),
        label_names=names,
        label_provenance=provenance,
        splits=splits,
        data_hash=run.summary.get("data_hash"),
        split_method=split_method,
    )


def _intended_use(run: RunFiles, text: str | None) -> IntendedUse:
    task = run.experiment.get("task") or run.manifest.task or "the target task"
    purpose = text or (
        f"Research validation of a transfer-learned classifier for {task} "
        f"({run.manifest.modality}). Not a medical device; not for clinical decisions."
    )
    limitations = []
    if run.manifest.simulated:
        limitations.append(
            "Trained and tested on simulated data: performance on real patients is unknown."
        )
    limitations.append("Single dataset; no external validation site.")
    return IntendedUse(
        purpose=purpose,
        users=[
            "Researchers comparing transfer-learning strategies",
            "Reviewers assessing the validation evidence",
        ],
        out_of_scope=[
            "Diagnosis or triage of real patients",
            "Modalities, devices or populations not represented in the training data",
        ],
        limitations=limitations,
    )


def _metrics_section(run: RunFiles) -> MetricsSection:
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


def _operating_points(run: RunFiles) -> OperatingPointsSection:
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


def _calibration(run: RunFiles) -> CalibrationSection:
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


def _subgroups(run: RunFiles) -> SubgroupSection:
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


def build_report_data(
    run_dir: str | Path | RunFiles,
    *,
    against: str | Path | None = None,
    comparison: dict[str, Any] | None = None,
    learning_curves: str | Path | list[Any] | None = None,
    transferability: str | Path | dict[str, Any] | None = None,
    baselines: list[dict[str, Any]] | None = None,
    intended_use: str | None = None,
    failure_cases: int = 3,
    saliency: bool = True,
    title: str | None = None,
) -> ReportData:
    """Gather the content of a validation report.

    Args:
        run_dir: the (transfer) run folder, or an already loaded :class:`RunFiles`.
        against: a scratch run on the same test set (verdict via ``compare_runs``).
        comparison: a ready comparison dict (takes precedence over ``against``).
        learning_curves: learning-curve points or their JSON file (:func:`read_learning_curves`).
        transferability: ``{backbone: {score: value}}`` or its JSON file.
        baselines: extra baseline results (``{"name", "metric", "value", ...}``).
        intended_use: purpose statement (default: research use on the run's task).
        failure_cases: cases of each kind (false positive / false negative) to show.
        saliency: draw Grad-CAM overlays on failure cases.
        title: document title.

    Returns:
        The :class:`ReportData`.
    """
    from medtl.reports.checklist import fill_checklist
    from medtl.reports.failures import failure_section

    run = run_dir if isinstance(run_dir, RunFiles) else load_run(run_dir)
    if comparison is None and against is not None:
        from medtl.evaluation.compare import compare_runs

        comparison = compare_runs(run.run_dir, against)
    if isinstance(transferability, (str, Path)):
        transferability = json.loads(Path(transferability).read_text(encoding="utf-8"))
    points = read_learning_curves(learning_curves) if learning_curves is not None else None
    failures = failure_section(
        run.run_dir,
        run.evaluation,
        run.summary,
        run.manifest,
        run.dataset_dir,
        run.preprocessing_spec(),
        k=failure_cases,
        saliency=saliency,
    )
    data = ReportData(
        title=title or f"Validation report: {run.summary.get('name', run.run_dir.name)}",
        run=str(run.summary.get("name", run.run_dir.name)),
        generated=datetime.now(UTC),
        task_type="binary" if run.binary else "multiclass",
        summary=headline_summary(),  # placeholder, filled below from the sections
        intended_use=_intended_use(run, intended_use),
        data=_data_section(run),
        model=model_section(run),
        metrics=_metrics_section(run),
        operating_points=_operating_points(run),
        calibration=_calibration(run),
        subgroups=_subgroups(run),
        transfer=transfer_section(run, comparison, points, transferability, baselines),
        failures=failures,
    )
    data.summary = headline_summary(data)
    data.checklist = fill_checklist(data)
    return data


def write_report_json(data: ReportData, path: str | Path) -> Path:
    """Write ``report.json`` (validated against :func:`~medtl.reports.report_schema`).

    Args:
        data: the report content.
        path: destination file.

    Returns:
        The path written.
    """
    path = Path(path)
    path.write_text(data.model_dump_json(indent=1), encoding="utf-8")
    return path
