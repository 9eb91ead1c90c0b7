"""The ``medtl`` command line: thin wrappers over the library API.

Errors a user can fix (bad scan, bad config, a missing file or package) print one clear line
on stderr and exit with status 2, without a traceback (:func:`medtl._cli.fail`; errors that
escape a command go through :class:`medtl._cli.UserErrorGroup`); only a bug in medtl shows
a traceback. Standard output holds only results:
with ``--json``, exactly one JSON document; logs and progress go to stderr.
``--verbose`` shows debug logs.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from medtl import __version__
from medtl._cli import UserErrorGroup, config_problem, configure_logging, fail

app = typer.Typer(
    cls=UserErrorGroup,  # a user's error ends a command with one line, a bug with a traceback
    name="medtl",
    help="Medical-imaging transfer learning: load scans, build data, fine-tune, evaluate, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

logger = logging.getLogger("medtl")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medtl {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logs.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """medtl command line."""
    configure_logging(verbose)


@app.command()
def inspect(
    path: Annotated[
        Path, typer.Argument(help="A DICOM file, series folder, zip, NIfTI or PNG/JPEG.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    series_uid: Annotated[
        str | None,
        typer.Option("--series-uid", help="Choose a series when a folder holds several."),
    ] = None,
) -> None:
    """Describe a scan: modality, shape, spacing, orientation, intensities, warnings, PHI flags."""
    from medtl.io import ScanError, load_scan

    try:
        scan = load_scan(path, series_uid=series_uid)
    except ScanError as exc:
        raise fail(str(exc)) from None
    summary = scan.summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Scan", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    lo, hi = summary["intensity_range"]
    rows = [
        ("modality", summary["modality"]),
        ("format", summary["format"]),
        ("shape", " x ".join(str(s) for s in summary["shape"])),
        ("spacing (mm)", " x ".join(f"{s:g}" for s in summary["spacing_mm"])),
        ("orientation", summary["orientation"]),
        ("intensity range", f"{lo:g} .. {hi:g}"),
        (
            "window",
            "-"
            if summary["window"] is None
            else f"C {summary['window']['center']:g} / W {summary['window']['width']:g}",
        ),
    ]
    for key in ("series_uid", "series_choice", "n_files", "transfer_syntax"):
        if key in scan.meta:
            rows.append((key.replace("_", " "), str(scan.meta[key])))
    for key in ("patient_identity_removed", "burned_in_annotation", "burned_in_warning"):
        if key in scan.meta:
            rows.append((key.replace("_", " "), str(scan.meta[key])))
    for field, value in rows:
        table.add_row(field, str(value))
    console = Console()
    console.print(table)
    for warning in scan.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")


@app.command()
def deid(
    sources: Annotated[list[Path], typer.Argument(help="DICOM files or folders.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the de-identified copies.")],
) -> None:
    """Write de-identified copies of DICOM files (PS3.15 Basic Profile, keyed pseudonyms)."""
    from medtl.io import ScanError
    from medtl.io.deid import write_deidentified

    files: list[Path] = []
    for src in sources:
        if src.is_dir():
            files.extend(sorted(p for p in src.rglob("*") if p.is_file()))
        elif src.is_file():
            files.append(src)
        else:
            raise fail(f"not found: {src}")
    try:
        written = write_deidentified(files, out)
    except ScanError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"wrote {len(written)} de-identified file(s) to {out}")


@app.command()
def finetune(
    config: Annotated[Path, typer.Argument(help="Experiment YAML (see configs/).")],
    run_dir: Annotated[Path | None, typer.Option("--run-dir", help="Run folder.")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue a killed run of the same config.")
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Move a run folder's old results aside (timestamped sibling) and train anew.",
        ),
    ] = False,
    strategy: Annotated[
        str | None, typer.Option("--strategy", help="Override the config's strategy name.")
    ] = None,
    evaluate_too: Annotated[
        bool, typer.Option("--evaluate/--no-evaluate", help="Calibrate and evaluate after.")
    ] = True,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Build the model on the meta device, print the estimated memory and compute "
            "of one training step, and exit without training.",
        ),
    ] = False,
) -> None:
    """Fine-tune a backbone as the experiment config says; write a run folder.

    A folder holding results of another config, data or starting weights is refused (the
    difference named) unless --overwrite moves them aside.
    """
    from pydantic import ValidationError
    from yaml import YAMLError

    from medtl.transfer.experiment import load_config, run_experiment

    overrides = {"strategy": {"name": strategy}} if strategy else None
    try:
        cfg = load_config(config, overrides)
    except (OSError, ValidationError, ValueError, YAMLError) as exc:
        raise fail(f"invalid config {config}: {config_problem(exc)}") from None
    if dry_run:
        from medtl.transfer.memory import estimate_step, starting_weights_line

        typer.echo("\n".join([*estimate_step(cfg).lines(), starting_weights_line(cfg)]))
        return
    try:
        run = run_experiment(cfg, run_dir, resume=resume, overwrite=overwrite)
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None
    from medtl.training.distributed import env_dist_info

    if not env_dist_info().is_main:
        return
    typer.echo(f"run folder: {run}")
    if evaluate_too:
        evaluate(run)


@app.command("learning-curves")
def learning_curves(
    config: Annotated[Path, typer.Argument(help="Experiment YAML (strategy: the transfer arm).")],
    out: Annotated[Path, typer.Option("--out", help="Folder of the point runs and summaries.")],
    fractions: Annotated[
        str, typer.Option(help="Comma-separated label fractions in (0, 1].")
    ] = "0.05,0.1,0.25,0.5,1",
    seeds: Annotated[
        str,
        typer.Option(help="Seeds per point up to 25% of labels: a count N or a comma list."),
    ] = "3",
    top_seeds: Annotated[
        int | None, typer.Option(help="Seeds per point above 25% of labels (default: as many).")
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Points trained at once (CPU: 2 on 2 cores; GPU: 1).")
    ] = 1,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples per evaluation.")] = 1000,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue unfinished points from checkpoints.")
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Move points of another config/data/weights aside."),
    ] = False,
) -> None:
    """Transfer arm and scratch at several label fractions; verdict at the largest (resumable).

    Finished points are reused only when their config, data and weights hashes match.
    """
    from pydantic import ValidationError
    from yaml import YAMLError

    from medtl.transfer.experiment import load_config
    from medtl.transfer.learning_curves import run_learning_curves

    try:
        cfg = load_config(config)
    except (OSError, ValidationError, ValueError, YAMLError) as exc:
        raise fail(f"invalid config {config}: {config_problem(exc)}") from None
    try:
        fracs = [float(f) for f in fractions.split(",") if f.strip()]
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
        seed_arg: int | list[int] = seed_list if "," in seeds else seed_list[0]
    except (ValueError, IndexError):
        fracs, seed_arg = [], 0  # refused just below, with the options' rules
    bad_seeds = seed_arg < 1 if isinstance(seed_arg, int) else len(set(seed_arg)) < len(seed_arg)
    if not fracs or any(not 0 < f <= 1 for f in fracs) or bad_seeds:
        raise fail("--fractions must be numbers in (0, 1] and --seeds a count >= 1 or a list")
    if top_seeds is not None and top_seeds < 1:
        raise fail("--top-seeds must be at least 1")
    if resume and overwrite:
        raise fail("--resume and --overwrite exclude each other: choose one")
    try:
        result = run_learning_curves(
            cfg,
            out,
            fractions=fracs,
            seeds=seed_arg,
            top_seeds=top_seeds,
            n_resamples=resamples,
            workers=workers,
            resume=resume,
            overwrite=overwrite,
        )
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None
    typer.echo(result["reuse"])
    for point in result["points"]:
        typer.echo(
            f"{point['strategy']:>18}  {point['fraction']:>5.0%}  seed {point['seed']}  "
            f"n={point['n_train']:<6}  test AUROC {point['auroc']:.3f}"
        )
    if result["verdict"]:
        typer.echo(result["verdict"]["sentence"])
    typer.echo(f"learning curves: {out}")


@app.command()
def pretrain(
    config: Annotated[Path, typer.Argument(help="Pretraining YAML (see configs/).")],
    out: Annotated[Path | None, typer.Option("--out", help="Run folder.")] = None,
) -> None:
    """Pretrain a source backbone (Models Genesis restoration and/or supervised)."""
    from pydantic import ValidationError
    from yaml import YAMLError

    from medtl.transfer.pretrain import load_pretrain_config, run_pretraining

    try:
        cfg = load_pretrain_config(config)
    except (OSError, ValidationError, ValueError, YAMLError) as exc:
        raise fail(f"invalid config {config}: {config_problem(exc)}") from None
    package = run_pretraining(cfg, out)
    typer.echo(f"backbone package: {package}")


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `medtl finetune`.")],
    method: Annotated[
        str | None, typer.Option("--calibration", help="temperature | platt | isotonic | none")
    ] = None,
    n_resamples: Annotated[int, typer.Option("--bootstrap", help="Bootstrap resamples.")] = 1000,
    against: Annotated[
        Path | None,
        typer.Option("--against", help="A scratch-baseline run folder on the same test set."),
    ] = None,
    fail_on_negative: Annotated[
        bool,
        typer.Option(
            "--fail-on-negative-transfer",
            help="Exit with status 3 when transfer is significantly worse than --against.",
        ),
    ] = False,
) -> None:
    """Calibrate on the calibration split and evaluate on test (writes evaluation.json)."""
    from medtl.evaluation.run import evaluate_run

    if not (run_dir / "predictions.csv").is_file():
        raise fail(f"{run_dir} is not a finished run folder (no predictions.csv)")
    result = evaluate_run(run_dir, method=method, n_resamples=n_resamples)
    auroc = result.test.auroc
    typer.echo(
        f"{result.run} [{result.strategy}]: test AUROC {_num(auroc.estimate)} "
        f"(95% CI {_num(auroc.lower)}-{_num(auroc.upper)}); calibration: "
        f"{result.calibration_method}"
    )
    if result.calibration_warning:
        typer.echo(f"  warning: {result.calibration_warning}")
    for row in result.calibration.table:
        pair = f"{_num(row.before, 4)} -> {_num(row.after, 4)}"
        typer.echo(f"  {row.measure}: {row.finding or pair}")
    if against is not None:
        from medtl.evaluation.compare import compare_runs

        verdict = compare_runs(run_dir, against, n_resamples=n_resamples)
        typer.echo(verdict["sentence"])
        if fail_on_negative and verdict["verdict"] == "negative transfer":
            raise fail("negative transfer: transfer is significantly worse than scratch", 3)


@app.command()
def score(
    config: Annotated[
        Path, typer.Argument(help="Experiment or study YAML (configs/ct_foundation.yaml).")
    ],
    candidate: Annotated[
        list[str],
        typer.Option(
            "--candidate",
            "-c",
            help="[NAME=]SPEC (repeat): a package/checkpoint path or registered name, "
            "optionally :layer3/:layer4 (astra-ct:layer3); random or random:BACKBONE.",
        ),
    ],
    finetuned: Annotated[
        Path | None,
        typer.Option(
            "--finetuned",
            help="JSON {name: test AUROC}, or a learning_curves.json (arms as names), "
            "to check the ranking with Kendall's tau.",
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the scores as JSON.")] = None,
    max_samples: Annotated[int, typer.Option(help="Training images used.")] = 512,
    fraction: Annotated[
        float | None,
        typer.Option(help="With a learning_curves.json: the label fraction (default: largest)."),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Seed of the random candidates' weights (default: the config's)."),
    ] = None,
) -> None:
    """Rank candidate backbones by transferability (LogME, H-score, LEEP, NCE) before tuning."""
    from pydantic import ValidationError
    from yaml import YAMLError

    from medtl.transfer.scoring import (
        achieved_metric,
        parse_candidate,
        score_backbones,
        target_config,
        write_scores,
    )

    try:
        cands = [parse_candidate(item) for item in candidate]
    except ValueError as err:
        raise fail(str(err)) from None
    try:
        target = target_config(config)
    except (OSError, ValidationError, ValueError, YAMLError) as exc:
        raise fail(f"invalid config {config}: {config_problem(exc)}") from None
    try:
        ft = achieved_metric(finetuned, fraction) if finetuned else None
    except (OSError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        raise fail(f"--finetuned {finetuned}: {config_problem(exc)}") from None
    result = score_backbones(target, cands, max_samples=max_samples, finetuned=ft, seed=seed)
    for metric, order in result["ranking"].items():
        typer.echo(f"{metric}: " + " > ".join(order))
    for metric, tau in result["kendall_tau"].items():
        typer.echo(
            f"Kendall tau ({metric} vs fine-tuned): {tau['tau']:.2f} (p={tau['p_value']:.2g})"
        )
    if out:
        write_scores(result, out)
        typer.echo(f"wrote {out}")


@app.command()
def demo(
    size: Annotated[str, typer.Option(help="tiny (CI), demo (~15 min on 2 CPUs), full (GPU).")] = (
        "demo"
    ),
    no_app: Annotated[bool, typer.Option("--no-app", help="Run the pipeline only.")] = False,
    force: Annotated[
        list[str] | None, typer.Option("--force", help="Redo a finished stage (repeatable).")
    ] = None,
    port: Annotated[int, typer.Option(help="Port of the app.")] = 8501,
    with_foundation: Annotated[
        bool,
        typer.Option(
            "--with-foundation",
            help="Add the ct_foundation stage (astra-ct vs 3D MRI, scratch, HU histograms); "
            "meant for --size full on a GPU.",
        ),
    ] = False,
) -> None:
    """Run the whole demo: data, pretraining, transfer, calibration, reports, then the app."""
    from medtl.demo import PLANS, STAGES, ensure_demo_accounts, run_demo

    if size not in PLANS:
        raise fail(f"unknown size {size!r}; use one of {', '.join(PLANS)}")
    stages = (*STAGES, "ct_foundation") if with_foundation else STAGES
    unknown = [s for s in force or [] if s not in stages]
    if unknown:
        raise fail(f"unknown stage(s) {unknown}; stages: {', '.join(stages)}")
    summary = run_demo(size, force=tuple(force or ()), with_foundation=with_foundation)
    print_summary(summary)
    if no_app:
        return
    accounts = ensure_demo_accounts(size)
    typer.echo("\nDemo accounts (passwords are new on every start):")
    for username, password in accounts.items():
        typer.echo(f"  {username}  /  {password}")
    from medtl.app_launcher import launch_app

    typer.echo(f"\nStarting the app on http://localhost:{port} (Ctrl+C to stop)")
    process = launch_app(port=port, headless=True)
    try:
        process.wait()
    except KeyboardInterrupt:
        process.terminate()


def print_summary(summary: dict) -> None:
    """Print the demo summary table (:func:`medtl.demo.summary.print_summary`)."""
    from medtl.demo.summary import print_summary as print_demo_summary

    print_demo_summary(summary)


def _register_subapps() -> None:
    """Add the command groups owned by subpackages (they import heavy modules lazily)."""
    from medtl.app_launcher import app as launcher_app
    from medtl.data.cli import app as data_app
    from medtl.inference.bundle_cli import app as bundle_app
    from medtl.inference.cli import app as inference_app
    from medtl.inference.embed_cli import app as embed_app
    from medtl.models.cli import app as models_app
    from medtl.pacs.cli import app as pacs_app
    from medtl.pacs.cli import worker_app
    from medtl.reports.cli import app as reports_app
    from medtl.review.cli import app as review_app
    from medtl.transfer.study_cli import app as study_app

    app.add_typer(data_app, name="data")
    models_app.add_typer(bundle_app)  # `medtl models export` (needs the inference layer)
    app.add_typer(models_app, name="models")
    app.add_typer(pacs_app, name="pacs")
    app.add_typer(worker_app)
    app.add_typer(reports_app)
    app.add_typer(launcher_app)
    app.add_typer(inference_app)
    app.add_typer(embed_app)
    app.add_typer(review_app)
    app.add_typer(study_app)  # medtl study


_register_subapps()


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except SystemExit as done:  # click ends every command this way, 0 on success
        if done.code in (0, None):
            _leave_process_group()
        raise


def _leave_process_group() -> None:
    """Under ``torchrun``, after success: wait for every rank, then destroy the group.

    Only on success: a failed rank must exit at once so the launcher stops the others,
    rather than wait in a barrier its peers never reach.
    """
    if "torch.distributed" not in sys.modules:  # torch never imported: no group to leave
        return
    from medtl.training.distributed import cleanup_distributed

    cleanup_distributed()


if __name__ == "__main__":  # pragma: no cover
    main()
