"""``medtl models ...``: list backbones, check a pretrained checkpoint, manage packages.

``app`` is a Typer sub-app; ``medtl``'s main app adds it as ``app.add_typer(
medtl.models.cli.app, name="models")``. Errors a user can fix print one line and exit 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from medtl._cli import fail
from medtl.models.foundation_cli import app as foundation_app

app = typer.Typer(
    help="Backbones, local pretrained-weight import, and model packages.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# fetch; `export` needs the inference layer: medtl.inference.bundle_cli, added by medtl.cli
app.add_typer(foundation_app)


@app.command("backbones")
def backbones() -> None:
    """List the registered backbones."""
    from medtl.models.registry import describe_backbones

    for name, description in describe_backbones().items():
        typer.echo(f"{name:16s} {description}")


@app.command("import-weights")
def import_weights_cmd(
    backbone: Annotated[str, typer.Argument(help="Backbone name (see `medtl models backbones`).")],
    weights: Annotated[Path, typer.Argument(help="Checkpoint file or MONAI bundle folder.")],
    spatial_dims: Annotated[int, typer.Option("--spatial-dims", "-d", help="2 or 3.")] = 2,
    in_channels: Annotated[int, typer.Option("--in-channels", help="Input channels.")] = 1,
    num_outputs: Annotated[int, typer.Option("--num-outputs", help="Head outputs.")] = 1,
    format: Annotated[str, typer.Option("--format", help="Import format or 'auto'.")] = "auto",
    min_loaded: Annotated[
        float, typer.Option("--min-loaded", help="Minimum fraction of backbone parameters.")
    ] = 0.9,
    inflate: Annotated[bool, typer.Option("--inflate", help="Inflate 2D kernels to 3D.")] = False,
    medicalnet: Annotated[
        bool, typer.Option("--medicalnet", help="ResNet with MedicalNet geometry.")
    ] = False,
    save: Annotated[
        Path | None, typer.Option("--save", help="Write the loaded weights as safetensors.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False,
) -> None:
    """Load a local checkpoint into a backbone and print the load report."""
    from medtl.models.importers import import_weights
    from medtl.models.registry import create_backbone
    from medtl.models.weights import WeightImportError, save_weights

    options = {"medicalnet": True} if medicalnet else {}
    try:
        model = create_backbone(
            backbone,
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            num_outputs=num_outputs,
            options=options,
        )
        report = import_weights(
            model, weights, format=format, min_loaded=min_loaded, inflate=inflate
        )
    except (KeyError, ValueError, WeightImportError) as err:
        raise fail(str(err).strip("'\"")) from err
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        typer.echo(report.summary())
        for warning in report.warnings:
            typer.echo(f"warning: {warning}")
    if save is not None:
        save_weights(model, save)
        # with --json, stdout holds the one JSON document only
        typer.echo(f"saved {save}", err=as_json)


@app.command("packages")
def packages() -> None:
    """List the model packages in the local registry."""
    from medtl.models.package import list_packages

    for info in list_packages():
        typer.echo(f"{info.ref:32s} {info.backbone or '?':16s} {info.created:%Y-%m-%d}")


@app.command("register")
def register(
    path: Annotated[Path, typer.Argument(help="Model package folder.")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the entry.")] = False,
) -> None:
    """Copy a model package into the local registry (MEDTL_HOME/models)."""
    from medtl.models.package import PackageError, register_package

    try:
        ref = register_package(path, overwrite=overwrite)
    except (PackageError, FileExistsError) as err:
        raise fail(str(err)) from err
    typer.echo(ref)


@app.command("show")
def show(
    name_or_path: Annotated[str, typer.Argument(help="Package folder, name or name@version.")],
) -> None:
    """Print a package's model card (model.json)."""
    from medtl.models.package import PackageError, read_card, resolve_package

    try:
        card = read_card(resolve_package(name_or_path))
    except PackageError as err:
        raise fail(str(err)) from err
    typer.echo(card.model_dump_json(indent=2))
