"""Run folders are never silently mixed: the guard ``finetune``, learning curves and studies
run before they write anything.

A run folder records its identity before training starts (``run_inputs.json``, a
:class:`~medtl.artifacts.run.RunInputs`: config hash, data hash, starting-weights SHA-256).
A new run into a folder that holds results compares its own identity with the recorded one:

* same identity: train again in place, or continue killed phases (``resume``);
* another identity: refused with the difference named (which hash, old and new, and for a
  config the changed keys, e.g. ``strategy.head_lr: 0.002 -> 0.01``), unless ``overwrite``,
  which moves the old results aside into a timestamped sibling folder (never deletes).

Learning curves and studies apply the same comparison per point: only points whose recorded
identity matches are reused (:func:`plan_points`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from medtl.artifacts.base import ArtifactError
from medtl.artifacts.run import RunInputs, RunSummary

logger = logging.getLogger(__name__)

__all__ = [
    "PointPlan",
    "RunFolderConflict",
    "changed_keys",
    "dump_hash",
    "expected_inputs",
    "guard_run_folder",
    "identity_differences",
    "move_aside",
    "plan_points",
    "plan_study_points",
    "recorded_inputs",
    "write_inputs",
]

#: files and folders whose presence makes a folder hold results of a run
RUN_MARKERS = (
    RunInputs.FILE,
    "experiment.yaml",
    RunSummary.FILE,
    "predictions.csv",
    "model.safetensors",
    "evaluation.json",
    "report.json",
    "report.html",
    "package",
)
#: keys shown before "... and N more"
_MAX_KEYS = 6


class RunFolderConflict(ValueError):
    """A folder holds results of another config, data or starting weights."""


def expected_inputs(config: Any, *, uses_weights: bool = True) -> RunInputs:
    """The identity a run of ``config`` will record.

    Args:
        config: an :class:`~medtl.transfer.experiment.ExperimentConfig`.
        uses_weights: whether the run loads ``model.weights`` (a histogram point does not).

    Returns:
        The :class:`~medtl.artifacts.run.RunInputs` (weights hashed when they are loaded:
        not for ``scratch`` or without ``model.weights``).
    """
    from medtl.transfer.experiment import manifest_hash
    from medtl.transfer.provenance import starting_weights_origin

    origin = starting_weights_origin(config) if uses_weights else None
    return RunInputs(
        name=config.name,
        config_hash=config.config_hash(),
        data_hash=manifest_hash(Path(config.data.dataset)),
        weights_sha256=origin.sha256 if origin is not None else None,
    )


def write_inputs(run_dir: Path, config: Any, inputs: RunInputs) -> None:
    """Write ``experiment.yaml`` and ``run_inputs.json`` (before training)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "experiment.yaml").write_text(
        yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), encoding="utf-8"
    )
    inputs.write(run_dir / RunInputs.FILE)


def holds_results(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds any file a run or its derived results write."""
    return run_dir.is_dir() and any((run_dir / name).exists() for name in RUN_MARKERS)


def _finished(run_dir: Path) -> bool:
    return (run_dir / "evaluation.json").is_file() and (run_dir / RunSummary.FILE).is_file()


def recorded_inputs(run_dir: Path) -> RunInputs | None:
    """The identity a folder recorded: ``run_inputs.json``, else its ``summary.json``.

    Returns:
        The recorded :class:`~medtl.artifacts.run.RunInputs`, or ``None`` when the folder
        records none (no results, or results of a release before identities were recorded).
    """
    try:
        if (run_dir / RunInputs.FILE).is_file():
            return RunInputs.read(run_dir / RunInputs.FILE)
        if (run_dir / RunSummary.FILE).is_file():
            summary = RunSummary.read(run_dir / RunSummary.FILE)
            if summary.config_hash and summary.data_hash:
                return RunInputs(
                    name=summary.name,
                    config_hash=summary.config_hash,
                    data_hash=summary.data_hash,
                    weights_sha256=summary.weights_sha256,
                )
    except ArtifactError as err:
        logger.warning("cannot read the identity of %s: %s", run_dir, err)
    return None


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, (list, dict)) or value == "":
        return json.dumps(value)
    return str(value)


_MISSING = object()


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two config dicts.

    Args:
        old: the config the folder holds (``experiment.yaml``).
        new: the new run's config dump.

    Returns:
        e.g. ``["strategy.head_lr: 0.002 -> 0.01"]`` (sorted; absent keys shown as
        ``(absent)``).
    """
    a, b = _flatten(old), _flatten(new)
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key, _MISSING), b.get(key, _MISSING)
        if x != y:
            left = "(absent)" if x is _MISSING else _show(x)
            right = "(absent)" if y is _MISSING else _show(y)
            out.append(f"{key}: {left} -> {right}")
    return out


