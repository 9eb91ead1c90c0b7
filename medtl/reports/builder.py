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
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from medtl.artifacts.base import ArtifactError
from medtl.artifacts.curves import Comparison, CurvePoint, LearningCurves
from medtl.artifacts.evaluation import Evaluation
from medtl.artifacts.preprocessing import PreprocessingSpec
from medtl.artifacts.run import (
    BuiltFrom,
    RunSummary,
    check_run_folder,
    require_same_source,
    run_built_from,
)
from medtl.artifacts.scores import TransferabilityScores
from medtl.data.manifest import Manifest
from medtl.reports.results import (
    calibration_section,
    metrics_section,
    operating_points_section,
    subgroup_section,
)
from medtl.reports.schema import (
    DataSection,
    DataSplit,
    IntendedUse,
    ReportData,
)
from medtl.reports.sections import (
    headline_summary,
    model_section,
    transfer_section,
)

if TYPE_CHECKING:
    from medtl.transfer.experiment import ExperimentConfig

logger = logging.getLogger(__name__)

__all__ = [
    "RunFiles",
    "build_report_data",
    "load_run",
    "read_learning_curves",
    "write_report_json",
]


class RunFiles:
    """The parsed, validated files of a run folder (loaded once, shared by report, card and
    package).

    Attributes:
        run_dir: the run folder.
        config: ``experiment.yaml`` as an :class:`~medtl.transfer.experiment.ExperimentConfig`.
        summary: ``summary.json`` (:class:`~medtl.artifacts.RunSummary`).
        evaluation: ``evaluation.json`` (:class:`~medtl.artifacts.Evaluation`).
        manifest: the dataset manifest.
        dataset_dir: the dataset folder.
        built_from: the run's hashes now (what its report and package record).
    """

    def __init__(
        self,
        run_dir: Path,
        config: ExperimentConfig,
        summary: RunSummary,
        evaluation: Evaluation,
        manifest: Manifest,
        dataset_dir: Path,
        built_from: BuiltFrom | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.config = config
        self.summary = summary
        self.evaluation = evaluation
        self.manifest = manifest
        self.dataset_dir = dataset_dir
        self.built_from = built_from

    @property
    def binary(self) -> bool:
        """True for a one-logit (binary) task."""
        return self.evaluation.binary

    @property
    def name(self) -> str:
        """The run name."""
        return self.summary.name

    @property
    def task(self) -> str | None:
        """The target task (experiment, else manifest)."""
        return self.config.task or self.manifest.task or None

    def preprocessing_spec(self) -> PreprocessingSpec:
        """The run's :class:`~medtl.artifacts.PreprocessingSpec`."""
        return self.config.preprocessing()

    def label_names(self) -> list[str]:
        """Class names (summary, else manifest, else numbers)."""
        names = list(self.summary.label_names or self.manifest.label_names)
        return names or [str(k) for k in range(max(2, self.manifest.num_classes))]


def load_run(run_dir: str | Path, *, evaluate: bool = True) -> RunFiles:
    """Read and validate a run folder (evaluating it first when ``evaluation.json`` is missing).

    Args:
        run_dir: the run folder written by :func:`medtl.transfer.experiment.run_experiment`.
        evaluate: run :func:`medtl.evaluation.run.evaluate_run` if there is no evaluation.

    Returns:
        The parsed :class:`RunFiles`.

    Raises:
        FileNotFoundError: not a finished run folder (or no evaluation and ``evaluate=False``).
        medtl.artifacts.ArtifactError: a file does not match its schema.
        medtl.artifacts.run.ProvenanceMismatch: ``evaluation.json`` was computed from other
            predictions or weights than the folder holds, or the folder mixes two runs.
    """
    import yaml

    from medtl.transfer.experiment import ExperimentConfig

    run = Path(run_dir)
    for name in ("experiment.yaml", RunSummary.FILE, "predictions.csv"):
        if not (run / name).is_file():
            raise FileNotFoundError(f"{run} is not a finished run folder (no {name})")
    if not (run / Evaluation.FILE).is_file():
        if not evaluate:
            raise FileNotFoundError(f"{run} has no evaluation.json; run `medtl evaluate` first")
        from medtl.evaluation.run import evaluate_run

        evaluate_run(run)
    raw = yaml.safe_load((run / "experiment.yaml").read_text(encoding="utf-8"))
    try:
        config = ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        raise ArtifactError(str(run / "experiment.yaml"), str(err)) from err
    summary = RunSummary.read(run / RunSummary.FILE)
    check_run_folder(run, summary)
    evaluation = Evaluation.read(run / Evaluation.FILE)
    built_from = run_built_from(run, summary)
    require_same_source(
        evaluation.built_from,
        built_from,
        str(run / Evaluation.FILE),
        f"evaluate the run again (medtl evaluate {run})",
    )
    dataset_dir = Path(config.data.dataset)
    manifest = Manifest.load(dataset_dir)
    if dataset_dir.is_file():
        dataset_dir = dataset_dir.parent
    return RunFiles(run, config, summary, evaluation, manifest, dataset_dir, built_from)


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
    name = "learning curves"
    if isinstance(source, (str, Path)):
        name = str(source)
        raw = json.loads(Path(source).read_text(encoding="utf-8"))
    if isinstance(raw, list):
        # Extra numeric keys of hand-written points go to ``extra``.
        raw = [_fold_extra(k, item) for k, item in enumerate(raw)]
    try:
        curves = LearningCurves.parse(raw, name)
    except ArtifactError as err:
        raise ValueError(str(err)) from err
    return [
        LearningCurvePoint(
            strategy=p.strategy,
            fraction=p.fraction,
            seed=p.seed,
            auroc=float("nan") if p.auroc is None else p.auroc,
            auprc=p.auprc,
            n_train=p.n_train,
            extra={k: float("nan") if v is None else v for k, v in p.extra.items()},
        )
        for p in curves.points
    ]


def _fold_extra(k: int, item: Any) -> Any:
    if not isinstance(item, dict):
        return item
    missing = {"strategy", "fraction", "auroc"} - set(item)
    if missing:
        raise ValueError(f"learning-curve point {k} misses {sorted(missing)}")
    known = set(CurvePoint.model_fields)
    extra = dict(item.get("extra") or {})
    extra.update(
        {
            key: float(v)
            for key, v in item.items()
            if key not in known and isinstance(v, (int, float))
        }
    )
    return {**{key: v for key, v in item.items() if key in known}, "extra": extra}


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
    summary = run.summary
    split_method = (
        "Splits are by patient (no patient appears in two splits), as recorded in the "
        f"manifest. Training used {summary.train_images} images of "
        f"{summary.train_patients} patients (label fraction {summary.label_fraction:g})."
    )
    return DataSection(
        dataset=m.name,
        task=m.task or run.config.task or "",
        modality=m.modality,
        simulated=m.simulated,
        description=m.description,
        generator=m.generator,
        sources=sources[:10] + ([f"... and {len(sources) - 10} more"] if len(sources) > 10 else []),
        label_names=names,
        label_provenance=provenance,
        splits=splits,
        data_hash=run.summary.data_hash,
        split_method=split_method,
    )


def _intended_use(run: RunFiles, text: str | None) -> IntendedUse:
    task = run.task or "the target task"
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


def build_report_data(
    run_dir: str | Path | RunFiles,
    *,
    against: str | Path | None = None,
    comparison: dict[str, Any] | str | Path | None = None,
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
        comparison: a ready comparison (dict, or a ``verdict.json`` file such as the
            learning curves' seed-aware verdict); takes precedence over ``against``, whose
            scores then only draw the paired ROC curves.
        learning_curves: learning-curve points or their JSON file (:func:`read_learning_curves`).
        transferability: ``medtl score --out`` output (:class:`~medtl.artifacts.scores.
            TransferabilityScores`, or ``{backbone: {score: value}}``), or its JSON file.
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
    scratch_scores = None
    if isinstance(comparison, (str, Path)):
        comparison = Comparison.read(comparison).to_json_dict()
    if comparison is None and against is not None:
        from medtl.evaluation.compare import compare_runs

        comparison = compare_runs(run.run_dir, against)
    if against is not None and (Path(against) / Evaluation.FILE).is_file():
        # the scratch run's scores draw both ROC curves
        scratch_scores = Evaluation.read(Path(against) / Evaluation.FILE).test_scores
    scores = None
    if isinstance(transferability, (str, Path)):
        scores = TransferabilityScores.read(transferability)
    elif transferability is not None:
        scores = TransferabilityScores.parse(transferability, "transferability scores")
    points = read_learning_curves(learning_curves) if learning_curves is not None else None
    failures = failure_section(run, k=failure_cases, saliency=saliency)
    data = ReportData(
        title=title or f"Validation report: {run.name}",
        run=run.name,
        generated=datetime.now(UTC),
        task_type="binary" if run.binary else "multiclass",
        summary=headline_summary(),  # placeholder, filled below from the sections
        intended_use=_intended_use(run, intended_use),
        data=_data_section(run),
        model=model_section(run),
        metrics=metrics_section(run),
        operating_points=operating_points_section(run),
        calibration=calibration_section(run),
        subgroups=subgroup_section(run),
        transfer=transfer_section(
            run, comparison, points, scores, baselines, scratch_scores=scratch_scores
        ),
        failures=failures,
        built_from=run.built_from,
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
