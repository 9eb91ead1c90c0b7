"""Import pretrained weights from local files into a medtl backbone.

Formats (``format=`` of :func:`import_weights`; ``"auto"`` sniffs it):

- ``native``: medtl's own state dict (keys ``encoder.*``/``head.*``), as safetensors or
  a plain ``torch.save`` state dict; also a model package folder.
- ``medicalnet``: MedicalNet 3D ResNets, ``{"state_dict": {"module.conv1.weight", ...}}``
  with an optional ``conv_seg`` segmentation head (ignored). The shortcut type (A: no
  downsample parameters, B: 1x1 conv + BN) and the depth must match the model; MedicalNet
  used stride 1 with dilation 2/4 in layer3/4, which a backbone created with
  ``options={"medicalnet": True}`` reproduces (a warning otherwise).
- ``monai_bundle``: a MONAI bundle folder (``configs/metadata.json``,
  ``models/model.pt`` or ``models/model.safetensors``); metadata and the network
  definition (``configs/inference.json|yaml`` or ``train.json|yaml``) are read for the report
  and compatibility warnings.
- ``monai``: a MONAI network state dict (ResNet, DenseNet121, EfficientNetBN layouts).
- ``torchvision`` / ``timm``: ImageNet ResNet/DenseNet checkpoints (2D) in torchvision
  layout (timm's ResNet and DenseNet keys are the same), including DenseNet's old
  ``norm.1``-style keys. RGB first convolutions are summed to grey for 1-channel models;
  ``inflate=True`` inflates 2D kernels for a 3D model (I3D).
- ``torchxrayvision``: torchxrayvision DenseNet-121 (1 channel, ``classifier`` with 18
  outputs, ``op_threshs`` ignored).
- ``efficientnet_pytorch``: ImageNet EfficientNet-B0 in lukemelas/EfficientNet-PyTorch
  layout (flat ``_blocks.<n>``), the weights MONAI's own ``pretrained=True`` uses.
- ``merlin``: Merlin-family inflated 3D ResNet-152 image encoders (Merlin, Astra), e.g.
  ``{"state_dict": {"conv1.weight" (64, 3, 3, 7, 7), "layer3.35...."}, "meta": {...}}`` in
  bf16; for the ``i3resnet152`` backbone (see :mod:`medtl.models.foundation`).

Every import returns a :class:`~medtl.models.weights.LoadReport` and fails with
:class:`~medtl.models.weights.WeightImportError` when less than ``min_loaded`` of the
backbone's parameters load.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import torch
import yaml

from medtl.models.backbones import Backbone
from medtl.models.checkpoints import first_keys, unwrap_prefixes
from medtl.models.weights import (
    LoadReport,
    WeightImportError,
    load_mapped_weights,
    read_checkpoint,
    strip_common_prefix,
)

logger = logging.getLogger(__name__)

FORMATS = (
    "auto",
    "native",
    "medicalnet",
    "monai_bundle",
    "monai",
    "torchvision",
    "timm",
    "torchxrayvision",
    "efficientnet_pytorch",
    "merlin",
)

Mapped = list[tuple[str, str, torch.Tensor]]

_RESNET_PREFIXES = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")
_EFFNET_PREFIXES = ("_conv_stem.", "_bn0.", "_blocks.", "_conv_head.", "_bn1.")
# torchvision's current (norm1) and old (norm.1) dense-layer keys, and MONAI's (layers.norm1)
_DENSELAYER = re.compile(
    r"^(features\.denseblock\d+\.denselayer\d+)\.(?:layers\.)?(norm|relu|conv)\.?([12])\.(\w+)$"
)
_HEAD_KEYS = {"fc.", "classifier.", "class_layers.out.", "_fc."}


def detect_layout(keys: list[str] | set[str]) -> str:
    """Name the key layout of a state dict.

    Args:
        keys: state-dict keys (wrapper prefixes already stripped).

    Returns:
        ``native``, ``resnet``, ``densenet``, ``efficientnet`` or ``unknown``.
    """
    keys = set(keys)
    if any(k.startswith("encoder.") for k in keys):
        return "native"
    if "conv1.weight" in keys and any(k.startswith("layer1.") for k in keys):
        return "resnet"
    if "features.conv0.weight" in keys:
        return "densenet"
    if "_conv_stem.weight" in keys:
        return "efficientnet"
    return "unknown"


_FLAT_BLOCK = re.compile(r"^_blocks\.(\d+)\.(_.+)$")
_KNOWN = "medtl, torchvision/timm, MONAI, MedicalNet or torchxrayvision keys"


def _read_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """:func:`read_checkpoint`, then strip training prefixes (Lightning ``model.``, ...)."""
    state, info = read_checkpoint(path)
    state, stripped, left_out = unwrap_prefixes(state, lambda k: detect_layout(k) != "unknown")
    if stripped:
        info["stripped_prefix"] = (info.get("stripped_prefix") or "") + stripped
        info["dropped"] = [*info.get("dropped", []), *left_out]
        logger.info("%s: keys under %r", path.name, stripped)
    return state, info


def _unrecognised(source: str, state: dict[str, torch.Tensor]) -> WeightImportError:
    return WeightImportError(
        f"{source}: unrecognised key layout; expected {_KNOWN} (e.g. conv1.weight + "
        f"layer1.*, features.conv0.weight); the file's first keys are: {first_keys(state)}"
    )


def _efficientnet_stack_of(model: Backbone) -> dict[int, int]:
    """Global MBConv block index -> stack index in MONAI's ``_blocks.<stack>.<global>``."""
    table = {}
    for stack_idx, stack in enumerate(model.encoder._blocks):
        for name in stack._modules:
            table[int(name)] = stack_idx
    return table


