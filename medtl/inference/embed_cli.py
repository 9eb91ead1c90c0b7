"""``medtl embed``: the pooled embedding of one whole scan, saved as ``.npy``.

Exit status: 0 written; 1 the scan is outside the package's domain (one line on stderr);
2 unreadable scan, unknown package or layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medtl._cli import fail

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

EXIT_REFUSED = 1


@app.command("embed")
def embed(
    package: Annotated[
        str, typer.Argument(help="Model package folder, or a registered name or name@version.")
    ],
    scan: Annotated[Path, typer.Argument(help="Scan: DICOM series folder or zip, or NIfTI.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .npy file.")],
    layer: Annotated[
        str, typer.Option("--layer", help="Stage to pool: layer4 (default), layer3, layer2.")
    ] = "layer4",
    modality: Annotated[
        str | None, typer.Option("--modality", help="Modality of a NIfTI file (e.g. CT, MR).")
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help="eager, channels_last_3d or onnxruntime (default: the benchmark's choice, "
            "or MEDTL_EMBED_BACKEND); all give eager fp32's embedding within 1e-3.",
        ),
    ] = None,
) -> None:
    """Whole-scan embedding after the package's preprocessing (e.g. astra-ct: 2048 values)."""
    import numpy as np

    from medtl.inference.embed import ScanRefusedError
    from medtl.inference.predictor import Predictor
    from medtl.io import ScanError, load_scan
    from medtl.models.package import PackageError

    try:
        predictor = Predictor.from_package(package)
    except (PackageError, ValueError) as err:
        raise fail(str(err)) from None
    try:
        loaded = load_scan(scan, modality=modality)
    except ScanError as err:
        raise fail(str(err)) from None
    try:
        result = predictor.embed(loaded, layer=layer, backend=backend)
    except ScanRefusedError as err:
        raise fail(f"refused: {err}", code=EXIT_REFUSED) from None
    except ValueError as err:
        raise fail(str(err)) from None
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, result.vector.astype(np.float32))
    typer.echo(
        f"{out}: {result.vector.size} values from {result.layer} of {result.package} "
        f"(input {'x'.join(map(str, result.input_shape))}, {result.seconds:.1f} s)"
    )
