"""Build a model package from a run folder: weights, card, report and domain guard.

The package (see :mod:`medtl.models.package`) holds ``weights.safetensors`` (from the run's
``model.safetensors``), ``model.json`` (:func:`~medtl.reports.card.build_card`),
``report.html`` (the run's report, rendered when missing; refused when it records other
hashes than the run's, so a package never ships another model's report) and the domain guard
(``domain_guard.json`` + ``domain_guard.safetensors``, fitted on the run's pooled training
features with its threshold set on the validation features; files that record no modality
are taken as the one the training images were declared as, when they were such files).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from medtl.reports.builder import RunFiles, load_run

logger = logging.getLogger(__name__)

__all__ = ["build_package", "fit_run_guard"]


def fit_run_guard(run: RunFiles, out_dir: Path) -> list[Path]:
    """Fit the domain guard on the run's features and save it into ``out_dir``.

    Args:
        run: the loaded run.
        out_dir: the package folder.

    Returns:
        The guard files written.

    Raises:
        FileNotFoundError: the run has no ``features_train.safetensors``.
        ImportError: :mod:`medtl.inference.domain` cannot be imported. It is part of medtl,
            so that is a bug: a package without its domain guard must not ship.
    """
    from medtl.inference.domain import GUARD_ARRAYS_FILE, GUARD_JSON_FILE, fit_domain_guard

    train = run.run_dir / "features_train.safetensors"
    val = run.run_dir / "features_val.safetensors"
    if not train.is_file():
        raise FileNotFoundError(
            f"{run.run_dir} has no features_train.safetensors: the domain guard cannot be fitted"
        )
    from medtl.data.modality import declared_modality

    spec = run.preprocessing_spec()
    guard = fit_domain_guard(
        train,
        val if val.is_file() else None,
        spatial_dims=spec.spatial_dims,
        modality_family=spec.modality,
        # training PNGs imported with --modality DX: a PNG at inference is DX like them
        assumed_modality=declared_modality(run.manifest, run.dataset_dir),
    )
    guard.save(out_dir)
    return [p for p in (out_dir / GUARD_JSON_FILE, out_dir / GUARD_ARRAYS_FILE) if p.is_file()]


def _check_report(path: Path, run: RunFiles) -> None:
    """Refuse to ship a run's ``report.html`` built from other results than the run's.

    Raises:
        medtl.artifacts.run.ProvenanceMismatch: the report records other hashes, or none.
    """
    from medtl.artifacts.run import ProvenanceMismatch, require_same_source
    from medtl.reports.html import read_built_from

    fix = f"rebuild it with `medtl report {run.run_dir}`, or package with --no-report"
    recorded = read_built_from(path)
    if recorded is None:
        raise ProvenanceMismatch(
            f"{path} does not record which run it was built from (another tool or an older "
            f"medtl wrote it), so it may describe another model: {fix}"
        )
    require_same_source(recorded, run.built_from, str(path), fix)


def build_package(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    register: bool = True,
    *,
    name: str | None = None,
    version: str = "0.1.0",
    report: bool = True,
    overwrite: bool = False,
    intended_use: str | None = None,
    report_options: dict[str, Any] | None = None,
) -> Path:
    """Assemble (and register) the model package of a run.

    Args:
        run_dir: the run folder (evaluated first if it has no ``evaluation.json``).
        out_dir: package folder (default ``RUN/package``).
        register: copy the package into the local registry (``MEDTL_HOME/models``).
        name: package name (default: the run name).
        version: package version.
        report: include ``report.html`` (the run's own, else rendered now without PDF).
        overwrite: replace an existing package folder / registry entry.
        intended_use: purpose statement for the card and report.
        report_options: extra :func:`~medtl.reports.builder.build_report_data` options when
            the report is rendered here.

    Returns:
        The package folder (``out_dir``).

    Raises:
        FileExistsError: the package exists and ``overwrite`` is false.
        FileNotFoundError: not a finished run folder (model weights or pooled features
            missing).
        medtl.artifacts.run.ProvenanceMismatch: the run's ``report.html`` or
            ``evaluation.json`` was built from other results than the run holds now.
        ImportError: the domain guard cannot be built (a bug in medtl.inference).
    """
    from medtl.models.package import CARD_FILE, load_package, register_package, save_package
    from medtl.reports.card import build_card
    from medtl.reports.failures import load_run_model

    run = load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.run_dir / "package"
    if (out / CARD_FILE).exists() and not overwrite:
        raise FileExistsError(f"a model package already exists in {out}")
    if not (run.run_dir / "model.safetensors").is_file():
        raise FileNotFoundError(f"{run.run_dir} has no model.safetensors")
    model = load_run_model(run.run_dir, run.summary)
    card = build_card(run, name=name, version=version, intended_use=intended_use)
    html: str | Path | None = None
    if report:
        existing = run.run_dir / "report.html"
        if existing.is_file():
            _check_report(existing, run)
            html = existing
        else:
            from medtl.reports.builder import build_report_data
            from medtl.reports.html import render_html

            html = render_html(
                build_report_data(run, intended_use=intended_use, **(report_options or {}))
            )
    save_package(model, card, out, report_html=html, overwrite=overwrite)
    try:
        fit_run_guard(run, out)
    except BaseException:
        # Without its domain guard the folder must not pass for a model package.
        (out / CARD_FILE).unlink(missing_ok=True)
        raise
    load_package(out)  # fail here, not in the clinic, if the package does not load
    if register:
        # register_package copies every file of the package, the domain guard included.
        ref = register_package(out, overwrite=overwrite)
        logger.info("registered %s", ref)
    return out
