"""``medtl models export``: a model package out as a MONAI bundle.

The command belongs to the ``medtl models`` group, but the export runs the package through
the inference layer (the bundle's ``run`` step is medtl's preprocessing and embedding), so it
lives here and ``medtl``'s main app adds it to the group (``models`` sits below
``inference`` in the layer order). Errors a user can fix print one line and exit 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medtl._cli import fail

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command("export")
def export(
    package: Annotated[str, typer.Argument(help="Package folder, name or name@version.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle folder to write.")],
    format: Annotated[str, typer.Option("--format", help="Export format.")] = "monai-bundle",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out.")] = False,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            help="What the bundle writes: probabilities (the package's calibrated ones; the "
            "default for classifiers), logits, or embedding (the default for encoders).",
        ),
    ] = None,
) -> None:
    """Export a model package as a MONAI bundle (configs, weights, LICENSE) for MONAI's tools.

    Run it with ``python -m monai.bundle run`` (``pip install "medtl[bundle]"``); the
    bundle's docs/README.md has the exact command.
    """
    from medtl.inference.bundle_export import BundleExportError, export_monai_bundle
    from medtl.models.package import PackageError

    if format != "monai-bundle":
        raise fail(f"unknown export format {format!r}; available: monai-bundle")
    try:
        folder = export_monai_bundle(package, out, output_kind=output, overwrite=overwrite)
    except (PackageError, BundleExportError, FileExistsError) as err:
        raise fail(str(err)) from None
    typer.echo(f"bundle: {folder}")
