"""``medtl report RUN`` and ``medtl package RUN``: the validation report and the model package.

``app`` is a Typer sub-app whose two commands sit at the top level of ``medtl`` (wire it with
``app.add_typer(medtl.reports.cli.app)``, no group name). Errors a user can fix print one
line and exit 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medtl._cli import fail

app = typer.Typer(
    help="Validation reports and model packages.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _check_run(run: Path) -> None:
    if not (run / "predictions.csv").is_file():
        raise fail(f"{run} is not a finished run folder (no predictions.csv)")


@app.command("report")
def report_cmd(
    run: Annotated[Path, typer.Argument(help="A run folder written by `medtl finetune`.")],
    against: Annotated[
        Path | None,
        typer.Option("--against", help="A scratch-baseline run folder on the same test set."),
    ] = None,
    learning_curves: Annotated[
        Path | None,
        typer.Option(
            "--learning-curves",
            help="JSON list of {strategy, fraction, seed, auroc[, auprc, n_train, extra]}.",
        ),
    ] = None,
    transferability: Annotated[
        Path | None,
        typer.Option("--transferability", help="JSON {backbone: {logme, h_score, ...}}."),
    ] = None,
    verdict: Annotated[
        Path | None,
        typer.Option(
            "--verdict",
            help="verdict.json of `medtl learning-curves` (seed-aware; replaces the "
            "single-run comparison with --against).",
        ),
    ] = None,
    pdf: Annotated[bool, typer.Option("--pdf/--no-pdf", help="Also write report.pdf.")] = True,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: the run folder).")
    ] = None,
    failure_cases: Annotated[
        int, typer.Option("--failure-cases", help="Cases shown per kind (FP, FN).")
    ] = 3,
    saliency: Annotated[
        bool, typer.Option("--saliency/--no-saliency", help="Grad-CAM on failure cases.")
    ] = True,
) -> None:
    """Write the validation report of a run: report.json, report.html and report.pdf."""
    from medtl.reports.pdf import PdfUnavailableError
    from medtl.reports.report import write_report

    _check_run(run)
    for option, path in (
        ("--against", against),
        ("--learning-curves", learning_curves),
        ("--transferability", transferability),
        ("--verdict", verdict),
    ):
        if path is not None and not path.exists():
            raise fail(f"{option}: {path} does not exist")
    if against is not None:
        _check_run(against)
    options = {
        "against": against,
        "learning_curves": learning_curves,
        "transferability": transferability,
        "comparison": verdict,
        "failure_cases": failure_cases,
        "saliency": saliency,
    }
    try:
        paths = write_report(run, out, pdf=pdf, **options)
    except PdfUnavailableError as err:
        typer.echo(f"report.json and report.html written; PDF skipped: {err}", err=True)
        raise typer.Exit(1) from None
    except (FileNotFoundError, ValueError) as err:
        raise fail(str(err)) from None
    for kind, path in paths.items():
        typer.echo(f"{kind}: {path}")


@app.command("package")
def package_cmd(
    run: Annotated[Path, typer.Argument(help="A run folder written by `medtl finetune`.")],
    name: Annotated[
        str | None, typer.Option("--name", help="Package name (default: the run name).")
    ] = None,
    version: Annotated[str, typer.Option("--version", help="Package version.")] = "0.1.0",
    out: Annotated[
        Path | None, typer.Option("--out", help="Package folder (default: RUN/package).")
    ] = None,
    register: Annotated[
        bool, typer.Option("--register/--no-register", help="Add it to the local registry.")
    ] = True,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing package.")
    ] = False,
    report: Annotated[
        bool,
        typer.Option(
            "--report/--no-report",
            help="Include report.html (the run's own, else rendered now).",
        ),
    ] = True,
) -> None:
    """Build the model package of a run (weights, card, report, domain guard)."""
    from pydantic import ValidationError

    from medtl.reports.package import build_package

    _check_run(run)
    try:
        folder = build_package(
            run, out, register, name=name, version=version, overwrite=overwrite, report=report
        )
    except FileExistsError as err:
        raise fail(f"{err} (use --overwrite)") from None
    except (FileNotFoundError, ValueError, ValidationError) as err:
        raise fail(str(err).splitlines()[0]) from None
    typer.echo(f"package: {folder}")