def _map_family(state: dict[str, torch.Tensor], model: Backbone) -> tuple[Mapped, list[str]]:
    """Map a torchvision/timm/MONAI/MedicalNet/efficientnet_pytorch state dict to medtl keys."""
    family = "resnet" if model.family == "i3resnet" else model.family
    mapped: Mapped = []
    unexpected: list[str] = []
    stack_of = _efficientnet_stack_of(model) if family == "efficientnet" else {}
    for key, tensor in state.items():
        head = next((p for p in _HEAD_KEYS if key.startswith(p)), None)
        if head is not None and key.count(".") == head.count("."):
            mapped.append((key, "head.fc." + key[len(head) :], tensor))
            continue
        dst = None
        if family == "resnet" and key.startswith(_RESNET_PREFIXES):
            dst = "encoder." + key
        elif family == "densenet" and key.startswith("features."):
            m = _DENSELAYER.match(key)
            if m:
                dst = f"encoder.{m.group(1)}.layers.{m.group(2)}{m.group(3)}.{m.group(4)}"
            else:
                dst = "encoder." + key
        elif family == "efficientnet" and key.startswith(_EFFNET_PREFIXES):
            flat = _FLAT_BLOCK.match(key)  # efficientnet_pytorch: _blocks.<global index>
            if flat and int(flat.group(1)) in stack_of:
                block = int(flat.group(1))
                dst = f"encoder._blocks.{stack_of[block]}.{block}.{flat.group(2)}"
            elif not flat:
                dst = "encoder." + key
        if dst is None:
            unexpected.append(key)
        else:
            mapped.append((key, dst, tensor))
    return mapped, unexpected


def _is_merlin_stem(state: dict[str, torch.Tensor]) -> bool:
    """Merlin's inflated stem: a 5D conv1 with a 3x7x7 kernel (MedicalNet's is 7x7x7)."""
    conv1 = state.get("conv1.weight")
    return conv1 is not None and conv1.ndim == 5 and tuple(conv1.shape[2:]) == (3, 7, 7)


def describe_layout(state: dict[str, torch.Tensor], format: str | None = None) -> str:
    """A human description of a state dict's layout, for error messages and reports.

    Args:
        state: the state dict (wrapper prefixes stripped).
        format: the sniffed or requested import format, if known.

    Returns:
        e.g. ``"Merlin I3ResNet (bottleneck blocks [3, 8, 36, 3], conv1 3x7x7)"``.
    """
    layout = detect_layout(state)
    if layout != "resnet":
        return {"native": "medtl native"}.get(layout, layout) + (
            f" ({format})" if format and format not in (layout, "native") else ""
        )
    counts, block, shortcut = _resnet_structure(state)
    kernel = "x".join(str(k) for k in state["conv1.weight"].shape[2:])
    what = f"{block} blocks {counts}, shortcut {shortcut}, conv1 {kernel}"
    if _is_merlin_stem(state):
        return f"Merlin I3ResNet ({what})"
    if format == "medicalnet" or (state["conv1.weight"].ndim == 5 and format != "monai"):
        return f"MedicalNet 3D ResNet ({what})"
    return f"{'2D' if state['conv1.weight'].ndim == 4 else '3D'} ResNet ({what})"


