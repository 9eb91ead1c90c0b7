"""Reading checkpoints safely and loading them into a backbone with a load report.

Silent partial loads are the most reported pain with pretrained medical networks, so
every load goes through :func:`load_mapped_weights`, which

1. places each source tensor at its destination key (given by an importer's key map),
2. adapts what can be adapted (first-conv input channels, optional 2D -> 3D inflation),
3. computes the fraction of backbone (non-head) parameter *elements* that loaded,
4. raises :class:`WeightImportError` (model untouched) when it is below ``min_loaded``,
5. otherwise copies the tensors in and returns a :class:`LoadReport` (also logged).

Files are read with ``safetensors`` or ``torch.load(..., weights_only=True)``; nothing
else is ever unpickled.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from medtl.models.backbones import HEAD_PREFIX
from medtl.models.checkpoints import (
    first_keys,
    not_weights_message,
    pickle_refusal,
    sniff_container,
    torch_error_reason,
)

logger = logging.getLogger(__name__)

#: wrapper keys under which training scripts nest the state dict, in lookup order
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "network", "net", "weights")
#: prefixes added by DataParallel/DDP and torch.compile, stripped when every key has one
STRIP_PREFIXES = ("module.", "_orig_mod.")


class WeightImportError(RuntimeError):
    """Weights could not be imported (unreadable file, or too little of the backbone loaded).

    Attributes:
        report: the :class:`LoadReport` when the failure is a too-small load, else ``None``.
    """

    def __init__(self, message: str, report: LoadReport | None = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class LoadReport:
    """What a weight import did.

    Attributes:
        source: file or folder name the weights came from.
        format: the import format used (``native``, ``medicalnet``, ...).
        loaded: destination keys that received a tensor.
        missing: destination keys left as they were (``num_batches_tracked`` excluded).
        unexpected: source keys with no destination.
        mismatched: ``[dest key, source shape, dest shape]`` for tensors that did not fit.
        adapted: ``{dest key: what was done}`` (channel adaptation, inflation).
        skipped_head: source head keys not loaded (head disabled or shape differs).
        ignored: source keys dropped on purpose (e.g. torchxrayvision ``op_threshs``).
        backbone_params_total: elements in the backbone's (non-head) parameters.
        backbone_params_loaded: of those, elements that loaded.
        warnings: geometry or compatibility warnings.
        meta: format-specific information (e.g. MONAI bundle metadata).
    """

    source: str
    format: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, list[int], list[int]]] = field(default_factory=list)
    adapted: dict[str, str] = field(default_factory=dict)
    skipped_head: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    backbone_params_total: int = 0
    backbone_params_loaded: int = 0
    warnings: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def loaded_fraction(self) -> float:
        """Fraction of backbone parameter elements loaded (0..1)."""
        if self.backbone_params_total == 0:
            return 0.0
        return self.backbone_params_loaded / self.backbone_params_total

    def summary(self) -> str:
        """One paragraph for logs and the CLI."""

        def few(keys: list[str]) -> str:
            shown = ", ".join(keys[:4])
            return f" ({shown}{', ...' if len(keys) > 4 else ''})" if keys else ""

        parts = [
            f"{self.source} [{self.format}]: loaded {len(self.loaded)} tensors, "
            f"{100 * self.loaded_fraction:.1f}% of backbone parameters",
            f"missing {len(self.missing)}{few(self.missing)}",
            f"unexpected {len(self.unexpected)}{few(self.unexpected)}",
            f"shape-mismatched {len(self.mismatched)}{few([m[0] for m in self.mismatched])}",
        ]
        if self.adapted:
            parts.append("adapted " + "; ".join(f"{k}: {v}" for k, v in self.adapted.items()))
        if self.skipped_head:
            parts.append(f"head not loaded{few(self.skipped_head)}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (with ``loaded_fraction``)."""
        data = asdict(self)
        data["loaded_fraction"] = self.loaded_fraction
        return data


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint file into a flat ``{key: tensor}`` dict, safely.

    The container is sniffed first (:func:`medtl.models.checkpoints.sniff_container`):
    safetensors files are read with ``safetensors``, ``torch.save`` files with
    ``torch.load(weights_only=True)``; a plain pickle, a text file or any other file is
    refused with a plain message before anything unpickles it. Nested state dicts
    (``{"state_dict": ...}``, ``{"model": {"state_dict": ...}}``) are unwrapped, non-tensor
    entries dropped, and a ``module.`` / ``_orig_mod.`` prefix shared by every key is
    stripped.

    Args:
        path: the file.

    Returns:
        ``(state_dict, info)`` where ``info`` records ``container`` (``safetensors`` or
        ``torch``), ``wrapper`` (the unwrapped key or ``None``), ``stripped_prefix``,
        ``dropped`` (non-tensor entries) and, for safetensors, the header ``metadata``.

    Raises:
        WeightImportError: not a checkpoint, unreadable, or holding Python objects that
            only unpickling could read.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightImportError(f"weights file not found: {path.name}")
    info: dict[str, Any] = {"wrapper": None, "stripped_prefix": None, "dropped": []}
    container = sniff_container(path)
    if container == "pickle":
        raise WeightImportError(pickle_refusal(path.name))
    if container not in ("safetensors", "torch", "torch-legacy"):
        raise WeightImportError(not_weights_message(path.name, container))
    if container == "safetensors":
        info["container"] = "safetensors"
        try:
            obj: Any = load_file(str(path), device="cpu")
            with safe_open(str(path), framework="pt") as fh:
                info["metadata"] = dict(fh.metadata() or {})
        except Exception as err:
            raise WeightImportError(f"{path.name}: unreadable safetensors file ({err})") from err
    else:
        info["container"] = "torch"
        obj = _torch_load(path)
    if not isinstance(obj, dict):
        raise WeightImportError(f"{path.name}: expected a state dict, found {type(obj).__name__}")
    obj = _unwrap(obj, info)
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if isinstance(value, torch.Tensor):
            state[str(key)] = value
        else:
            info["dropped"].append(str(key))
    if not state:
        raise WeightImportError(
            f"{path.name}: no tensors found (top-level keys: {first_keys(map(str, obj))})"
        )
    state, info["stripped_prefix"] = strip_common_prefix(state)
    return state, info


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)``; errors become messages without torch's advice."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # "Unsupported global" names a Python class the weights-only unpickler refused
        if "unsupported global" in str(err).lower():
            raise WeightImportError(
                f"{path.name}: refused to load; the file holds Python objects beyond tensors "
                "and reading them needs unpickling, which can run code: medtl never "
                "unpickles. Re-save the state dict alone, e.g. "
                "torch.save(model.state_dict(), path), or as safetensors "
                "(safetensors.torch.save_file)."
            ) from err
        raise WeightImportError(
            f"{path.name}: not a readable PyTorch checkpoint ({torch_error_reason(err)})"
        ) from err
    except Exception as err:
        raise WeightImportError(
            f"{path.name}: not a readable PyTorch checkpoint ({torch_error_reason(err)})"
        ) from err