def _short(value: str | None) -> str:
    if value is None:
        return "none"
    return value[:12] if len(value) == 64 else value


def identity_differences(
    run_dir: Path, recorded: RunInputs | None, expected: RunInputs, config: Any
) -> list[str]:
    """What differs between the identity a folder recorded and a new run's.

    Args:
        run_dir: the folder (its ``experiment.yaml`` gives the changed config keys).
        recorded: :func:`recorded_inputs` of the folder (``None``: not recorded).
        expected: :func:`expected_inputs` of the new run.
        config: the new run's config.

    Returns:
        One entry per differing hash, the config's naming the changed keys; empty when the
        identities match.
    """
    if recorded is None:
        return ["the folder records no config, data or weights hash (results of an unknown run)"]
    out = []
    if recorded.config_hash != expected.config_hash:
        text = f"config hash {recorded.config_hash} -> {expected.config_hash}"
        keys = _config_changes(run_dir, config)
        if keys:
            more = f", and {len(keys) - _MAX_KEYS} more" if len(keys) > _MAX_KEYS else ""
            text += f" ({'; '.join(keys[:_MAX_KEYS])}{more})"
        out.append(text)
    if recorded.data_hash != expected.data_hash:
        out.append(f"data hash {recorded.data_hash} -> {expected.data_hash}")
    if recorded.weights_sha256 != expected.weights_sha256:
        out.append(
            f"starting weights sha256 {_short(recorded.weights_sha256)} -> "
            f"{_short(expected.weights_sha256)}"
        )
    return out


def _config_changes(run_dir: Path, config: Any) -> list[str]:
    path = run_dir / "experiment.yaml"
    try:
        old = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        old = None
    if not isinstance(old, dict):
        return []
    from medtl.transfer.experiment import hashed_config

    return changed_keys(hashed_config(old), hashed_config(config.model_dump(mode="json")))


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def aside_folder(folder: Path) -> Path:
    """A new timestamped sibling of ``folder`` (``<name>.replaced-<UTC time>[-k]``)."""
    base = folder.parent / f"{folder.name}.replaced-{_stamp()}"
    target, k = base, 1
    while target.exists():
        target = base.with_name(f"{base.name}-{k}")
        k += 1
    return target


def move_aside(folder: Path) -> Path:
    """Move a folder's old results into a timestamped sibling folder (nothing is deleted).

    Args:
        folder: the folder to move.

    Returns:
        Where it went.
    """
    target = aside_folder(folder)
    shutil.move(str(folder), str(target))
    logger.warning("moved the old results of %s aside to %s", folder, target)
    return target


def guard_run_folder(
    run_dir: Path, config: Any, expected: RunInputs, *, resume: bool, overwrite: bool
) -> Path | None:
    """Check a run folder before a run of ``config`` writes into it.

    Args:
        run_dir: the folder.
        config: the new run's config.
        expected: its identity (:func:`expected_inputs`).
        resume: the run continues killed phases (the folder must hold the same config).
        overwrite: move a folder of another run aside instead of refusing.

    Returns:
        Where the old results were moved (``overwrite``), else ``None``.

    Raises:
        RunFolderConflict: the folder holds results of another config, data or weights and
            ``overwrite`` is false; or ``resume`` and ``overwrite`` are both set.
    """
    if resume and overwrite:
        raise RunFolderConflict("--resume and --overwrite exclude each other: choose one")
    if not holds_results(run_dir):
        return None
    if overwrite:
        return move_aside(run_dir)
    recorded = recorded_inputs(run_dir)
    diffs = identity_differences(run_dir, recorded, expected, config)
    if not diffs:
        return None
    what = "--resume continues a run of the same config, but " if resume else ""
    raise RunFolderConflict(
        f"{what}{run_dir} holds results of a different run: {'; '.join(diffs)}. Use another "
        "folder, or --overwrite to move the old results aside"
    )


