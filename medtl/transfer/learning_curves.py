"""Learning curves: a transfer strategy and the scratch baseline at several label fractions.

Each point is a full run (train on a patient-grouped subset of the training labels,
calibrate, evaluate on the **same** test split), so the curves answer "how many labels does
transfer save?" and the top-fraction runs give the transfer-vs-scratch verdict.

**Seeds.** Every point is trained with several seeds (subset draw and initialisation):
:func:`seed_schedule` gives ``seeds`` (default 3) at the small fractions, where training
randomness is the largest, and ``top_seeds`` at fractions above 25 % (default: as many). The
curves report the mean and spread (SD, min-max) over seeds per arm and fraction, and the
verdict at the top fraction is the seed-and-patient bootstrap of
:func:`medtl.evaluation.compare.compare_seed_runs` over all top-fraction seeds of both arms.

Output folder layout::

    out_dir/
      <strategy>_f<fraction>_s<seed>/     one run folder per point (resumable: finished
                                          runs with evaluation.json are reused when their
                                          recorded config, data and weights hashes match)
      learning_curves.json                LearningCurves (medtl.artifacts): the points and
                                          the config, data and weights hashes
      sample_efficiency.json              SampleEfficiencyFile: per-fraction table, sentences
      verdict.json                        Comparison: transfer vs scratch at the top fraction
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from medtl.artifacts.curves import (
    Comparison,
    CurvePoint,
    LearningCurves,
    SampleEfficiencyFile,
)
from medtl.artifacts.evaluation import Evaluation
from medtl.artifacts.run import RunSummary
from medtl.transfer.experiment import ExperimentConfig, run_experiment
from medtl.transfer.strategies import StrategyName

logger = logging.getLogger(__name__)

DEFAULT_FRACTIONS = (0.05, 0.10, 0.25, 0.50, 1.00)
#: seeds per point at fractions up to :data:`SMALL_FRACTION` (the default of ``seeds``)
DEFAULT_SEEDS = 3
#: fractions up to this get ``seeds``; larger ones ``top_seeds``
SMALL_FRACTION = 0.25


def _seed_list(seeds: int | Sequence[int]) -> list[int]:
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"at least one seed per point, got {seeds}")
        return list(range(seeds))
    out = [int(s) for s in seeds]
    if not out or len(set(out)) != len(out):
        raise ValueError(f"seeds must be distinct integers, at least one: {seeds!r}")
    return out


def seed_schedule(
    fractions: Sequence[float],
    seeds: int | Sequence[int] = DEFAULT_SEEDS,
    top_seeds: int | None = None,
) -> dict[float, list[int]]:
    """The training seeds of each label fraction.

    Args:
        fractions: label fractions in (0, 1].
        seeds: seeds at fractions up to :data:`SMALL_FRACTION`: a count ``n`` (seeds
            ``0 .. n-1``) or the seeds themselves.
        top_seeds: how many seeds at fractions above :data:`SMALL_FRACTION` (the verdict's
            fraction among them); ``None``: as many as ``seeds``. The first of ``seeds`` are
            used, continued with the next integers when ``top_seeds`` asks for more.

    Returns:
        ``{fraction: [seed, ...]}``.

    Example:
        >>> seed_schedule((0.1, 1.0), 3, top_seeds=2)
        {0.1: [0, 1, 2], 1.0: [0, 1]}
    """
    small = _seed_list(seeds)
    n_top = len(small) if top_seeds is None else int(top_seeds)
    if n_top < 1:
        raise ValueError(f"top_seeds must be at least 1, got {top_seeds}")
    top = small[:n_top] + [max(small) + 1 + k for k in range(max(0, n_top - len(small)))]
    return {float(f): list(small if f <= SMALL_FRACTION else top) for f in sorted(fractions)}


def point_dir(out_dir: Path, strategy: str, fraction: float, seed: int) -> Path:
    """The run folder of one learning-curve point."""
    return out_dir / f"{strategy}_f{fraction:g}_s{seed}"


def _value(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def run_learning_curves(
    config: ExperimentConfig,
    out_dir: str | Path,
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seeds: int | Sequence[int] = DEFAULT_SEEDS,
    top_seeds: int | None = None,
    strategies: Sequence[str] | None = None,
    n_resamples: int = 1000,
    progress: bool = True,
    workers: int = 1,
    resume: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run every (strategy, fraction, seed) point, then summarise.

    Args:
        config: the transfer experiment (its strategy is the transfer arm).
        out_dir: where point runs and summaries go.
        fractions: label fractions in (0, 1].
        seeds: seeds per point up to 25 % of labels (subset draw and initialisation): a
            count or the seeds (see :func:`seed_schedule`).
        top_seeds: seeds per point above 25 % of labels (``None``: as many as ``seeds``).
        strategies: arms to run; default ``[config.strategy.name, "scratch"]``.
        n_resamples: bootstrap resamples in each evaluation.
        progress: show a progress bar.
        workers: points trained at once, each in its own process with an equal share of
            the CPU threads. Small models on a few CPU cores use them better as parallel
            runs than as intra-op threads of one run. Results do not depend on it (each
            point is seeded on its own); GPU jobs should keep 1.
        resume: continue unfinished points of the same config from their checkpoints
            (without it they train again from the start).
        overwrite: move points computed from another config, data or starting weights
            aside (into a timestamped sibling of ``out_dir``) instead of refusing.

    Returns:
        ``{"points": [...], "summary": [...], "sample_efficiency": {...},
        "verdict": {...} | None, "runs": {name: path}, "reused": [...], "recomputed":
        [...], "reuse": "3 points reused, 1 recomputed"}`` (``summary``: mean and spread over
        seeds per strategy and fraction, :class:`~medtl.artifacts.CurveSummary` dicts;
        ``reused`` / ``recomputed``: point folder names).

    Raises:
        medtl.transfer.run_folder.RunFolderConflict: a point folder holds results of
            another config, data or starting weights and ``overwrite`` is false.
    """
    from tqdm.auto import tqdm

    from medtl.evaluation.compare import compare_seed_runs
    from medtl.evaluation.transfer_analysis import sample_efficiency_table

    out_dir = Path(out_dir)
    arms = list(strategies) if strategies else [str(config.strategy.name), "scratch"]
    schedule = seed_schedule(fractions, seeds, top_seeds)
    jobs = [(s, f, seed) for f, fs in schedule.items() for s in arms for seed in fs]
    plan = _plan(config, out_dir, jobs, overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [job for job in jobs if job in plan.recompute]
    logger.info("learning curves in %s: %s", out_dir, plan.sentence())
    bar = tqdm(total=len(jobs), desc="learning curves", unit="run", disable=not progress)
    bar.update(len(jobs) - len(todo))
    if workers > 1 and len(todo) > 1:
        _run_parallel(config, out_dir, todo, n_resamples, workers, bar, resume)
    else:
        for strategy, fraction, seed in todo:
            bar.set_postfix_str(f"{strategy} {fraction:.0%} seed {seed}")
            _run_point(config, out_dir, strategy, fraction, seed, n_resamples, resume)
            bar.update(1)
    bar.close()
    points, runs = _collect_points(out_dir, jobs, _identity(config))
    efficiency = sample_efficiency_table(points).to_dict() if "scratch" in arms else None
    if efficiency is not None:
        SampleEfficiencyFile.parse(efficiency).write(out_dir / SampleEfficiencyFile.FILE)
    verdict = None
    transfer_arm = next((a for a in arms if a != "scratch"), None)
    if transfer_arm is not None and "scratch" in arms:
        top_seed_list = schedule[max(schedule)]
        verdict = compare_seed_runs(
            [point_dir(out_dir, transfer_arm, max(schedule), s) for s in top_seed_list],
            [point_dir(out_dir, "scratch", max(schedule), s) for s in top_seed_list],
            seeds_transfer=top_seed_list,
            seeds_scratch=top_seed_list,
            n_resamples=n_resamples,
        )
        Comparison.parse(verdict).write(out_dir / Comparison.FILE)
    summary = LearningCurves.read(out_dir / LearningCurves.FILE).summary
    return {
        "points": [asdict(p) for p in points],
        "summary": [c.model_dump() for c in summary],
        "sample_efficiency": efficiency,
        "verdict": verdict,
        "runs": runs,
        "reused": [point_dir(out_dir, *job).name for job in plan.reused],
        "recomputed": [point_dir(out_dir, *job).name for job in todo],
        "reuse": plan.sentence(),
    }


def _plan(config: ExperimentConfig, out_dir: Path, jobs: list[tuple[str, float, int]],
          overwrite: bool) -> Any:  # fmt: skip
    """Which points are reused (finished, same identity) and which are (re)computed."""
    from medtl.transfer.run_folder import expected_inputs, plan_points

    points = []
    for job in jobs:
        cfg = point_config(config, *job)
        points.append((job, point_dir(out_dir, *job), cfg, expected_inputs(cfg)))
    return plan_points(out_dir, points, overwrite=overwrite)


def _identity(config: ExperimentConfig) -> dict[str, str | None]:
    """The hashes ``learning_curves.json`` records: base config, data, transfer weights."""
    from medtl.transfer.run_folder import expected_inputs

    inputs = expected_inputs(config)
    return {
        "config_hash": inputs.config_hash,
        "data_hash": inputs.data_hash,
        "weights_sha256": inputs.weights_sha256,
    }


def _collect_points(
    out_dir: Path, jobs: list[tuple[str, float, int]], identity: dict[str, str | None]
) -> tuple[list[Any], dict[str, str]]:
    """Read every finished point run; write ``learning_curves.json``."""
    from medtl.evaluation.transfer_analysis import LearningCurvePoint

    points: list[LearningCurvePoint] = []
    runs: dict[str, str] = {}
    for strategy, fraction, seed in jobs:
        run = point_dir(out_dir, strategy, fraction, seed)
        test = Evaluation.read(run / Evaluation.FILE).test
        summary = RunSummary.read(run / RunSummary.FILE)
        points.append(
            LearningCurvePoint(
                strategy=strategy,
                fraction=float(fraction),
                seed=int(seed),
                auroc=_value(test.auroc.estimate),
                auprc=test.auprc.estimate if test.auprc is not None else None,
                n_train=summary.train_images,
                extra={"train_seconds": summary.train_seconds},
            )
        )
        runs[run.name] = str(run)
    LearningCurves.from_points(
        (CurvePoint.model_validate(asdict(p)) for p in points), **identity
    ).write(out_dir / LearningCurves.FILE)
    return points, runs


def point_config(
    config: ExperimentConfig, strategy: str, fraction: float, seed: int
) -> ExperimentConfig:
    """The experiment config of one learning-curve point."""
    return config.model_copy(
        update={
            "name": f"{config.name}-{strategy}-f{fraction:g}-s{seed}",
            "strategy": config.strategy.model_copy(update={"name": StrategyName(strategy)}),
            "data": config.data.model_copy(update={"label_fraction": fraction}),
            "training": config.training.model_copy(update={"seed": seed}),
        }
    )


def _run_point(
    config: ExperimentConfig,
    out_dir: Path,
    strategy: str,
    fraction: float,
    seed: int,
    n_resamples: int,
    resume: bool = False,
) -> Path:
    """Train, calibrate and evaluate one point (the caller decided it is to be computed).

    ``run_experiment``'s folder guard checks the point folder again: it refuses one that
    holds another run's results.
    """
    from medtl.evaluation.run import evaluate_run

    run = point_dir(out_dir, strategy, fraction, seed)
    resume = resume and (run / "run_inputs.json").is_file()
    run_experiment(point_config(config, strategy, fraction, seed), run, resume=resume)
    evaluate_run(run, n_resamples=n_resamples, seed=seed)
    return run


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING)


