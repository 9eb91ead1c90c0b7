"""Export a medtl model package as a MONAI bundle that MONAI's bundle tools load and run.

Layout written (MONAI bundle specification)::

    DIR/configs/metadata.json    schema, versions, task, network_data_format, licence, refs
    DIR/configs/inference.json   network_def, preprocessing, inferer, initialize/run sections
    DIR/models/model.pt          the state dict only (torch.save of tensors: loads with
                                 torch.load(weights_only=True))
    DIR/docs/README.md           how to run it; the package's card and licence files

The network is rebuilt by ``medtl.models.registry.build_backbone`` from the recorded
architecture, and the input is read by medtl's own loader and preprocessing
(:class:`ScanPreprocessing`), so the bundle needs ``medtl`` installed and gives the same
numbers as :class:`~medtl.inference.Predictor`. Running it::

    python -m monai.bundle run --config_file DIR/configs/inference.json \\
        --meta_file DIR/configs/metadata.json --bundle_root DIR \\
        --input_file scan.nii.gz --output_file out.npy

(MONAI's command line needs the ``fire`` package; ``monai.bundle.run(config_file=...,
meta_file=..., bundle_root=..., input_file=..., output_file=...)`` is the same runner) writes
the logits (``output_kind: logits``) or the pooled embedding (``embedding``, the
default for encoder-only packages such as ``astra-ct``) as ``.npy``.
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

__all__ = ["BundleExportError", "ScanPreprocessing", "export_monai_bundle", "run_inference"]

SCHEMA = (
    "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/"
    "0.8.1/meta_schema_20220324.json"
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
    output_kind: str = "logits",
    layer: str = "layer4",
) -> np.ndarray:
    """The bundle's ``run`` step: one scan in, logits or embedding out (``.npy``).

    Returns:
        The array written (``(num_outputs,)`` logits or ``(D,)`` embedding).
    """
    from medtl.inference.embed_backend import EmbedRunner

    if not input_file:
        raise ValueError("set --input_file to the scan to run on")
    x = preprocessing(input_file)[None]
    network.eval()
    if output_kind == "embedding":  # the same backend as Predictor.embed, the same numbers
        out = EmbedRunner(network, layer)(x)
    else:
        with torch.inference_mode():
            out = network(x)
    array = out[0].float().cpu().numpy()
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


def _inference_config(card: Any, output_kind: str) -> dict[str, Any]:
    arch = card.architecture.model_dump(mode="json")
    pre = card.preprocessing
    spec = pre.model_dump(mode="json") if hasattr(pre, "model_dump") else dict(pre or {})
    return {
        "imports": ["$import torch", "$from medtl.inference.bundle_export import run_inference"],
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
        "input_file": "",
        "output_file": "$@bundle_root + '/output.npy'",
        "output_kind": output_kind,
        "layer": "layer4",
        "predict": (
            "$run_inference(@network, @preprocessing, "
            "@input_file, @output_file, @output_kind, @layer)"
        ),
        "initialize": ["$@load_weights"],
        "run": ["$@predict"],
    }


def _metadata(card: Any, spec: dict[str, Any], output_kind: str, provenance: dict) -> dict:
    import monai

    from medtl.models.package import software_versions

    arch = card.architecture
    size = list(spec.get("spatial_size") or arch.input_size or [])
    fmt = "hounsfield" if spec.get("modality") == "ct" else "magnitude"
    n_out = int(arch.num_outputs) if output_kind == "logits" else None
    return {
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
        "copyright": provenance.get("licence", "see docs/"),
        "license": provenance.get("licence", "see docs/"),
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
            "outputs": {
                "pred": {
                    "type": "probabilities" if output_kind == "logits" else "embedding",
                    "format": "logits" if output_kind == "logits" else "features",
                    "num_channels": n_out or "stage channels",
                    "spatial_shape": [1],
                    "dtype": "float32",
                    "value_range": [],
                    "is_patch_data": False,
                    "channel_def": {str(i): n for i, n in enumerate(card.labels or [])},
                }
            },
        },
    }


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
        output_kind: ``logits`` or ``embedding`` (default: ``embedding`` for encoder-only
            packages, which have no target task, else ``logits``).
        overwrite: replace an existing ``out``.

    Returns:
        The bundle folder.

    Raises:
        medtl.models.PackageError: not a valid package. FileExistsError: ``out`` exists.
    """
    from medtl.models.package import CARD_FILE, WEIGHTS_FILE, read_card, resolve_package
    from medtl.models.weights import read_checkpoint

    folder = resolve_package(package)
    card = read_card(folder)
    if card.architecture is None:
        raise BundleExportError(f"{card.ref}: the card has no architecture")
    if output_kind is None:
        output_kind = "logits" if card.target_task else "embedding"
    if output_kind not in ("logits", "embedding"):
        raise BundleExportError("output_kind must be 'logits' or 'embedding'")
    dest = Path(out)
    if dest.exists() and any(dest.iterdir()) and not overwrite:
        raise FileExistsError(f"{dest} exists and is not empty (use --overwrite)")
    provenance = dict((card.training or {}).get("provenance") or {})
    state, _ = read_checkpoint(folder / WEIGHTS_FILE)
    config = _inference_config(card, output_kind)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".bundle-", dir=dest.parent))
    try:
        for sub in ("configs", "models", "docs"):
            (tmp / sub).mkdir()
        meta = _metadata(card, config["preprocessing_spec"], output_kind, provenance)
        (tmp / "configs" / "metadata.json").write_text(json.dumps(meta, indent=2), "utf-8")
        (tmp / "configs" / "inference.json").write_text(json.dumps(config, indent=2), "utf-8")
        torch.save(state, tmp / "models" / "model.pt")
        shutil.copyfile(folder / CARD_FILE, tmp / "docs" / CARD_FILE)
        for extra in folder.iterdir():
            if extra.suffix in (".txt", ".md") or extra.name == "provenance.json":
                shutil.copyfile(extra, tmp / "docs" / extra.name)
        (tmp / "docs" / "README.md").write_text(_readme(card, output_kind), "utf-8")
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    logger.info("exported %s as a MONAI bundle (%s)", card.ref, output_kind)
    return dest


def _readme(card: Any, output_kind: str) -> str:
    return (
        f"# {card.name} {card.version} (MONAI bundle exported by medtl)\n\n"
        f"Output: {output_kind}. Needs `medtl` installed (the network and the preprocessing are "
        "medtl's).\n\n```\npython -m monai.bundle run --config_file configs/inference.json "
        "--meta_file configs/metadata.json --bundle_root . --input_file SCAN "
        "--output_file out.npy\n```\n\nModel card: docs/model.json.\n"
    )