@dataclass
class PointPlan:
    """What a learning curve or study does with each of its points.

    Attributes:
        reused: finished points whose recorded identity matches.
        recompute: points to (re)train: new, unfinished, or moved aside.
        moved_to: the folder mismatching points were moved into (``overwrite``).
    """

    reused: list[Any] = field(default_factory=list)
    recompute: list[Any] = field(default_factory=list)
    moved_to: Path | None = None

    def sentence(self) -> str:
        """e.g. ``"3 points reused, 1 recomputed"``."""
        n, m = len(self.reused), len(self.recompute)
        text = f"{n} point{'s' if n != 1 else ''} reused, {m} recomputed"
        if self.moved_to is not None:
            text += f" (old results moved to {self.moved_to})"
        return text


def plan_points(
    out_dir: Path,
    points: list[tuple[Any, Path, Any, RunInputs]],
    *,
    overwrite: bool,
) -> PointPlan:
    """Decide, for every point of a learning curve or study, whether to reuse it.

    Args:
        out_dir: the curve's or study's folder.
        points: ``(key, point folder, point config, expected identity)`` per point.
        overwrite: move points of another identity aside (into one timestamped sibling of
            ``out_dir``, keeping their names) instead of refusing.

    Returns:
        The :class:`PointPlan` (keys of reused and recomputed points).

    Raises:
        RunFolderConflict: a point folder holds results of another identity and
            ``overwrite`` is false (the message names the point and the difference).
    """
    plan = PointPlan()
    conflicts: list[tuple[Any, Path, list[str]]] = []
    for key, run, config, expected in points:
        if not holds_results(run):
            plan.recompute.append(key)
            continue
        diffs = identity_differences(run, recorded_inputs(run), expected, config)
        if diffs:
            conflicts.append((key, run, diffs))
        elif _finished(run):
            plan.reused.append(key)
        else:
            plan.recompute.append(key)
    if conflicts and not overwrite:
        _, run, diffs = conflicts[0]
        raise RunFolderConflict(
            f"{out_dir}: {len(conflicts)} of {len(points)} points hold results of a different "
            f"run (e.g. {run.name}: {'; '.join(diffs)}). Use another --out, or --overwrite to "
            "move those points aside"
        )
    if conflicts:
        target = aside_folder(out_dir)
        target.mkdir(parents=True)
        for key, run, _ in conflicts:
            shutil.move(str(run), str(target / run.name))
            plan.recompute.append(key)
        plan.moved_to = target
        logger.warning("moved %d point(s) of another run aside to %s", len(conflicts), target)
    return plan


def dump_hash(config: Any, exclude: set[str] | None = None) -> str:
    """Short sha256 of a pydantic config's JSON dump (e.g. a study config in ``arms.json``).

    Args:
        config: the config.
        exclude: top-level fields left out (where it was loaded from, ...).

    Returns:
        16 hex digits.
    """
    text = json.dumps(config.model_dump(mode="json", exclude=exclude), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def plan_study_points(
    config: Any, names: list[str], out_dir: Path, schedule: dict[float, list[int]], *,
    overwrite: bool,
) -> PointPlan:  # fmt: skip
    """:func:`plan_points` for the points of a multi-arm study.

    Args:
        config: the :class:`~medtl.transfer.arms.ArmsConfig`.
        names: the arms run.
        out_dir: the study folder.
        schedule: ``{fraction: [seed, ...]}``.
        overwrite: move points of another identity aside instead of refusing.

    Returns:
        The plan; keys are ``(arm, fraction, seed)``.
    """
    from medtl.transfer.arms import arm_config
    from medtl.transfer.learning_curves import point_config, point_dir

    points = []
    for arm in names:
        cfg, kind = arm_config(config, arm), config.arms[arm].kind
        for fraction, seeds in schedule.items():
            for seed in seeds:
                point = point_config(cfg, str(cfg.strategy.name), fraction, seed)
                expected = expected_inputs(point, uses_weights=kind != "histogram")
                run = point_dir(out_dir, arm, fraction, seed)
                points.append(((arm, fraction, seed), run, point, expected))
    return plan_points(out_dir, points, overwrite=overwrite)
