"""Provenance of a fine-tuning run: its starting weights, the source they state, and the
config settings that cannot apply.

* :func:`starting_weights_origin`: the weights a run loads (``None`` for ``scratch`` or
  without ``model.weights``), resolved, hashed, with their own card's domain and task.
* :func:`source_description`: the source domain and task a run records: the weights' own card
  where it states them; the experiment config's free text only when the weights carry no
  card that does (labelled ``experiment config``); nothing for a run without starting weights.
* :func:`config_warnings`: settings that cannot apply (warned, and recorded in the summary);
  :func:`check_grouping` refuses ``data.group_batches_by`` when no training record has the
  attribute.
* :func:`starting_weights_record`: the summary's :class:`~medtl.artifacts.run.StartingWeights`.
* :class:`RunProvenance` and :func:`build_run_summary`: what ``run_experiment`` gathers and
  the ``summary.json`` it writes from it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from medtl.artifacts.run import (
    PhaseSummary,
    RunEnvironment,
    RunInputs,
    RunSummary,
    SourceDescription,
    StartingWeights,
)

logger = logging.getLogger(__name__)

__all__ = [
    "RunProvenance",
    "build_run_summary",
    "check_grouping",
    "config_warnings",
    "model_device",
    "point_provenance",
    "source_description",
    "starting_weights_origin",
    "starting_weights_record",
]


def starting_weights_origin(config: Any):
    """The starting weights a run of ``config`` loads, located and hashed.

    Args:
        config: an :class:`~medtl.transfer.experiment.ExperimentConfig`.

    Returns:
        A :class:`~medtl.models.provenance.WeightsOrigin`, or ``None`` when the run loads no
        weights (``scratch``, or no ``model.weights``).
    """
    if str(config.strategy.name) == "scratch" or config.model.weights is None:
        return None
    from medtl.models.provenance import locate_weights

    return locate_weights(config.model.weights)


def source_description(config: Any, origin: Any) -> tuple[SourceDescription, list[str]]:
    """The source domain and task a run records, and warnings about the config's text.

    Args:
        config: the experiment config (``source_domain`` / ``source_task``: free text).
        origin: :func:`starting_weights_origin` of the run.

    Returns:
        ``(description, warnings)``.
    """
    stated = {"source_domain": config.source_domain, "source_task": config.source_task}
    warnings: list[str] = []
    if origin is None:
        given = [k for k, v in stated.items() if v]
        if given:
            warnings.append(
                f"{' and '.join(given)} of the config not recorded: the run starts from no "
                "weights (strategy scratch or no model.weights), so it has no source"
            )
        return SourceDescription(stated_by="no starting weights"), warnings
    if origin.has_card and (origin.domain or origin.task):
        card = {"source_domain": origin.domain, "source_task": origin.task}
        for key, text in stated.items():
            if text and card[key] and text != card[key]:
                warnings.append(
                    f"{key} {text!r} of the config differs from the starting weights' own card "
                    f"({card[key]!r}); the card's is recorded"
                )
        return (
            SourceDescription(domain=origin.domain, task=origin.task, stated_by="weights card"),
            warnings,
        )
    if not any(stated.values()):
        return SourceDescription(stated_by="not stated"), warnings
    return (
        SourceDescription(
            domain=config.source_domain, task=config.source_task, stated_by="experiment config"
        ),
        warnings,
    )


def config_warnings(config: Any) -> list[str]:
    """Settings of an experiment config that cannot apply, each with the reason.

    Args:
        config: the experiment config.

    Returns:
        Sentences (logged as warnings by the caller and recorded in the run summary).
    """
    out = []
    strategy = str(config.strategy.name)
    if strategy == "scratch" and config.model.weights is not None:
        out.append(
            f"model.weights ({config.model.weights.name}) is not loaded: strategy scratch "
            "trains from random weights"
        )
    if strategy != "scratch" and config.model.weights is None:
        out.append(
            f"strategy {strategy} without model.weights: the backbone starts from random "
            "weights, so this run is trained from scratch"
        )
    return out


def check_grouping(config: Any, records: list[Any], world_size: int = 1) -> list[str]:
    """Refuse ``data.group_batches_by`` where it cannot apply.

    Args:
        config: the experiment config.
        records: the training records.
        world_size: processes training together (DDP).

    Returns:
        Warnings (some records lack the attribute: they are batched on their own).

    Raises:
        ValueError: no training record has the attribute, or several processes train (the
            grouped batches are not split between processes: each would see every batch).
    """
    key = config.data.group_batches_by
    if not key:
        return []
    if world_size > 1:
        raise ValueError(
            f"data.group_batches_by: {key!r} cannot apply with {world_size} processes: grouped "
            "batches are not split between processes, so each would train on every batch; "
            "train in one process or remove the setting"
        )
    have = sum(1 for r in records if r.attributes.get(key) is not None)
    if have == 0:
        known = sorted({k for r in records for k in r.attributes})
        carried = ", ".join(known) if known else "none"
        raise ValueError(
            f"data.group_batches_by: {key!r} cannot apply: no training record has the attribute "
            f"{key!r} (attributes the records carry: {carried}); remove the setting or add "
            "the attribute to the manifest's records"
        )
    if have < len(records):
        return [
            f"data.group_batches_by: {len(records) - have} of {len(records)} training records "
            f"have no {key!r}; each of them forms a group of its own"
        ]
    return []


def starting_weights_record(origin: Any, report: Any) -> StartingWeights | None:
    """The summary's record of the starting weights.

    Args:
        origin: :func:`starting_weights_origin` of the run (``None``: no weights).
        report: the import's :class:`~medtl.models.weights.LoadReport`.

    Returns:
        The :class:`~medtl.artifacts.run.StartingWeights`, or ``None``.
    """
    if origin is None or report is None:
        return None
    return StartingWeights(
        file=origin.file.name,
        package=origin.package,
        sha256=origin.sha256,
        format=report.format,
        layout=report.meta.get("layout"),
        loaded_fraction=min(1.0, max(0.0, report.loaded_fraction)),
        load_report=report.summary(),
        has_card=origin.has_card,
    )


@dataclass
class RunProvenance:
    """What a fine-tuning run records about where it came from.

    Attributes:
        inputs: the run's identity (config, data and starting-weights hashes).
        origin: the located starting weights (``None``: none).
        source: the source domain and task, and who stated them.
        warnings: settings of the config that could not apply.
        environment: versions, commit, device, precision, threads (set after training).
    """

    inputs: RunInputs
    origin: Any
    source: SourceDescription
    warnings: list[str] = field(default_factory=list)
    environment: RunEnvironment | None = None

    @classmethod
    def start(
        cls, config: Any, inputs: RunInputs, origin: Any, extra: list[str] | None = None
    ) -> RunProvenance:
        """The provenance known before training; each warning is logged.

        Args:
            config: the experiment config.
            inputs: its identity.
            origin: :func:`starting_weights_origin` of the config.
            extra: further warnings (e.g. :func:`check_grouping`'s).

        Returns:
            The :class:`RunProvenance` (``environment`` still unset).
        """
        source, warnings = source_description(config, origin)
        warnings = config_warnings(config) + warnings + list(extra or [])
        for text in warnings:
            logger.warning("%s", text)
        return cls(inputs, origin, source, warnings)


def model_device(model: Any) -> Any:
    """The device the model's parameters are on (where it trained)."""
    import torch

    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


def build_run_summary(
    config: Any,
    result: Any,
    model: Any,
    datasets: Any,
    seconds: dict[str, float],
    provenance: RunProvenance,
) -> RunSummary:
    """The ``summary.json`` of a fine-tuning run.

    Args:
        config: the experiment config.
        result: the strategy's result (phases, timings, parameters).
        model: the trained model (its ``config``, ``load_report``).
        datasets: the run's :class:`~medtl.data.datasets.SplitDatasets`.
        seconds: ``{"data": ..., "total": ...}``.
        provenance: what the run recorded about its origin.

    Returns:
        The :class:`~medtl.artifacts.run.RunSummary`.
    """
    manifest = datasets.manifest
    train = datasets.indices["train"]
    report = getattr(model, "load_report", None)
    return RunSummary(
        name=config.name,
        strategy=str(result.name),
        num_outputs=int(model.config.num_outputs),
        label_names=list(manifest.label_names),
        label_fraction=config.data.label_fraction,
        train_images=len(train),
        train_patients=len({manifest.records[i].patient_id for i in train}),
        data_seconds=seconds["data"],
        train_seconds=result.seconds,
        total_seconds=seconds["total"],
        best_val_metric=result.best_metric,
        phases=[
            PhaseSummary(
                run_dir=str(p.run_dir) if p.run_dir else None,
                epochs=p.epochs_run,
                best_epoch=p.best_epoch,
                best_metric=p.best_metric,
                monitor=p.monitor,
                stopped_early=p.stopped_early,
            )
            for p in result.phases
        ],
        trainable_parameters=result.trainable_parameters,
        total_parameters=result.total_parameters,
        model_config=model.config,
        weights_load_report=report.to_dict() if report is not None else {},
        config_hash=provenance.inputs.config_hash,
        data_hash=provenance.inputs.data_hash,
        starting_weights=starting_weights_record(provenance.origin, report),
        source=provenance.source,
        environment=provenance.environment,
        config_warnings=provenance.warnings,
    )


def point_provenance(config: Any, uses_weights: bool, device: str = "cpu") -> dict[str, Any]:
    """Provenance fields of a study point trained outside the Trainer (features, histogram,
    top block): source, environment and inapplicable settings. Its starting weights' hash
    is in the point's ``run_inputs.json``.

    Args:
        config: the point's experiment config.
        uses_weights: the point reads ``model.weights`` (not a histogram point).
        device: where the point's model ran.

    Returns:
        ``{"source": ..., "environment": ..., "config_warnings": [...]}`` for
        :class:`~medtl.artifacts.run.RunSummary`.
    """
    from medtl.training.environment import run_environment

    origin = starting_weights_origin(config) if uses_weights else None
    source, warnings = source_description(config, origin)
    return {
        "source": source,
        "environment": run_environment(device, config.training.amp),
        "config_warnings": warnings,
    }
