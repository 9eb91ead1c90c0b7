"""Export a medtl model package as a MONAI bundle that MONAI's bundle tools load and run.

Layout written (MONAI bundle specification)::

    DIR/LICENSE                  the weights' licence as the package states it, and medtl's
    DIR/configs/metadata.json    schema, versions, task, network_data_format, licence, refs
    DIR/configs/inference.json   network_def, preprocessing, postprocessing (the package's
                                 calibration), initialize/run sections
    DIR/models/model.pt          the state dict only (torch.save of tensors: loads with
                                 torch.load(weights_only=True))
    DIR/docs/README.md           how to run it; the package's card and licence files

The network is rebuilt by ``medtl.models.registry.build_backbone`` from the recorded
architecture, the input is read by medtl's own loader and preprocessing
(:class:`ScanPreprocessing`), and the logits go through the package's calibrator written as
MONAI transforms (:mod:`medtl.inference.bundle_postprocess`), so the bundle needs ``medtl``
installed and gives the same probabilities as :class:`~medtl.inference.Predictor`. Running it
(``pip install "medtl[bundle]"`` brings ``fire``, which MONAI's command line needs)::

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
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = [
    "OUTPUT_KINDS",
    "BundleExportError",
    "ScanPreprocessing",
    "export_monai_bundle",
    "run_inference",
]

SCHEMA = (
    "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/"
    "0.8.1/meta_schema_20220324.json"
)
#: what a bundle's ``run`` step can write
OUTPUT_KINDS = ("probabilities", "logits", "embedding")
#: medtl's own licence (pyproject.toml), used when the installed metadata does not say
_MEDTL_LICENCE = "Apache-2.0"
_RUN = (
    "python -m monai.bundle run --config_file configs/inference.json "
    "--meta_file configs/metadata.json --bundle_root . --input_file SCAN --output_file out.npy"
)

_WINDOWS_NOTE = (
    "the bundle classifies the whole volume resized to the input spatial_shape in one pass; "
    "medtl predict slides windows of that size over the volume and keeps the most suspicious "
    "window (one output) or the mean (several), so the two agree only for a volume of one "
    "window"
)


class BundleExportError(RuntimeError):
    """The package cannot be written as a MONAI bundle."""


class ScanPreprocessing:
    """A scan file -> ``(C, *spatial)`` network input, exactly as medtl's Predictor does it.

    Args:
        spec: the package's preprocessing spec (a dict, as stored in the bundle config).
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec

    def __call__(self, path: str | Path) -> torch.Tensor:
        from medtl.artifacts.preprocessing import PreprocessingSpec
        from medtl.data.scan_input import scan_to_input
        from medtl.io import load_scan

        spec = PreprocessingSpec.model_validate(self.spec)
        return scan_to_input(load_scan(path), spec)


def run_inference(
    network: torch.nn.Module,
    preprocessing: ScanPreprocessing,
    input_file: str,
    output_file: str,
    output_kind: str = "probabilities",
    layer: str = "layer4",
    postprocessing: Any = None,
) -> np.ndarray:
    """The bundle's ``run`` step: one scan in; probabilities, logits or embedding out (``.npy``).

    Args:
        network: the rebuilt backbone with the bundle's weights.
        preprocessing: the scan -> network input step.
        input_file: the scan (any file or folder ``medtl.io.load_scan`` reads).
        output_file: where to save the array (``""``: do not save).
        output_kind: one of :data:`OUTPUT_KINDS`.
        layer: the stage pooled for ``embedding``.
        postprocessing: logits ``(k,)`` -> probabilities (the config's ``postprocessing``);
            needed for ``probabilities``.

    Returns:
        The float32 array written: ``(1,)`` P(positive label) or ``(k,)`` class
        probabilities, ``(k,)`` logits, or a ``(D,)`` embedding.

    Raises:
        ValueError: no input file, an unknown ``output_kind``, or probabilities asked without
            a postprocessing step.
    """
    from medtl.inference.embed_backend import EmbedRunner

    if not input_file:
        raise ValueError("set --input_file to the scan to run on")
    if output_kind not in OUTPUT_KINDS:
        raise ValueError(f"output_kind must be one of {', '.join(OUTPUT_KINDS)}")
    if output_kind == "probabilities" and postprocessing is None:
        raise ValueError("output_kind probabilities needs the config's postprocessing")
    x = preprocessing(input_file)[None]
    network.eval()
    if output_kind == "embedding":  # the same backend as Predictor.embed, the same numbers
        out = EmbedRunner(network, layer)(x)[0]
    else:
        with torch.inference_mode():
            out = network(x)[0]
        if output_kind == "probabilities":
            out = torch.as_tensor(postprocessing(out))
    array = np.asarray(out.detach().cpu().numpy(), dtype=np.float32)
    if output_file:
        np.save(output_file, array)
    return array


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
    arch = card.architecture.model_dump(mode="json")
    pre = card.preprocessing
    spec = pre.model_dump(mode="json") if hasattr(pre, "model_dump") else dict(pre or {})
    config: dict[str, Any] = {
        "imports": [
            "$import numpy",
            "$import torch",
            "$from medtl.inference.bundle_export import run_inference",
        ],
        "bundle_root": ".",
        "device": "$torch.device('cpu')",
        "architecture": _jsonable(arch),
        "preprocessing_spec": _jsonable(spec),
        "network_def": {
            "_target_": "medtl.models.registry.build_backbone",
            "config": "@architecture",
        },
        "network": "$@network_def.to(@device).eval()",
        "checkpoint": "$@bundle_root + '/models/model.pt'",
        "load_weights": (
            "$@network.load_state_dict(torch.load(@checkpoint, map_location=@device, "
            "weights_only=True))"
        ),
        "preprocessing": {
            "_target_": "medtl.inference.bundle_export.ScanPreprocessing",
            "spec": "@preprocessing_spec",
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
            "layer": "layer4",
            "predict": (
                "$run_inference(@network, @preprocessing, @input_file, @output_file, "
                "@output_kind, @layer, " + ("@postprocessing)" if post is not None else "None)")
            ),
            "initialize": ["$@load_weights"],
            "run": ["$@predict"],
        }
    )
    return config


