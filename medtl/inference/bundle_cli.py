"""``medtl models export``: a model package out as a MONAI bundle, TorchScript or ONNX.

The command belongs to the ``medtl models`` group, but the export runs the package through
the inference layer (the bundle's preprocessing and the exported network are the inference
layer's), so it lives here and ``medtl``'s main app adds it to the group (``models`` sits
below ``inference`` in the layer order). Errors a user can fix print one line and exit 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medtl._cli import fail

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

#: the formats ``--format`` takes
FORMATS = ("monai-bundle", "torchscript", "onnx")


@app.command("export")
def export(
    package: Annotated[str, typer.Argument(help="Package folder, name or name@version.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="monai-bundle: the bundle folder; torchscript / onnx: the file (e.g. "
            "model.ts, model.onnx), written with a sidecar FILE.json.",
        ),
    ],
    format: Annotated[
        str, typer.Option("--format", help="monai-bundle, torchscript or onnx.")
    ] = "monai-bundle",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out.")] = False,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            help="What the export computes: probabilities (the package's calibrated ones; the "
            "default for classifiers), logits, or embedding (the default for encoders).",
        ),
    ] = None,
) -> None:
    """Export a model package: a MONAI bundle, or its network as TorchScript or ONNX.

    The MONAI bundle runs with ``python -m monai.bundle run`` without medtl (its
    docs/README.md has the command). TorchScript and ONNX files take the preprocessed input
    tensor; the sidecar FILE.json records the preprocessing, outputs and calibration.
    """
    from medtl.inference.bundle_export import BundleExportError, export_monai_bundle
    from medtl.inference.export import ExportError, export_network
    from medtl.models.package import PackageError

    if format not in FORMATS:
        raise fail(f"unknown export format {format!r}; available: {', '.join(FORMATS)}")
    try:
        if format == "monai-bundle":
            written = export_monai_bundle(package, out, output_kind=output, overwrite=overwrite)
        else:
            written = export_network(package, out, format, output=output, overwrite=overwrite)
    except (PackageError, BundleExportError, ExportError, FileExistsError) as err:
        raise fail(str(err)) from None
    if format == "monai-bundle":
        typer.echo(f"bundle: {written}")
    else:
        typer.echo(f"{format}: {written} (inputs, outputs and calibration: {written}.json)")
