"""``medtl study CONFIG --out DIR``: every arm of a multi-arm study along the learning curve.

The study YAML is :class:`medtl.transfer.arms.ArmsConfig` (``configs/ct_foundation.yaml``).
``medtl``'s main app adds the command. Errors a user can fix print one line and exit 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medtl._cli import config_problem, fail

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command("study")
def study(
    config: Annotated[Path, typer.Argument(help="Study YAML (configs/ct_foundation.yaml).")],
    out: Annotated[Path, typer.Option("--out", help="Folder of the point runs and summaries.")],
    arms: Annotated[
        str | None, typer.Option(help="Comma-separated arms to run (the baseline always runs).")
    ] = None,
    fractions: Annotated[
        str | None, typer.Option(help="Comma-separated label fractions (default: the config's).")
    ] = None,
    seeds: Annotated[int | None, typer.Option(help="Seeds per point up to 25% of labels.")] = None,
    top_seeds: Annotated[int | None, typer.Option(help="Seeds per point above 25%.")] = None,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples per evaluation.")] = 1000,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue unfinished points from checkpoints.")
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Move points of another config/data/weights aside."),
    ] = False,
) -> None:
    """Run a multi-arm study (resumable): learning curves of every arm, verdicts vs the baseline.

    Finished points are reused only when their config, data and weights hashes match.
    """
    from pydantic import ValidationError
    from yaml import YAMLError

    from medtl.transfer.arms import load_arms_config, run_arms

    try:
        cfg = load_arms_config(config)
    except (OSError, ValidationError, ValueError, YAMLError) as exc:
        raise fail(f"invalid study {config}: {config_problem(exc)}") from None
    names = [a.strip() for a in arms.split(",") if a.strip()] if arms else None
    try:
        fracs = [float(f) for f in fractions.split(",") if f.strip()] if fractions else None
    except ValueError:
        raise fail("--fractions must be numbers in (0, 1]") from None
    unknown = [a for a in names or [] if a not in cfg.arms]
    if unknown:
        raise fail(f"unknown arm(s) {unknown}; arms: {', '.join(cfg.arms)}")
    if fracs is not None and (not fracs or any(not 0 < f <= 1 for f in fracs)):
        raise fail("--fractions must be numbers in (0, 1]")
    if resume and overwrite:
        raise fail("--resume and --overwrite exclude each other: choose one")
    try:
        result = run_arms(cfg, out, arms=names, fractions=fracs, seeds=seeds,
                          top_seeds=top_seeds, n_resamples=resamples, resume=resume,
                          overwrite=overwrite)  # fmt: skip
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None
    typer.echo(result["reuse"])
    for point in result["points"]:
        typer.echo(
            f"{point['strategy']:>14}  {point['fraction']:>5.0%}  seed {point['seed']}  "
            f"n={point['n_train']:<6}  test AUROC {point['auroc']:.3f}"
        )
    for arm, verdict in result["verdicts"].items():
        typer.echo(f"{arm} vs {cfg.baseline}: {verdict.get('sentence', verdict.get('verdict'))}")
    typer.echo(f"study: {out}")
