"""Export a medtl model package as a MONAI bundle that runs with MONAI alone.

Layout written (MONAI bundle specification)::

    DIR/LICENSE                  the weights' licence as the package states it, and medtl's
    DIR/configs/metadata.json    schema, versions, task, network_data_format, licence, refs
    DIR/configs/inference.json   network_def (the TorchScript file), preprocessing and
                                 postprocessing (MONAI transforms: the package's recorded
                                 preprocessing and its calibration), initialize/run sections
    DIR/models/model.ts          the network, traced (TorchScript): ``forward`` gives the
                                 logits, ``embed`` the pooled layer4 features
    DIR/models/model.pt          the state dict only (torch.save of tensors: loads with
                                 torch.load(weights_only=True)), for fine-tuning elsewhere
    DIR/scripts/runtime.py       MONAI's DICOM reader with slices sorted by position, and
                                 the run step (:mod:`medtl.inference.bundle_runtime`)
    DIR/docs/README.md           how to run it; the package's card and licence files

Nothing in the bundle imports medtl: the network is ``torch.jit.load`` of ``models/model.ts``
(:func:`medtl.inference.export.traced_network`, checked against the package's network when
it is written), the scan is read and preprocessed by MONAI transforms
(:mod:`medtl.inference.bundle_transforms`), and the logits go through the package's
calibrator written as MONAI transforms (:mod:`medtl.inference.bundle_postprocess`), so the
bundle gives the probabilities :class:`~medtl.inference.Predictor` gives. Running it needs
MONAI with pydicom / nibabel / Pillow for the readers and ``fire`` for MONAI's command line
(``pip install "monai[pydicom,nibabel,pillow,fire]"``)::

    python -m monai.bundle run --config_file DIR/configs/inference.json \\
        --meta_file DIR/configs/metadata.json --bundle_root DIR \\
        --input_file scan.nii.gz --output_file out.npy

(``monai.bundle.run(config_file=..., meta_file=..., bundle_root=..., input_file=...,
output_file=...)`` is the same runner) writes, as ``.npy``, the calibrated probabilities
(``output_kind: probabilities``, the default for classifiers: one value, P(positive label),
for a one-output package) or the pooled embedding (``embedding``, the default for
encoder-only packages such as ``astra-ct``). ``--output_kind logits`` writes the raw logits.
The bundle does not run the package's domain guard; ``medtl predict`` does.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = ["OUTPUT_KINDS", "BundleExportError", "export_monai_bundle"]

SCHEMA = (
    "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/"
    "0.8.1/meta_schema_20220324.json"
)
#: what a bundle's ``run`` step can write
OUTPUT_KINDS = ("probabilities", "logits", "embedding")
_RUN = (
    "python -m monai.bundle run --config_file configs/inference.json "
    "--meta_file configs/metadata.json --bundle_root . --input_file SCAN --output_file out.npy"
)
#: what the bundle needs besides MONAI and PyTorch (its readers and MONAI's command line)
_REQUIRED = ("pydicom", "nibabel", "pillow", "fire")

_WINDOWS_NOTE = (
    "the bundle classifies the whole volume resized to the input spatial_shape in one pass; "
    "medtl predict slides windows of that size over the volume and keeps the most suspicious "
    "window (one output) or the mean (several), so the two agree only for a volume of one "
    "window"
)


class BundleExportError(RuntimeError):
    """The package cannot be written as a MONAI bundle."""


def _jsonable(value: Any) -> Any:
    """Strip characters MONAI's config parser would read as expressions or references."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, str) and value[:1] in ("$", "@", "%"):
        return " " + value
    return value