def _windowed(card: Any) -> bool:
    """Whether ``medtl predict`` classifies this package's volumes by sliding windows."""
    from medtl.data.scan_input import needs_geometry

    return card.architecture.spatial_dims == 3 and not needs_geometry(card.preprocessing)


def _medtl_licence() -> str:
    """medtl's licence as its installed metadata states it (pyproject.toml's)."""
    from importlib import metadata

    try:
        meta = metadata.metadata("medtl")
    except metadata.PackageNotFoundError:
        return _MEDTL_LICENCE
    return meta.get("License-Expression") or meta.get("License") or _MEDTL_LICENCE


def _weights_licence(provenance: dict) -> str | None:
    """The weights' licence as the card states it (its provenance), if it does."""
    licence = provenance.get("licence") or provenance.get("license")
    return str(licence) if licence else None


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
        pred["description"] = "globally average-pooled layer4 features (--layer changes it)"
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


def _metadata(
    card: Any, spec: dict[str, Any], output_kind: str, provenance: dict, post: Any
) -> dict:
    import monai

    from medtl.models.package import software_versions

    arch = card.architecture
    size = list(spec.get("spatial_size") or arch.input_size or [])
    fmt = "hounsfield" if spec.get("modality") == "ct" else "magnitude"
    licence = _weights_licence(provenance) or _medtl_licence()
    meta = {
        "schema": SCHEMA,
        "version": card.version,
        "changelog": {card.version: f"exported from medtl package {card.ref}"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": {"medtl": software_versions().get("medtl", "")},
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
    from medtl.models.package import WEIGHTS_FILE, read_card, resolve_package
    from medtl.models.weights import read_checkpoint

    folder = resolve_package(package)
    card = read_card(folder)
    if card.architecture is None:
        raise BundleExportError(f"{card.ref}: the card has no architecture")
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
    config = _inference_config(card, output_kind, post)
    meta = _metadata(card, config["preprocessing_spec"], output_kind, provenance, post)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".bundle-", dir=dest.parent))
    try:
        _write_bundle(tmp, folder, card, config, meta, state, provenance)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    logger.info("exported %s as a MONAI bundle (%s)", card.ref, output_kind)
    return dest


def _write_bundle(
    tmp: Path, folder: Path, card: Any, config: dict, meta: dict, state: dict, provenance: dict
) -> None:
    """Fill the bundle folder ``tmp`` (configs, weights, docs, LICENSE)."""
    from medtl.models.package import CARD_FILE

    for sub in ("configs", "models", "docs"):
        (tmp / sub).mkdir()
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
    medtl = _medtl_licence()
    weights = _weights_licence(provenance)
    lines = [
        f"{card.ref}: a MONAI bundle exported by medtl from the model package {card.ref}.",
        "",
        "Model weights (models/model.pt) and model card (docs/model.json):",
    ]
    if weights:
        lines.append(f"  {weights}, as the package's provenance states it.")
    else:
        lines.append(f"  {medtl}: the model card states no licence of its own, so the package")
        lines.append("  is under medtl's licence.")
    lines += [
        "",
        "Bundle configs (configs/) and the medtl code they run (pip install medtl):",
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
        "Needs medtl (the network, the scan reader and the preprocessing are medtl's) and "
        '`fire` for MONAI\'s command line: `pip install "medtl[bundle]"` (in a medtl checkout: '
        '`pip install -e ".[bundle]"`). From this folder:\n\n'
        f"```\n{_RUN}\n```\n\n"
        "`out.npy` then holds the output above as float32.\n"
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
