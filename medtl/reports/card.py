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

from medtl.reports.builder import RunFiles, load_run
from medtl.reports.schema import finite

logger = logging.getLogger(__name__)

__all__ = ["build_card", "card_name"]


def card_name(run: RunFiles) -> str:
    """A package name from the run name (letters, digits, ``.``, ``_``, ``-``)."""
    raw = str(run.summary.get("name") or run.run_dir.name)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-._") or "model"
    return name[:100]


def _operating_points(run: RunFiles) -> list[dict[str, Any]]:
    if not run.binary:
        return []
    ev = run.evaluation
    test = (ev.get("test") or {}).get("operating_points") or {}
    points = []
    for name, chosen in (ev.get("operating_points_chosen") or {}).items():
        metrics = dict(chosen.get("metrics") or {})
        on_test = test.get(name) or {}
        metrics = {k: v for k, v in metrics.items() if k != "confusion_matrix"}
        for key in ("sensitivity", "specificity", "ppv", "npv", "accuracy"):
            metrics[key] = finite(metrics.get(key))
        points.append(
            {
                "name": name,
                "goal": chosen.get("goal"),
                "status": chosen.get("status"),
                "threshold": chosen.get("threshold"),
                "sensitivity": metrics.get("sensitivity"),
                "specificity": metrics.get("specificity"),
                "metrics": {
                    "chosen_on": ev.get("calibrated_on", "calibration"),
                    **metrics,
                    "test": {
                        k: {
                            "estimate": finite(v.get("estimate")),
                            "lower": finite(v.get("lower")),
                            "upper": finite(v.get("upper")),
                        }
                        for k, v in (on_test.get("ci") or {}).items()
                    },
                },
            }
        )
    return points


def _metrics(run: RunFiles) -> dict[str, Any]:
    ev = run.evaluation
    test = ev.get("test") or {}

    def ci(d: Any) -> dict[str, float | None] | None:
        if not isinstance(d, dict):
            return None
        return {k: finite(d.get(k)) for k in ("estimate", "lower", "upper")}

    out: dict[str, Any] = {
        "evaluated_on": ev.get("evaluated_on", "test"),
        "n_images": test.get("n_images"),
        "n_patients": test.get("n_patients"),
        "ci": f"95% patient-level bootstrap ({ev.get('n_resamples')} resamples)",
    }
    for key in ("auroc", "auprc", "accuracy"):
        if key in test:
            out[key if run.binary or key != "auroc" else "macro_auroc"] = ci(test[key])
    if not run.binary:
        out["class_counts"] = test.get("class_counts")
    out["calibration"] = {
        row["measure"]: {"before": finite(row.get("before")), "after": finite(row.get("after"))}
        for row in (ev.get("calibration") or {}).get("table", [])
    }
    return out


def _training(run: RunFiles) -> dict[str, Any]:
    exp, summary = run.experiment, run.summary
    training = exp.get("training") or {}
    return {
        "strategy": exp.get("strategy"),
        "optimizer": training.get("optimizer"),
        "lr": training.get("lr"),
        "batch_size": training.get("batch_size"),
        "seed": training.get("seed"),
        "amp": training.get("amp"),
        "device": training.get("device"),
        "label_fraction": summary.get("label_fraction"),
        "train_images": summary.get("train_images"),
        "train_patients": summary.get("train_patients"),
        # Phase folders are local paths: keep their names only.
        "phases": [
            {**{k: v for k, v in p.items() if k != "run_dir"}, "name": Path(p["run_dir"]).name}
            if p.get("run_dir")
            else p
            for p in summary.get("phases") or []
        ],
        "seconds": {k: summary.get(k) for k in ("data_seconds", "train_seconds", "total_seconds")},
        "calibration": {
            "method": run.evaluation.get("calibration_method"),
            "fitted_on": run.evaluation.get("calibrated_on"),
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
) -> Any:
    """The :class:`~medtl.models.package.ModelCard` of a run.

    Args:
        run_dir: the run folder (evaluated first if needed) or a loaded :class:`RunFiles`.
        name: package name (default: the run name).
        version: package version.
        intended_use: purpose statement (default: research use on the run's task).

    Returns:
        The card (architecture and weights checksum are completed by ``save_package``).
    """
    from medtl.models.package import ModelCard

    run = run_dir if isinstance(run_dir, RunFiles) else load_run(run_dir)
    exp = run.experiment
    arch = run.summary.get("model_config") or {}
    task = exp.get("task") or run.manifest.task or None
    limitations = []
    if run.manifest.simulated:
        limitations.append(
            "Trained and validated on simulated data only; performance on real patients is unknown."
        )
    limitations += [
        "Internal validation on held-out patients of one dataset; no external validation.",
        f"Test set of {run.evaluation.get('test', {}).get('n_images', '?')} images: see the "
        "confidence intervals.",
    ]
    if run.binary:
        limitations.append(
            "Thresholds were chosen on the calibration split; re-check them locally before use."
        )
    purpose = intended_use or (
        f"Research use: {task or 'classification'} on {run.manifest.modality} images, for "
        "researchers and reviewers. Not a medical device; not for clinical decisions."
    )
    return ModelCard(
        name=name or card_name(run),
        version=version,
        preprocessing=run.preprocessing_spec().model_dump(mode="json"),
        labels=run.label_names(),
        calibration=run.evaluation.get("calibrator"),
        operating_points=_operating_points(run),
        source_domain=exp.get("source_domain") or arch.get("source_domain"),
        source_task=exp.get("source_task") or arch.get("source_task"),
        target_domain=exp.get("target_domain"),
        target_task=task,
        strategy=str(run.summary.get("strategy") or (exp.get("strategy") or {}).get("name")),
        data_hash=run.summary.get("data_hash"),
        config_hash=run.summary.get("config_hash"),
        metrics=_metrics(run),
        intended_use=purpose,
        limitations=limitations,
        training=_training(run),
    )
