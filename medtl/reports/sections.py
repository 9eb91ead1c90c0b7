"""Report sections built from a run: model card, transfer vs scratch, the summary box."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medtl.artifacts.base import ArtifactError
from medtl.artifacts.baseline import HistogramBaseline
from medtl.artifacts.curves import Comparison
from medtl.reports.figures import as_figure, plot_training_curves, read_metrics_csv
from medtl.reports.schema import (
    Headline,
    LearningCurveRow,
    ModelSection,
    Phase,
    ReportData,
    Summary,
    TransferSection,
    finite,
)

if TYPE_CHECKING:
    from medtl.artifacts.evaluation import TestScores
    from medtl.artifacts.run import PhaseSummary
    from medtl.artifacts.scores import TransferabilityScores
    from medtl.reports.builder import RunFiles

logger = logging.getLogger(__name__)

#: Training settings shown in the model card (from ``experiment.yaml``'s ``training``).
TRAINING_KEYS = (
    "max_epochs",
    "batch_size",
    "optimizer",
    "lr",
    "weight_decay",
    "schedule",
    "warmup_epochs",
    "monitor",
    "patience",
    "seed",
    "device",
    "amp",
)
STRATEGY_KEYS = (
    "head_epochs",
    "finetune_epochs",
    "head_lr",
    "finetune_lr_factor",
    "unfreeze_blocks",
    "freeze_bn",
    "discriminative_decay",
)


def _phase_metrics(run: RunFiles, phase: PhaseSummary) -> list[dict[str, float]]:
    """``metrics.csv`` of a phase, found relative to the run folder (runs may be moved)."""
    recorded = Path(phase.run_dir) if phase.run_dir else None
    candidates = []
    if recorded is not None:
        candidates.append(recorded / "metrics.csv")
        candidates.append(run.run_dir / recorded.parent.name / recorded.name / "metrics.csv")
        candidates += list(run.run_dir.rglob(f"{recorded.name}/metrics.csv"))
    for path in candidates:
        if path.is_file():
            return read_metrics_csv(path)
    return []


def _training_details(run: RunFiles) -> dict[str, Any]:
    """The training and strategy settings shown in the model card."""
    training = run.config.training.model_dump(mode="json")
    strategy = run.config.strategy.model_dump(mode="json")
    details: dict[str, Any] = {k: training[k] for k in TRAINING_KEYS if k in training}
    details.update({f"strategy.{k}": strategy[k] for k in STRATEGY_KEYS if k in strategy})
    details["label_fraction"] = run.summary.label_fraction
    details["calibration"] = run.config.calibration
    return details


def model_section(run: RunFiles) -> ModelSection:
    """The model card section: architecture, domains, strategy, training, versions, hashes.

    Args:
        run: the loaded run.

    Returns:
        The :class:`ModelSection` (with the training-curve figure when metrics were logged).
    """
    from medtl.artifacts.card import software_versions

    config, summary = run.config, run.summary
    arch = summary.backbone
    phases, curves = [], []
    for p in summary.phases:
        name = Path(p.run_dir).name if p.run_dir else summary.strategy
        phases.append(
            Phase(
                name=name,
                epochs=p.epochs,
                best_epoch=p.best_epoch,
                best_metric=p.best_metric,
                monitor=p.monitor,
                stopped_early=p.stopped_early,
            )
        )
        curves.append((name, _phase_metrics(run, p)))
    figures = []
    monitor = config.training.monitor
    if any(rows for _, rows in curves):
        figures.append(
            as_figure(
                "training-curves",
                "Training and validation loss per epoch, and the monitored validation metric; "
                "dotted lines separate strategy phases.",
                plot_training_curves(curves, monitor if monitor != "val_loss" else None),
            )
        )
    weights = config.model.weights
    source = summary.source
    env = summary.environment
    seconds = {
        "data": summary.data_seconds,
        "train": summary.train_seconds,
        "total": summary.total_seconds,
    }
    return ModelSection(
        name=summary.name,
        backbone=arch.name if arch is not None else config.model.backbone,
        architecture=arch.to_dict() if arch is not None else {},
        total_parameters=summary.total_parameters,
        trainable_parameters=summary.trainable_parameters,
        source_domain=source.domain if source else _legacy_source(config, arch, "domain"),
        source_task=source.task if source else _legacy_source(config, arch, "task"),
        source_stated_by=source.stated_by if source else None,
        target_domain=config.target_domain,
        target_task=run.task,
        strategy=summary.strategy,
        # The file name only: full paths may reveal user folders.
        pretrained_weights=Path(weights).name if weights else None,
        starting_weights=(
            summary.starting_weights.model_dump(mode="json") if summary.starting_weights else None
        ),
        preprocessing=(
            arch.preprocessing.model_dump(mode="json") if arch and arch.preprocessing else {}
        ),
        phases=phases,
        training=_training_details(run),
        timings_seconds={k: v for k, v in seconds.items() if finite(v) is not None},
        hardware=_hardware(config, env),
        precision=(
            f"{env.precision} (setting '{config.training.amp}')"
            if env
            else f"mixed precision setting '{config.training.amp}'"
        ),
        # the versions the run was trained with (a run without them: the report's own)
        versions=env.versions if env else software_versions(),
        git_commit=(env.git_commit + (" (uncommitted changes)" if env.git_dirty else ""))
        if env and env.git_commit
        else None,
        config_hash=summary.config_hash,
        data_hash=summary.data_hash,
        config_warnings=list(summary.config_warnings),
        figures=figures,
    )


def _legacy_source(config: Any, arch: Any, what: str) -> str | None:
    """Source text of a run that recorded no source description (before provenance)."""
    stated = getattr(config, f"source_{what}")
    return stated or (getattr(arch, f"source_{what}") if arch else None)


def _hardware(config: Any, env: Any) -> str:
    """The device, threads and CPU kernels a run used (its setting for older runs)."""
    if env is None:
        return (
            f"device setting '{config.training.device}' (the device actually used is not "
            "recorded in the run)"
        )
    device = f"{env.device} ({env.device_name})" if env.device_name else env.device
    parts = [device, f"{env.threads} CPU thread(s)"]
    if env.cpu_capability:
        parts.append(f"CPU capability {env.cpu_capability}")
    if env.world_size > 1:
        parts.append(f"{env.world_size} processes (DDP)")
    return ", ".join(parts)


def transfer_section(
    run: RunFiles,
    comparison: Comparison | dict[str, Any] | None,
    points: list[Any] | None,
    transferability: TransferabilityScores | None,
    baselines: list[dict[str, Any]] | None,
    *,
    scratch_scores: TestScores | None = None,
) -> TransferSection:
    """Transfer vs scratch: verdict, learning curves, transferability scores, baselines.

    Args:
        run: the loaded run.
        comparison: ``compare_runs`` output or a :class:`~medtl.artifacts.Comparison`
            (or ``None``).
        points: learning-curve points (or ``None``).
        transferability: backbone scores (or ``None``).
        baselines: extra baseline dicts (the dataset's histogram baseline is added).
        scratch_scores: the scratch run's :class:`~medtl.artifacts.evaluation.TestScores`
            (binary: both ROC curves are drawn on the common test images).

    Returns:
        The :class:`TransferSection`.
    """
    notes: list[str] = []
    figures = []
    section: dict[str, Any] = {}
    if comparison:
        verdict = (
            comparison
            if isinstance(comparison, Comparison)
            else Comparison.parse(comparison, "transfer comparison")
        )
        # Through JSON: NaN (e.g. no DeLong p-value) becomes null, as JSON has no NaN.
        section["comparison"] = json.loads(verdict.model_dump_json(exclude={"schema_version"}))
        section["verdict"] = verdict.verdict
        section["verdict_sentence"] = verdict.sentence
        section["verdict_method"] = verdict.method or _default_method(verdict)
        section["negative_transfer"] = verdict.is_negative
        if scratch_scores is not None and run.binary:
            roc = _paired_roc(run.evaluation.test_scores, scratch_scores)
            if roc is not None:
                figures.append(roc)
    else:
        notes.append("No scratch baseline run was compared (use --against SCRATCH_RUN).")
    rows: list[LearningCurveRow] = []
    sentences: list[str] = []
    if points:
        rows, sentences, figure = _learning_curves(points)
        figures.append(figure)
    else:
        notes.append("No learning-curve results were supplied (--learning-curves JSON).")
    scores = {
        backbone: {k: finite(v) for k, v in values.items()}
        for backbone, values in (transferability.scores if transferability else {}).items()
    }
    if not scores:
        notes.append("No transferability scores were supplied.")
    all_baselines = _baselines(run, baselines)
    return TransferSection(
        **section,
        learning_curves=rows,
        sample_efficiency=sentences,
        transferability=scores,
        baselines=all_baselines,
        figures=figures,
        notes=notes,
    )


def _default_method(verdict: Comparison) -> str:
    """Methods text of a comparison that does not carry one (written before version 2)."""
    from medtl.evaluation.compare import SINGLE_SEED_METHOD

    return SINGLE_SEED_METHOD if verdict.n_seeds_transfer == verdict.n_seeds_scratch == 1 else ""


def _learning_curves(points: list[Any]) -> tuple[list[LearningCurveRow], list[str], Any]:
    """Sample-efficiency rows, sentences and the learning-curve figure."""
    from medtl.evaluation.plots import plot_learning_curves
    from medtl.evaluation.transfer_analysis import sample_efficiency_table

    strategies = {p.strategy for p in points}
    scratch = "scratch" if "scratch" in strategies else sorted(strategies)[0]
    table = sample_efficiency_table(points, metric="auroc", scratch_strategy=scratch)
    rows = [
        LearningCurveRow(
            strategy=r["strategy"],
            fraction=r["fraction"],
            n_seeds=r["n_seeds"],
            mean=r["transfer_mean"],
            lower=r["transfer_ci_low"],
            upper=r["transfer_ci_high"],
            sd=r["transfer_sd"],
            min=r["transfer_min"],
            max=r["transfer_max"],
            scratch_n_seeds=r["scratch_n_seeds"],
            scratch_mean=r["scratch_mean"],
            scratch_sd=r["scratch_sd"],
            scratch_min=r["scratch_min"],
            scratch_max=r["scratch_max"],
            delta=r["delta"],
        )
        for r in table.rows
    ]
    figure = as_figure(
        "learning-curves",
        "Test AUROC against the fraction of training labels, per strategy (mean over "
        "seeds, band: 95% t-interval); scratch dashed.",
        plot_learning_curves(table, scratch_strategy=scratch),
    )
    return rows, list(table.sentences), figure


def _baselines(run: RunFiles, baselines: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Supplied baselines, the dataset's histogram baseline, and this network first."""
    all_baselines = list(baselines or [])
    hist = run.dataset_dir / HistogramBaseline.FILE
    if hist.is_file():
        try:
            raw = HistogramBaseline.read(hist)
            all_baselines.append(
                {
                    "name": "Intensity-histogram logistic regression",
                    "source": "histogram_baseline.json (dataset folder)",
                    "auroc": raw.test_macro_auroc,
                    "accuracy": raw.test_accuracy,
                    "n_test": raw.n_test,
                }
            )
        except ArtifactError as err:
            logger.warning("unreadable histogram baseline: %s", err)
    if all_baselines:
        test = run.evaluation.test
        all_baselines.insert(
            0,
            {
                "name": f"This network ({run.summary.strategy})",
                "source": "this report",
                "auroc": finite(test.auroc.estimate),
                "accuracy": finite(test.accuracy.estimate if test.accuracy else None),
                "n_test": test.n_images,
            },
        )
    return all_baselines


def _paired_roc(transfer: TestScores, scratch: TestScores) -> Any:
    """ROC curves of transfer and scratch on their common test images (or ``None``)."""
    import numpy as np

    from medtl.evaluation.plots import plot_roc

    position = {int(i): k for k, i in enumerate(scratch.index)}
    pairs = [(k, position[int(i)]) for k, i in enumerate(transfer.index) if int(i) in position]
    if not pairs:
        return None
    ka, kb = (np.array(x) for x in zip(*pairs, strict=True))
    y = np.asarray(transfer.label)[ka]
    if np.unique(y).size < 2:
        return None
    png = plot_roc(
        y,
        {
            "transfer": np.asarray(transfer.prob, dtype=float)[ka],
            "scratch": np.asarray(scratch.prob, dtype=float)[kb],
        },
        title="ROC: transfer vs scratch",
    )
    return as_figure(
        "roc-transfer-vs-scratch",
        f"ROC curves of the transfer and scratch models on the same {len(pairs)} test images.",
        png,
    )


def _fmt_ci(ci: Any) -> str:
    if ci is None or ci.estimate is None:
        return "n/a"
    if ci.lower is None or ci.upper is None:
        return f"{ci.estimate:.3f}"
    return f"{ci.estimate:.3f} ({ci.lower:.3f}-{ci.upper:.3f})"


def headline_summary(data: ReportData | None = None) -> Summary:
    """The summary box: headline numbers and warnings (empty without ``data``).

    Args:
        data: the report content gathered so far.

    Returns:
        The :class:`Summary`.
    """
    if data is None:
        return Summary()
    head: list[Headline] = []
    warnings: list[str] = []
    if data.data.simulated:
        warnings.append(
            "SIMULATED DATA: every image in this report is synthetic or simulated; the numbers "
            "say nothing about performance on real patients."
        )
    for row in data.metrics.rows:
        head.append(Headline(label=f"Test {row.name} (95% CI)", value=_fmt_ci(row.value)))
    if data.operating_points.applicable:
        youden = next((r for r in data.operating_points.rows if r.name == "youden"), None)
        if youden is not None and youden.sensitivity is not None:
            head.append(
                Headline(
                    label="Sensitivity / specificity at Youden threshold",
                    value=f"{_fmt_ci(youden.sensitivity)} / {_fmt_ci(youden.specificity)}",
                )
            )
    ece = next((r for r in data.calibration.table if r.measure.startswith("ECE")), None)
    if ece is not None and ece.after is not None:
        head.append(
            Headline(
                label=f"ECE after {data.calibration.method} calibration",
                value=f"{ece.after:.3f} (before {ece.before:.3f})"
                if ece.before is not None
                else f"{ece.after:.3f}",
            )
        )
    head.append(
        Headline(
            label="Test set",
            value=f"{data.metrics.n_images} images, {data.metrics.n_patients} patients",
        )
    )
    if data.transfer.verdict:
        flag = {
            "negative transfer": "danger",
            "positive transfer": "ok",
            "not assessable": "warning",
        }.get(data.transfer.verdict, "info")
        head.append(Headline(label="Transfer vs scratch", value=data.transfer.verdict, flag=flag))
    if data.transfer.negative_transfer:
        warnings.append(
            "NEGATIVE TRANSFER: the transferred model is significantly worse than training "
            "from scratch on this test set."
        )
    if data.transfer.verdict == "not assessable":
        warnings.append(
            "Transfer vs scratch is not assessable on this test set: "
            + str((data.transfer.comparison or {}).get("decided_by") or "too few patients")
            + "."
        )
    if data.metrics.n_images < 100:
        warnings.append(
            f"Small test set ({data.metrics.n_images} images): confidence intervals are wide."
        )
    return Summary(headline=head, warnings=warnings)