def _check_family(
    model: Backbone, layout: str, source: str, state: dict[str, torch.Tensor]
) -> None:
    if model.family == "i3resnet" and layout == "resnet":
        return  # the layout is checked by _check_i3resnet
    if layout == "unknown":
        raise _unrecognised(source, state)
    if layout != model.family:
        raise WeightImportError(
            f"{source}: the checkpoint is a {layout} but the model is a {model.family} "
            f"({model.config.name}); create a matching backbone"
        )


def sniff_format(path: str | Path) -> str:
    """Guess the import format of a file or folder.

    Args:
        path: checkpoint file, MONAI bundle folder, or model package folder.

    Returns:
        One of :data:`FORMATS` other than ``auto``.

    Raises:
        WeightImportError: unreadable or unrecognised.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "configs" / "metadata.json").is_file():
            return "monai_bundle"
        if (path / "weights.safetensors").is_file():
            return "native"
        raise WeightImportError(
            f"{path.name}: folder is neither a MONAI bundle (configs/metadata.json) nor a "
            "medtl model package (weights.safetensors)"
        )
    state, info = _read_state(path)
    return _sniff_state(state, info, path.name)


def _sniff_state(state: dict[str, torch.Tensor], info: dict[str, Any], source: str) -> str:
    keys = set(state)
    if "op_threshs" in keys:
        return "torchxrayvision"
    layout = detect_layout(keys)
    if layout == "native":
        return "native"
    if layout == "resnet" and _is_merlin_stem(state):
        return "merlin"
    if layout == "resnet":
        # MedicalNet saves {"state_dict": {"module.conv1.weight", ...}} from DataParallel
        is_3d = state["conv1.weight"].ndim == 5
        medicalnet = any(k.startswith("conv_seg.") for k in keys) or (
            is_3d and info.get("wrapper") == "state_dict"
        )
        if medicalnet:
            return "medicalnet"
        return "torchvision" if state["conv1.weight"].ndim == 4 else "monai"
    if layout == "densenet":
        monai_keys = any(".layers." in k or k.startswith("class_layers.") for k in keys)
        if monai_keys or state["features.conv0.weight"].ndim != 4:
            return "monai"
        return "torchvision"
    if layout == "efficientnet":
        if any(_FLAT_BLOCK.match(k) for k in keys):
            return "efficientnet_pytorch"
        return "monai"
    raise _unrecognised(source, state)


def _resnet_structure(state: dict[str, torch.Tensor]) -> tuple[list[int], str, str]:
    """Return (blocks per layer, block type, shortcut type) of a ResNet-layout state dict."""
    counts = []
    for layer in range(1, 5):
        idx = {int(m.group(1)) for k in state if (m := re.match(rf"layer{layer}\.(\d+)\.", k))}
        counts.append(max(idx) + 1 if idx else 0)
    block = "bottleneck" if any(".conv3." in k for k in state) else "basic"
    has_conv_shortcut = any(re.match(r"layer\d\.0\.downsample\.0\.weight$", k) for k in state)
    shortcut = "B" if has_conv_shortcut else "A"
    return counts, block, shortcut


def _medicalnet_checks(model: Backbone, state: dict[str, torch.Tensor], source: str) -> list[str]:
    from medtl.models.resnet import RESNET_LAYOUTS

    if model.family != "resnet":
        raise WeightImportError(f"{source}: MedicalNet weights need a resnet backbone")
    if state["conv1.weight"].ndim != 5 or model.config.spatial_dims != 3:
        raise WeightImportError(
            f"{source}: MedicalNet checkpoints are 3D; create the backbone with spatial_dims=3"
        )
    counts, block, shortcut = _resnet_structure(state)
    want_block, want_counts = RESNET_LAYOUTS[model.depth]
    if counts != want_counts or block != want_block:
        depth = next(
            (d for d, (b, c) in RESNET_LAYOUTS.items() if c == counts and b == block), None
        )
        what = f"ResNet-{depth}" if depth else f"a ResNet with {block} blocks {counts}"
        raise WeightImportError(
            f"{source}: the checkpoint is {what}; the model is {model.config.name}"
        )
    if shortcut != model.geometry["shortcut_type"]:
        raise WeightImportError(
            f"{source}: the checkpoint uses shortcut type {shortcut} "
            f"({'1x1 conv + BN' if shortcut == 'B' else 'parameter-free zero padding'}) but the "
            f"model uses {model.geometry['shortcut_type']}; create it with "
            f"options={{'medicalnet': True}} or shortcut_type='{shortcut}'"
        )
    warnings = []
    if not model.geometry["medicalnet"]:
        warnings.append(
            "MedicalNet used stride 1 with dilation 2/4 in layer3/layer4; this model uses "
            "stride 2 without dilation, so the weights load but see a different receptive "
            "field; create the backbone with options={'medicalnet': True} to match"
        )
    return warnings


def _check_i3resnet(
    model: Backbone, state: dict[str, torch.Tensor], format: str, source: str
) -> None:
    """Merlin-family weights go only into ``i3resnet152``, and it takes nothing else."""
    if format == "merlin" and model.family != "i3resnet":
        raise WeightImportError(
            f"{source}: the checkpoint is a {describe_layout(state, format)}; the model is "
            f"{model.config.name}; create an i3resnet152 backbone"
        )
    if model.family == "i3resnet" and format != "merlin":
        raise WeightImportError(
            f"{source}: the checkpoint is a {describe_layout(state, format)} ({format} "
            "format); i3resnet152 takes Merlin-family I3ResNet weights (conv1 3x7x7) or a "
            "medtl package"
        )


def _read_bundle(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """Read a MONAI bundle's weights (weights only) and metadata."""
    meta: dict[str, Any] = {}
    try:
        metadata = json.loads((path / "configs" / "metadata.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise WeightImportError(f"{path.name}: unreadable configs/metadata.json ({err})") from err
    for key in ("name", "version", "task", "monai_version", "network_data_format"):
        if key in metadata:
            meta[key] = metadata[key]
    for name in ("inference.json", "inference.yaml", "train.json", "train.yaml"):
        cfg_path = path / "configs" / name
        if not cfg_path.is_file():
            continue
        try:
            text = cfg_path.read_text(encoding="utf-8")
            cfg = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
        except (OSError, json.JSONDecodeError, yaml.YAMLError):
            logger.warning("%s: could not parse configs/%s", path.name, name)
            continue
        if isinstance(cfg, dict) and isinstance(cfg.get("network_def"), dict):
            meta["network_def"] = cfg["network_def"]
            break
    for name in ("model.safetensors", "model.pt", "model.pth"):
        weights = path / "models" / name
        if weights.is_file():
            state, info = _read_state(weights)
            meta["weights_file"] = f"models/{name}"
            meta["checkpoint"] = info
            return state, meta, info
    raise WeightImportError(
        f"{path.name}: no models/model.pt or models/model.safetensors in the bundle "
        "(TorchScript models/model.ts is not read)"
    )


def _bundle_warnings(model: Backbone, meta: dict[str, Any]) -> list[str]:
    warnings = []
    net = meta.get("network_def") or {}
    target = str(net.get("_target_", "")).rsplit(".", 1)[-1].lower()
    if target and model.family not in target:
        warnings.append(f"bundle network is {net.get('_target_')}, model is {model.config.name}")
    for key, ours in (
        ("spatial_dims", model.config.spatial_dims),
        ("in_channels", model.config.in_channels),
        ("n_input_channels", model.config.in_channels),
    ):
        if key in net and isinstance(net[key], int) and net[key] != ours:
            warnings.append(f"bundle network {key}={net[key]}, model has {ours}")
    return warnings


def _saved_config(info: dict[str, Any]) -> dict[str, Any] | None:
    """The backbone config medtl stored in a safetensors header, if any."""
    raw = (info.get("metadata") or {}).get("medtl_config")
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def import_weights(
    model: Backbone,
    path: str | Path,
    format: str = "auto",
    min_loaded: float = 0.9,
    *,
    inflate: bool = False,
    load_head: bool = True,
) -> LoadReport:
    """Import local pretrained weights into ``model`` and report what loaded.

    Args:
        model: a backbone from :func:`medtl.models.create_backbone`.
        path: checkpoint file, MONAI bundle folder, or model package folder.
        format: one of :data:`FORMATS`; ``"auto"`` sniffs it.
        min_loaded: minimum fraction (0..1) of backbone (non-head) parameter elements that
            must load, else :class:`WeightImportError` and the model is unchanged.
        inflate: inflate 2D kernels into a 3D model (I3D).
        load_head: also load the source classifier when its shape fits the model's head.

    Returns:
        The :class:`LoadReport` (also logged).

    Raises:
        WeightImportError: unreadable, incompatible, or too little loaded.

    Example:
        >>> model = create_backbone("densenet121", spatial_dims=2, in_channels=1)
        >>> report = import_weights(model, "densenet121-a639ec97.pth")  # doctest: +SKIP
        >>> report.loaded_fraction  # doctest: +SKIP
        1.0
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; choose from {', '.join(FORMATS)}")
    path = Path(path)
    if not path.exists():
        raise WeightImportError(f"weights not found: {path.name}")
    source = path.name
    meta: dict[str, Any] = {}
    if format == "auto" and path.is_dir():
        format = sniff_format(path)  # looks at the folder's files only
    if format == "monai_bundle":
        if not path.is_dir():
            raise WeightImportError(f"{source}: a MONAI bundle is a folder")
        state, meta, info = _read_bundle(path)
    else:
        file = path / "weights.safetensors" if path.is_dir() else path
        state, info = _read_state(file)
        meta["checkpoint"] = info
    if format == "auto":
        format = _sniff_state(state, info, source)
        logger.info("%s: detected format %s", source, format)
    warnings: list[str] = []
    ignored: list[str] = []
    # a bundle medtl exported (medtl models export) holds a native state dict
    if format == "native" or (format == "monai_bundle" and detect_layout(state) == "native"):
        state, _ = strip_common_prefix(state, ("module.",))
        if detect_layout(state) != "native":
            raise WeightImportError(
                f"{source}: not a medtl state dict (no encoder.* keys); the file's first "
                f"keys are: {first_keys(state)}"
            )
        saved = _saved_config(info)
        if saved is not None and saved.get("name") != model.config.name:
            raise WeightImportError(
                f"{source}: the weights are for a {saved.get('name')} backbone, the model is "
                f"{model.config.name}; create a {saved.get('name')} backbone"
            )
        mapped: Mapped = [(k, k, v) for k, v in state.items()]
        unexpected: list[str] = []
    else:
        if format == "torchxrayvision":
            ignored = [k for k in state if k == "op_threshs"]
            state = {k: v for k, v in state.items() if k not in ignored}
            meta["preprocessing"] = {
                "note": "torchxrayvision models expect 224 px images scaled to [-1024, 1024]"
            }
        if format == "medicalnet":
            ignored = [k for k in state if k.startswith("conv_seg.")]
            state = {k: v for k, v in state.items() if k not in ignored}
        layout = detect_layout(state)
        _check_family(model, layout, source, state)
        _check_i3resnet(model, state, format, source)
        if format == "medicalnet":
            warnings += _medicalnet_checks(model, state, source)
        if format == "monai_bundle":
            warnings += _bundle_warnings(model, meta)
        if (
            format in ("torchvision", "timm")
            and model.family == "resnet"
            and model.geometry["shortcut_type"] != "B"
        ):
            warnings.append("ImageNet ResNets use shortcut type B; the model uses A")
        mapped, unexpected = _map_family(state, model)
    meta["layout"] = describe_layout(state, format)
    try:
        return load_mapped_weights(
            model,
            mapped,
            source=source,
            format=format,
            unexpected=unexpected,
            ignored=ignored,
            warnings=warnings,
            meta=meta,
            min_loaded=min_loaded,
            inflate=inflate,
            load_head=load_head,
        )
    except WeightImportError as err:
        raise WeightImportError(
            f"{source}: detected layout {meta['layout']}; {err}", err.report
        ) from err