def _inference_config(card: Any, output_kind: str, post: Any) -> dict[str, Any]:
    """``configs/inference.json``: MONAI components and expressions only, no medtl symbol."""
    from medtl.inference.bundle_transforms import array_transforms, load_transforms

    pre = card.preprocessing
    spec = pre.model_dump(mode="json") if hasattr(pre, "model_dump") else dict(pre or {})
    config: dict[str, Any] = {
        "imports": ["$import numpy", "$import torch"],
        "bundle_root": ".",
        "device": "$torch.device('cpu')",
        # what the transforms below were written from (a record; nothing reads it)
        "preprocessing_spec": _jsonable(spec),
        "network_def": ("$torch.jit.load(@bundle_root + '/models/model.ts', map_location=@device)"),
        "network": "$@network_def.eval()",
        "preprocessing": {
            "_target_": "monai.transforms.Compose",
            "transforms": [*load_transforms(pre), *array_transforms(pre)],
        },
    }
    if post is not None:
        # the package's calibrator, its fitted parameters and the transforms applying them
        config["calibration"] = _jsonable(post.calibration)
        config["postprocessing"] = post.config()
    config.update(
        {
            "input_file": "",
            "output_file": "$@bundle_root + '/output.npy'",
            "output_kind": output_kind,
            "predict": {
                # scripts/runtime.py (medtl.inference.bundle_runtime): MONAI puts the bundle
                # folder on sys.path before it runs the bundle
                "_target_": "scripts.runtime.run",
                "network": "@network",
                "preprocessing": "@preprocessing",
                "input_file": "@input_file",
                "output_file": "@output_file",
                "output_kind": "@output_kind",
                "postprocessing": "@postprocessing" if post is not None else None,
                "device": "@device",
            },
            "initialize": ["$@network"],
            "run": ["$@predict"],
        }
    )
    return config


def _windowed(card: Any) -> bool:
    """Whether ``medtl predict`` classifies this package's volumes by sliding windows."""
    from medtl.data.scan_input import needs_geometry

    return card.architecture.spatial_dims == 3 and not needs_geometry(card.preprocessing)


def _output_format(card: Any, output_kind: str, post: Any) -> dict[str, Any]:
    """``network_data_format.outputs.pred``: one channel per value the run step writes."""
    from medtl.inference.bundle_postprocess import class_names
    from medtl.models.registry import build_backbone

    names = class_names(card)
    n_out = int(card.architecture.num_outputs)
    pred: dict[str, Any] = {"spatial_shape": [1], "dtype": "float32", "is_patch_data": False}
    if output_kind == "embedding":
        with torch.device("meta"):  # the feature width only: no weights allocated
            width = int(build_backbone(card.architecture).feature_dim)
        pred.update(type="embedding", format="features", value_range=[], num_channels=width)
        pred["description"] = "globally average-pooled layer4 features (model.ts: embed)"
        pred["channel_def"] = {}  # feature channels have no names
        return pred
    # one output: the positive label's channel; several: one channel per class
    channels = {"0": names[1]} if n_out == 1 else dict(enumerate(names))
    channels = {str(k): v for k, v in channels.items()}
    if output_kind == "logits":
        pred.update(type="logits", format="logits", value_range=[])
        pred["description"] = "raw logits, before the package's calibration"
    else:
        pred.update(type="probabilities", format="classes", value_range=[0, 1])
        pred["description"] = post.description
    pred["num_channels"] = len(channels)
    pred["channel_def"] = channels
    return pred


def _required_versions() -> dict[str, str]:
    """The installed versions of what the bundle needs besides MONAI, PyTorch and NumPy."""
    versions = {}
    for name in _REQUIRED:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def _metadata(
    card: Any, spec: dict[str, Any], output_kind: str, provenance: dict, post: Any
) -> dict:
    import monai

    from medtl.inference.export import medtl_licence, weights_licence

    arch = card.architecture
    size = list(spec.get("spatial_size") or arch.input_size or [])
    fmt = "hounsfield" if spec.get("modality") == "ct" else "magnitude"
    licence = weights_licence(card) or medtl_licence()
    meta = {
        "schema": SCHEMA,
        "version": card.version,
        "changelog": {card.version: f"exported from medtl package {card.ref}"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": _required_versions(),
        "name": card.name,
        "task": card.target_task or card.source_task or "feature extraction",
        "description": card.intended_use or f"medtl model package {card.ref}",
        "authors": "medtl export",
        "copyright": f"see LICENSE ({licence})",
        "license": licence,
        "references": [provenance["citation"]] if provenance.get("citation") else [],
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": fmt,
                    "modality": str(spec.get("modality", "")).upper(),
                    "num_channels": int(spec.get("in_channels", arch.in_channels)),
                    "spatial_shape": size,
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_patch_data": False,
                    "channel_def": {"0": "image"},
                }
            },
            "outputs": {"pred": _output_format(card, output_kind, post)},
        },
        "domain_guard": "not applied by this bundle: medtl predict refuses out-of-domain scans",
    }
    if output_kind != "embedding" and _windowed(card):
        meta["volume_inference"] = _WINDOWS_NOTE
    if post is not None:
        meta["calibration"] = {
            "method": post.method,
            "calibrated": post.calibration is not None,
            "parameters": post.calibration,
            "applied_by": "configs/inference.json: postprocessing (output_kind probabilities)",
        }
    return meta


