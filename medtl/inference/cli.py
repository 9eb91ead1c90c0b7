"""``medtl predict PACKAGE PATH``: run a model package on one scan.

``app`` holds one command, ``predict``; ``medtl``'s main app adds it with
``app.add_typer(inference_app)`` (no group name), so the command is ``medtl predict``.

Exit status: 0 with a result (also with a domain-guard warning), 1 when the domain guard
refused the scan (the reasons are printed, and the JSON result still is with ``--json``),
2 on errors (unreadable scan, missing package, bad operating point): one line on stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from medtl._cli import fail

if TYPE_CHECKING:  # pragma: no cover
    from medtl.inference.result import PredictionResult

app = typer.Typer(
    help="Predict with a model package.", add_completion=False, pretty_exceptions_enable=False
)

EXIT_REFUSED = 1
EXIT_ERROR = 2


@app.command("predict")
def predict(
    package: Annotated[
        str, typer.Argument(help="Model package folder, or a registered name or name@version.")
    ],
    path: Annotated[Path, typer.Argument(help="Scan: DICOM file/folder/zip, NIfTI, PNG or JPEG.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    heatmap: Annotated[
        Path | None,
        typer.Option("--heatmap", help="Write the Grad-CAM overlay as a PNG (3D: peak slice)."),
    ] = None,
    operating_point: Annotated[
        str | None,
        typer.Option("--operating-point", "-p", help="Operating point name (default: youden)."),
    ] = None,
    modality: Annotated[
        str | None,
        typer.Option(
            "--modality",
            help="Modality of a file that records none (PNG, JPEG, NIfTI), e.g. DX or CT; "
            "DICOM files state their own.",
        ),
    ] = None,
) -> None:
    """Calibrated probability, decision, heat map and domain check for one scan."""
    from medtl.inference.predictor import Predictor
    from medtl.io import ScanError, load_scan
    from medtl.models.package import PackageError

    try:
        predictor = Predictor.from_package(package, operating_point=operating_point)
    except (PackageError, ValueError) as err:
        raise fail(str(err)) from None
    try:
        scan = load_scan(path, modality=modality)
    except ScanError as err:
        raise fail(str(err)) from None
    result = predictor.predict(scan)
    if heatmap is not None and result.heatmap is not None:
        try:
            _write_overlay(scan, result.heatmap, heatmap)
        except OSError as err:
            raise fail(f"cannot write the heat map: {err}") from None
    if as_json:
        typer.echo(result.to_json())
    else:
        _print_text(result)
        if heatmap is not None and result.heatmap is not None:
            typer.echo(f"heat map: {heatmap}")
    if result.refused:
        raise typer.Exit(EXIT_REFUSED)


def _print_text(result: PredictionResult) -> None:
    typer.echo(f"package: {result.package}")
    if result.refused:
        typer.echo("result: REFUSED")
        for reason in result.domain.reasons:
            typer.echo(f"  - {reason}")
        return
    typer.echo(f"result: {result.summary_line()}")
    if result.probabilities:
        shown = ", ".join(f"{k} {v:.3f}" for k, v in result.probabilities.items())
        typer.echo(f"probabilities{' (calibrated)' if result.calibrated else ''}: {shown}")
    if result.decision is not None:
        d = result.decision
        sens = "?" if d.expected_sensitivity is None else f"{d.expected_sensitivity:.2f}"
        spec = "?" if d.expected_specificity is None else f"{d.expected_specificity:.2f}"
        typer.echo(
            f"decision: {d.label} (operating point {d.operating_point}, threshold "
            f"{d.threshold:.3f}, expected sensitivity {sens}, specificity {spec})"
        )
    typer.echo(f"domain check: {result.domain.status}")
    for reason in result.domain.reasons:
        typer.echo(f"  - {reason}")
    for region in (result.regions or [])[:3]:
        typer.echo(
            f"region {region.start}-{region.stop}: {region.top_class} {region.probability:.3f}"
        )
    for warning in result.warnings:
        typer.echo(f"warning: {warning}")
    t = result.timings_ms
    typer.echo(
        f"time: {t.total:.0f} ms (decode {t.decode:.0f}, preprocess {t.preprocess:.0f}, "
        f"forward {t.forward:.0f}, saliency {t.saliency:.0f})"
    )


def _write_overlay(scan: Any, heat: Any, out: Path) -> None:
    import numpy as np
    from PIL import Image

    from medtl.inference.saliency import overlay_heatmap
    from medtl.io import apply_window, default_window

    array = np.asarray(scan.array)
    heat = np.asarray(heat)
    if array.ndim == 3 and heat.ndim == 3:
        k = int(np.unravel_index(int(np.argmax(heat)), heat.shape)[0])
        array, heat = array[k], heat[k]
    elif array.ndim == 3:
        array = array[0]
    grey = apply_window(array, default_window(scan))
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay_heatmap(grey, heat)).save(out, format="PNG")
