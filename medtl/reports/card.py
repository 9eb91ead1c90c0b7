"""Build the model card (``model.json``) of a run from its files and its evaluation.

The card holds what inference and reviewers need: architecture, preprocessing, labels, the
calibrator fitted on the calibration split, the operating points chosen there (with their
test performance and CIs), source and target domains and tasks, the strategy, data and
config hashes, test metrics, intended use, limitations and training details.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from medtl.artifacts.card import ModelCard
from medtl.artifacts.stats import ConfidenceInterval
from medtl.reports.builder import RunFiles, load_run
from medtl.reports.schema import finite

logger = logging.getLogger(__name__)

__all__ = ["build_card", "card_name"]


def card_name(run: RunFiles) -> str:
    """A package name from the run name (letters, digits, ``.``, ``_``, ``-``)."""
    raw = run.summary.name or run.run_dir.name
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-._") or "model"
    return name[:100]


def _ci(ci: ConfidenceInterval | None) -> dict[str, float | None] | None:
    if ci is None:
        return None
    return {"estimate": finite(ci.estimate), "lower": finite(ci.lower), "upper": finite(ci.upper)}


def _operating_points(run: RunFiles) -> list[dict[str, Any]]:
    if not run.binary:
        return []
    ev = run.evaluation
    points = []
    for name, chosen in ev.operating_points_chosen.items():
        metrics: dict[str, Any] = (
            chosen.metrics.model_dump(exclude={"confusion_matrix"}) if chosen.metrics else {}
        )
        for key in ("sensitivity", "specificity", "ppv", "npv", "accuracy"):
            metrics[key] = finite(metrics.get(key))
        on_test = ev.operating_point_on_test(name)
        test_ci = (on_test.ci or {}) if on_test is not None else {}
        points.append(
            {
                "name": name,
                "goal": chosen.goal,
                "status": chosen.status,
                "threshold": chosen.threshold,
                "sensitivity": metrics["sensitivity"],
                "specificity": metrics["specificity"],
                "metrics": {
                    "chosen_on": ev.calibrated_on,
                    **metrics,
                    "test": {k: _ci(v) for k, v in test_ci.items()},
                },
            }
        )
    return points


def _metrics(run: RunFiles) -> dict[str, Any]:
    ev = run.evaluation
    test = ev.test
    out: dict[str, Any] = {
        "evaluated_on": ev.evaluated_on,
        "n_images": test.n_images,
        "n_patients": test.n_patients,
        "ci": f"95% patient-level bootstrap ({ev.n_resamples} resamples)",
    }
    values = {"auroc": test.auroc, "auprc": test.auprc, "accuracy": test.accuracy}
    for key, ci in values.items():
        if ci is not None:
            out[key if run.binary or key != "auroc" else "macro_auroc"] = _ci(ci)
    if not run.binary:
        out["class_counts"] = test.class_counts
    out["calibration"] = {
        row.measure: {
            "before": finite(row.before),
            "after": finite(row.after),
            **({"change": _ci(row.change_ci)} if row.change_ci is not None else {}),
        }
        for row in ev.calibration.table
    }
    return out


def _training(run: RunFiles) -> dict[str, Any]:
    config, summary = run.config, run.summary
    training = config.training
    return {
        "strategy": config.strategy.model_dump(mode="json"),
        "optimizer": training.optimizer,
        "lr": training.lr,
        "batch_size": training.batch_size,
        "seed": training.seed,
        "amp": training.amp,
        "device": training.device,
        "label_fraction": summary.label_fraction,
        "train_images": summary.train_images,
        "train_patients": summary.train_patients,
        # Phase folders are local paths: keep their names only.
        "phases": [
            {
                **p.model_dump(exclude={"run_dir"}, mode="json"),
                **({"name": Path(p.run_dir).name} if p.run_dir else {}),
            }
            for p in summary.phases
        ],
        "seconds": {
            "data_seconds": summary.data_seconds,
            "train_seconds": summary.train_seconds,
            "total_seconds": summary.total_seconds,
        },
        "calibration": {
            "method": run.evaluation.calibration_method,
            "fitted_on": run.evaluation.calibrated_on,
            **(
                {
                    "split_images": split.n_images,
                    "split_patients": split.n_patients,
                }
                if (split := run.evaluation.calibration_split) is not None
                else {}
            ),
            **(
                {"warning": run.evaluation.calibration_warning}
                if run.evaluation.calibration_warning
                else {}
            ),
        },
        "dataset": run.manifest.name,
        "simulated_data": run.manifest.simulated,
    }


def build_card(
    run_dir: str | Path | RunFiles,
    *,
    name: str | None = None,
    version: str = "0.1.0",
    intended_use: str | None = None,
) -> ModelCard:
    """The :class:`~medtl.artifacts.ModelCard` of a run.

    Args:
        run_dir: the run folder (evaluated first if needed) or a loaded :class:`RunFiles`.
        name: package name (default: the run name).
        version: package version.
        intended_use: purpose statement (default: research use on the run's task).

    Returns:
        The card (architecture and weights checksum are completed by ``save_package``).
    """
    run = run_dir if isinstance(run_dir, RunFiles) else load_run(run_dir)
    config = run.config
    arch = run.summary.backbone
    task = run.task
    limitations = []
    if run.manifest.simulated:
        limitations.append(
            "Trained and validated on simulated data only; performance on real patients is unknown."
        )
    limitations += [
        "Internal validation on held-out patients of one dataset; no external validation.",
        f"Test set of {run.evaluation.test.n_images} images: see the confidence intervals.",
    ]
    if run.binary:
        limitations.append(
            "Thresholds were chosen on the calibration split; re-check them locally before use."
        )
    if run.evaluation.calibration_warning:
        limitations.append(run.evaluation.calibration_warning)
    source = run.summary.source
    purpose = intended_use or (
        f"Research use: {task or 'classification'} on {run.manifest.modality} images, for "
        "researchers and reviewers. Not a medical device; not for clinical decisions."
    )
    return ModelCard(
        name=name or card_name(run),
        version=version,
        preprocessing=run.preprocessing_spec(),
        labels=run.label_names(),
        calibration=run.evaluation.calibrator,
        operating_points=_operating_points(run),
        # the weights' own card first; the config's text only when they carry none
        source_domain=source.domain if source else _legacy(config.source_domain, arch, "domain"),
        source_task=source.task if source else _legacy(config.source_task, arch, "task"),
        source_stated_by=source.stated_by if source else None,
        target_domain=config.target_domain,
        target_task=task,
        strategy=run.summary.strategy,
        data_hash=run.summary.data_hash,
        config_hash=run.summary.config_hash,
        metrics=_metrics(run),
        intended_use=purpose,
        limitations=limitations,
        training=_training(run),
        starting_weights=run.summary.starting_weights,
        environment=run.summary.environment,
        config_warnings=list(run.summary.config_warnings),
        built_from=run.built_from,
    )


def _legacy(stated: str | None, arch: Any, what: str) -> str | None:
    """Source text of a run that recorded no source description (before provenance)."""
    return stated or (getattr(arch, f"source_{what}") if arch else None)