def export_monai_bundle(
    package: str | Path,
    out: str | Path,
    *,
    output_kind: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a package as a MONAI bundle folder.

    Args:
        package: package folder or registered ``name`` / ``name@version``.
        out: bundle folder to create.
        output_kind: what the bundle's ``run`` writes by default, one of
            :data:`OUTPUT_KINDS` (default: ``embedding`` for encoder-only packages, which have
            no target task, else ``probabilities``, the package's calibrated probabilities).
        overwrite: replace an existing ``out``.

    Returns:
        The bundle folder.

    Raises:
        medtl.models.PackageError: not a valid package. FileExistsError: ``out`` exists.
        BundleExportError: no architecture, an unknown ``output_kind``, or a calibrator the
            package's outputs cannot use.
    """
    from medtl.inference.bundle_postprocess import bundle_calibration
    from medtl.inference.export import save_torchscript
    from medtl.models.package import WEIGHTS_FILE, load_package, read_card, resolve_package
    from medtl.models.weights import read_checkpoint

    folder = resolve_package(package)
    card = read_card(folder)
    if card.architecture is None or card.preprocessing is None:
        raise BundleExportError(f"{card.ref}: the card has no architecture or preprocessing")
    if output_kind is None:
        output_kind = "probabilities" if card.target_task else "embedding"
    if output_kind not in OUTPUT_KINDS:
        raise BundleExportError(f"output_kind must be one of {', '.join(OUTPUT_KINDS)}")
    try:
        post = bundle_calibration(card) if output_kind != "embedding" else None
    except ValueError as err:
        raise BundleExportError(f"{card.ref}: {err}") from None
    dest = Path(out)
    if dest.exists() and any(dest.iterdir()) and not overwrite:
        raise FileExistsError(f"{dest} exists and is not empty (use --overwrite)")
    provenance = dict((card.training or {}).get("provenance") or {})
    state, _ = read_checkpoint(folder / WEIGHTS_FILE)
    network = _traced(load_package(folder)[0], card)
    config = _inference_config(card, output_kind, post)
    meta = _metadata(card, config["preprocessing_spec"], output_kind, provenance, post)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".bundle-", dir=dest.parent))
    try:
        _write_bundle(tmp, folder, card, config, meta, state, provenance)
        save_torchscript(network, tmp / "models" / "model.ts")
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    logger.info("exported %s as a MONAI bundle (%s)", card.ref, output_kind)
    return dest


def _traced(model: torch.nn.Module, card: Any) -> torch.jit.ScriptModule:
    """The bundle's ``models/model.ts``: ``forward`` the logits, ``embed`` the pooled features,
    traced at the package's input size and checked against the network."""
    from medtl.inference.export import ExportedNetwork, ExportError, example_input, traced_network

    try:
        return traced_network(ExportedNetwork(model.cpu(), "logits"), example_input(card))
    except ExportError as err:
        raise BundleExportError(f"{card.ref}: {err}") from None


def _write_bundle(
    tmp: Path, folder: Path, card: Any, config: dict, meta: dict, state: dict, provenance: dict
) -> None:
    """Fill the bundle folder ``tmp`` (configs, weights, scripts, docs, LICENSE)."""
    from medtl.inference import bundle_runtime
    from medtl.models.package import CARD_FILE

    for sub in ("configs", "models", "docs", "scripts"):
        (tmp / sub).mkdir()
    (tmp / "scripts" / "__init__.py").write_text("", "utf-8")
    shutil.copyfile(str(bundle_runtime.__file__), tmp / "scripts" / "runtime.py")
    (tmp / "configs" / "metadata.json").write_text(json.dumps(meta, indent=2), "utf-8")
    (tmp / "configs" / "inference.json").write_text(json.dumps(config, indent=2), "utf-8")
    torch.save(state, tmp / "models" / "model.pt")
    shutil.copyfile(folder / CARD_FILE, tmp / "docs" / CARD_FILE)
    for extra in folder.iterdir():
        if extra.suffix in (".txt", ".md") or extra.name == "provenance.json":
            shutil.copyfile(extra, tmp / "docs" / extra.name)
    (tmp / "LICENSE").write_text(_licence_text(card, folder, provenance), "utf-8")
    (tmp / "docs" / "README.md").write_text(_readme(card, meta, config), "utf-8")


def _licence_text(card: Any, folder: Path, provenance: dict) -> str:
    """The bundle's LICENSE: the weights' licence (the card's word), then medtl's."""
    from medtl.inference.export import medtl_licence, weights_licence

    medtl = medtl_licence()
    weights = weights_licence(card)
    lines = [
        f"{card.ref}: a MONAI bundle exported by medtl from the model package {card.ref}.",
        "",
        "Model weights (models/model.pt, models/model.ts) and model card (docs/model.json):",
    ]
    if weights:
        lines.append(f"  {weights}, as the package's provenance states it.")
    else:
        lines.append(f"  {medtl}: the model card states no licence of its own, so the package")
        lines.append("  is under medtl's licence.")
    lines += [
        "",
        "Bundle configs (configs/) and scripts/runtime.py, written by medtl:",
        f"  {medtl} (medtl's licence, pyproject.toml).",
    ]
    if medtl == "Apache-2.0":
        lines.append("  Full text: https://www.apache.org/licenses/LICENSE-2.0")
    notice = provenance.get("licence_file")
    if notice and (folder / str(notice)).is_file():
        text = (folder / str(notice)).read_text("utf-8", errors="replace")
        lines += ["", f"--- {notice} (the upstream weights' licence, as published) ---", "", text]
    return "\n".join(lines).rstrip() + "\n"


def _readme(card: Any, meta: dict, config: dict) -> str:
    pred = meta["network_data_format"]["outputs"]["pred"]
    kind = config["output_kind"]
    text = (
        f"# {card.name} {card.version} (MONAI bundle exported by medtl)\n\n"
        f"Output ({kind}): {pred['description']}; {pred['num_channels']} value(s), "
        f"channels {json.dumps(pred['channel_def']) if kind != 'embedding' else 'features'}.\n\n"
        "Runs with MONAI alone (medtl need not be installed): the network is TorchScript "
        "(`models/model.ts`), the scan is read and preprocessed by MONAI transforms "
        "(`configs/inference.json`: `preprocessing`), DICOM through MONAI's pydicom reader "
        "with slices sorted by position (`scripts/runtime.py`). It needs pydicom, nibabel "
        "and Pillow for the readers and `fire` for MONAI's command line: "
        '`pip install "monai[pydicom,nibabel,pillow,fire]"`. From this folder:\n\n'
        f"```\n{_RUN}\n```\n\n"
        "`out.npy` then holds the output above as float32. The inputs medtl reads and this "
        "bundle does not: colour images other than RGB, multi-frame DICOM without per-frame "
        "positions; sagittal or coronal DICOM series reach a volume classifier in (S, P, L) "
        "order rather than their acquisition order.\n"
    )
    if "postprocessing" in config:
        other = "logits" if kind == "probabilities" else "probabilities"
        text += (
            "\nWith `--output_kind probabilities` the bundle writes the package's probabilities, "
            "as `medtl predict` gives them: `configs/inference.json` keeps the fitted "
            "calibrator under `calibration` and applies it in `postprocessing` (MONAI "
            f"transforms). Add `--output_kind {other}` to write the {other} instead.\n"
        )
    if "volume_inference" in meta:
        text += f"\nVolumes: {meta['volume_inference']}.\n"
    text += (
        "\nThe bundle does not run the package's domain guard (out-of-domain scans, wrong "
        "modality): `medtl predict` refuses those, this bundle does not.\n\n"
        "Model card: docs/model.json. Licence: LICENSE.\n"
    )
    return text