def _worker_point(
    config_json: dict[str, Any],
    out_dir: str,
    strategy: str,
    fraction: float,
    seed: int,
    n_resamples: int,
    resume: bool,
) -> str:
    config = ExperimentConfig.model_validate(config_json)
    return str(_run_point(config, Path(out_dir), strategy, fraction, seed, n_resamples, resume))


def _run_parallel(
    config: ExperimentConfig,
    out_dir: Path,
    todo: list[tuple[str, float, int]],
    n_resamples: int,
    workers: int,
    bar: Any,
    resume: bool = False,
) -> None:
    """Run points in ``workers`` spawned processes, largest label fraction first."""
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    workers = min(workers, len(todo))
    threads = max(1, (os.cpu_count() or 1) // workers)
    quiet = config.model_copy(
        update={"training": config.training.model_copy(update={"progress": "never"})}
    )
    payload = quiet.model_dump(mode="json")
    # Longest first: the full-label runs dominate, so they start before the small ones.
    order = sorted(todo, key=lambda job: -job[1])
    logger.info(
        "learning curves: %d runs, %d at a time, %d threads each", len(order), workers, threads
    )
    with ProcessPoolExecutor(
        workers,
        mp_context=mp.get_context("spawn"),
        initializer=_worker_init,
        initargs=(threads,),
    ) as pool:
        futures = {
            pool.submit(_worker_point, payload, str(out_dir), s, f, seed, n_resamples, resume): (
                s,
                f,
            )
            for s, f, seed in order
        }
        for future in as_completed(futures):
            future.result()  # a failed point fails the curve, with its own traceback
            strategy, fraction = futures[future]
            bar.set_postfix_str(f"{strategy} {fraction:.0%} done")
            bar.update(1)