def _holds_tensors(obj: Any, depth: int) -> bool:
    if not isinstance(obj, dict) or depth == 0:
        return False
    return any(isinstance(v, torch.Tensor) or _holds_tensors(v, depth - 1) for v in obj.values())


def _unwrap(obj: dict, info: dict[str, Any]) -> dict:
    """Descend through wrapper keys (``state_dict``, ``model``, ...) to the tensors."""
    for _ in range(3):  # e.g. {"model": {"state_dict": {...}}}
        if any(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        key = next((k for k in WRAPPER_KEYS if _holds_tensors(obj.get(k), 3)), None)
        if key is None:
            return obj
        info["wrapper"] = key if info["wrapper"] is None else f"{info['wrapper']}.{key}"
        info["dropped"] += [str(k) for k in obj if k != key]
        obj = obj[key]
    return obj


def strip_common_prefix(
    state: dict[str, torch.Tensor], prefixes: tuple[str, ...] = STRIP_PREFIXES
) -> tuple[dict[str, torch.Tensor], str | None]:
    """Strip a wrapper prefix (``module.``, ``_orig_mod.``) when every key carries it.

    Args:
        state: the state dict.
        prefixes: candidate prefixes.

    Returns:
        ``(state, stripped)``; ``stripped`` joins the removed prefixes or is ``None``.
    """
    removed = []
    changed = True
    while changed:
        changed = False
        for prefix in prefixes:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                removed.append(prefix)
                changed = True
    return state, ("".join(removed) or None)


def adapt_input_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Adapt a first-conv kernel ``(O, I, *k)`` to ``in_channels`` inputs.

    RGB -> 1 channel sums over the input channels (a grey image replicated into RGB gives
    the same response); 1 -> C repeats and divides by C; otherwise the channels are
    tiled and rescaled by I / C (as in timm's ``adapt_input_conv``).

    Args:
        weight: the source kernel.
        in_channels: wanted input channels.

    Returns:
        The kernel ``(O, in_channels, *k)``.
    """
    src = weight.shape[1]
    if in_channels == src:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = -(-in_channels // src)
    tiled = weight.repeat(1, reps, *([1] * (weight.ndim - 2)))[:, :in_channels]
    return tiled * (src / in_channels)


def inflate_kernel(weight: torch.Tensor, depth: int) -> torch.Tensor:
    """Inflate a 2D kernel ``(O, I, kh, kw)`` to 3D ``(O, I, depth, kh, kw)`` (I3D).

    The kernel is repeated along depth and divided by ``depth``, so a volume made of
    identical slices gives the 2D response.
    """
    return weight.unsqueeze(2).repeat(1, 1, depth, 1, 1) / depth


def _adapt(
    src: torch.Tensor, dst_shape: torch.Size, first_conv: bool, inflate: bool
) -> tuple[torch.Tensor | None, str]:
    notes = []
    t = src
    if inflate and t.ndim == 4 and len(dst_shape) == 5:
        t = inflate_kernel(t, dst_shape[2])
        notes.append(f"inflated 2D->3D (depth {dst_shape[2]})")
    if (
        first_conv
        and t.ndim == len(dst_shape)
        and t.ndim >= 3
        and t.shape[0] == dst_shape[0]
        and t.shape[2:] == dst_shape[2:]
        and t.shape[1] != dst_shape[1]
    ):
        how = "sum over input channels" if dst_shape[1] == 1 else "tiled and rescaled"
        notes.append(f"input channels {t.shape[1]}->{dst_shape[1]} ({how})")
        t = adapt_input_channels(t, dst_shape[1])
    if t.shape == dst_shape and notes:
        return t, "; ".join(notes)
    return None, ""


def _is_bn_counter(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def load_mapped_weights(
    model: nn.Module,
    mapped: list[tuple[str, str, torch.Tensor]],
    *,
    source: str,
    format: str,
    unexpected: list[str] | None = None,
    ignored: list[str] | None = None,
    warnings: list[str] | None = None,
    meta: dict[str, Any] | None = None,
    min_loaded: float = 0.9,
    inflate: bool = False,
    load_head: bool = True,
) -> LoadReport:
    """Load tensors at given destination keys, check coverage, and report.

    Args:
        model: the destination (a :class:`~medtl.models.Backbone`, or any module whose
            head keys start with ``head.``).
        mapped: ``(source key, destination key, tensor)`` triples from an importer.
        source: name of the file/folder (for the report).
        format: import format name (for the report).
        unexpected: source keys the importer could not map.
        ignored: source keys dropped on purpose.
        warnings: importer warnings to include (and log).
        meta: extra information for the report.
        min_loaded: minimum fraction (0..1) of backbone parameter elements that must load.
        inflate: allow 2D -> 3D kernel inflation.
        load_head: load source head tensors when their shapes fit.

    Returns:
        The load report (also logged at INFO, warnings at WARNING).

    Raises:
        WeightImportError: too little loaded; the model is left unchanged.
    """
    report = LoadReport(
        source=source,
        format=format,
        unexpected=list(unexpected or []),
        ignored=list(ignored or []),
        warnings=list(warnings or []),
        meta=dict(meta or {}),
    )
    dst = model.state_dict()
    first_conv = getattr(model, "first_conv", "")
    to_load: dict[str, torch.Tensor] = {}
    for src_key, dst_key, tensor in mapped:
        if dst_key not in dst:
            if not _is_bn_counter(src_key):
                report.unexpected.append(src_key)
            continue
        target = dst[dst_key]
        is_head = dst_key.startswith(HEAD_PREFIX)
        if is_head and not load_head:
            report.skipped_head.append(src_key)
            continue
        if tensor.shape == target.shape:
            to_load[dst_key] = tensor
            continue
        adapted, note = (
            (None, "") if is_head else _adapt(tensor, target.shape, dst_key == first_conv, inflate)
        )
        if adapted is not None:
            to_load[dst_key] = adapted
            report.adapted[dst_key] = note
        elif is_head:
            report.skipped_head.append(src_key)
        else:
            report.mismatched.append((dst_key, list(tensor.shape), list(target.shape)))
    report.loaded = sorted(to_load)
    report.missing = [k for k in dst if k not in to_load and not _is_bn_counter(k)]
    params = {name: p.numel() for name, p in model.named_parameters()}
    backbone = {k: n for k, n in params.items() if not k.startswith(HEAD_PREFIX)}
    report.backbone_params_total = sum(backbone.values())
    report.backbone_params_loaded = sum(n for k, n in backbone.items() if k in to_load)
    if (
        any(t.ndim == 4 for _, _, t in mapped)
        and any(len(dst[d].shape) == 5 for _, d, _ in mapped if d in dst)
        and not inflate
    ):
        report.warnings.append(
            "the checkpoint holds 2D kernels and the model is 3D; pass inflate=True to "
            "inflate them (I3D: repeat along depth / depth)"
        )
    for message in report.warnings:
        logger.warning("%s: %s", source, message)
    if report.loaded_fraction < min_loaded:
        raise WeightImportError(
            f"only {100 * report.loaded_fraction:.1f}% of the backbone parameters loaded "
            f"(minimum {100 * min_loaded:.0f}%); nothing was changed. {report.summary()}"
            + (f". Warnings: {' '.join(report.warnings)}" if report.warnings else ""),
            report,
        )
    with torch.no_grad():
        for key, tensor in to_load.items():
            dst[key].copy_(tensor.to(dtype=dst[key].dtype))
    logger.info("weight import: %s", report.summary())
    return report


def save_weights(
    model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None
) -> Path:
    """Save a model's state dict as safetensors (medtl's native weight format).

    Args:
        model: the module.
        path: destination ``.safetensors`` file.
        metadata: optional string metadata stored in the header (the model's config is
            stored as ``medtl_config`` when it has one).

    Returns:
        The path written.
    """
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    header = {"format": "pt"}
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "model_dump_json"):
        # lets an import name the architecture the weights belong to
        header["medtl_config"] = config.model_dump_json()
    save_file(state, str(path), metadata={**header, **(metadata or {})})
    return path
