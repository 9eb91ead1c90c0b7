"""What kind of file a checkpoint is, before anything reads it, and how its keys are wrapped.

A user hands medtl "weights" that may be a safetensors file, a ``torch.save`` archive
(zip or legacy), a TorchScript archive, a plain Python pickle, a Keras HDF5 file or a
text file. Only the first two are ever read (safetensors, or ``torch.load`` with
``weights_only=True``); each of the others gets a plain message saying what it is and
what to do, and a plain pickle is refused *before* any unpickler sees it, because reading
one at all means running whatever code it names.

Training frameworks nest the network under attribute names: PyTorch Lightning saves
``{"state_dict": {"model.conv1.weight", ...}}``, and ``net.``, ``backbone.``, ``module.``
(DataParallel/DDP) and ``_orig_mod.`` (``torch.compile``) are common.
:func:`unwrap_prefixes` removes such prefixes until a known layout shows.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

__all__ = [
    "TRAINING_PREFIXES",
    "first_keys",
    "not_weights_message",
    "pickle_refusal",
    "sniff_container",
    "torch_error_reason",
    "unwrap_prefixes",
]

#: attribute prefixes under which training code keeps the network, tried in this order
TRAINING_PREFIXES = ("module.", "_orig_mod.", "model.", "net.", "network.", "backbone.")

# torch.save's legacy (non-zip) format starts with this pickled magic number
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_NOT_WEIGHTS = "not a PyTorch checkpoint or safetensors file"


def _is_safetensors(head: bytes, size: int) -> bool:
    """An 8-byte little-endian header length, then a JSON object."""
    if len(head) < 9:
        return False
    length = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < length < size


def _zip_kind(path: Path) -> str:
    """``torch`` (torch.save archive), ``torchscript`` or ``zip`` (anything else)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return "other"
    if any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in names):
        return "torchscript"
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        return "torch"
    return "zip"


def sniff_container(path: Path) -> str:
    """Name a checkpoint file's container from its first bytes; nothing is unpickled.

    Args:
        path: an existing file.

    Returns:
        ``safetensors``, ``torch`` (zip archive of ``torch.save``), ``torch-legacy``
        (pre-1.6 ``torch.save``), ``torchscript``, ``pickle`` (a plain Python pickle),
        ``hdf5``, ``zip``, ``text``, ``empty`` or ``other``.
    """
    size = path.stat().st_size
    if size == 0:
        return "empty"
    with path.open("rb") as fh:
        head = fh.read(len(_TORCH_LEGACY_MAGIC))
    if _is_safetensors(head, size):
        return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(path)
    if head.startswith(_TORCH_LEGACY_MAGIC):
        return "torch-legacy"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "text"
    return "other"


def not_weights_message(name: str, container: str) -> str:
    """The message for a file that is no checkpoint medtl reads.

    Args:
        name: the file name shown to the user.
        container: what :func:`sniff_container` found.

    Returns:
        One sentence: what the file is and what medtl reads instead.
    """
    what = {
        "empty": "the file is empty",
        "text": "it holds text",
        "hdf5": "it is an HDF5 file (Keras .h5?)",
        "zip": "it is a zip archive without a PyTorch data.pkl",
        "torchscript": "it is a TorchScript archive; save model.state_dict() instead",
    }.get(container, "its first bytes match neither format")
    return (
        f"{name}: {_NOT_WEIGHTS}: {what}. medtl reads safetensors files and state dicts "
        "written by torch.save"
    )


def pickle_refusal(name: str) -> str:
    """The refusal for a plain Python pickle: why, and how to convert it safely.

    Args:
        name: the file name shown to the user.

    Returns:
        The message (it never suggests loading the file with unpickling enabled).
    """
    return (
        f"{name}: refused, a plain Python pickle needs unpickling to read, and unpickling "
        "runs whatever code the file names, so medtl never does it. If you trust the "
        "file's source, convert it once in a throwaway environment: load it there, keep "
        "the tensors, and write them with safetensors.torch.save_file(state_dict, "
        "'weights.safetensors'); then import that file"
    )


def torch_error_reason(err: BaseException) -> str:
    """A short reason from a ``torch.load`` error, without torch's advice to unpickle.

    Args:
        err: what ``torch.load(..., weights_only=True)`` raised.

    Returns:
        e.g. ``"Unsupported operand 149"``; ``"unreadable data"`` when nothing useful is left.
    """
    text = str(err)
    marker = "WeightsUnpickler error:"
    if marker in text:
        rest = text.split(marker, 1)[1]
        line = next((ln.strip() for ln in rest.splitlines() if ln.strip()), "")
        return line or "unreadable data"
    first = text.strip().splitlines()[0] if text.strip() else ""
    if not first or "weights_only" in first or len(first) > 200:
        return "unreadable data"
    return first


def first_keys(keys: Iterable[str], n: int = 6) -> str:
    """The first ``n`` keys, comma-separated, for a message (``...`` when there are more).

    Args:
        keys: state-dict keys in file order.
        n: how many to show.

    Returns:
        e.g. ``"stem.weight, stem.bias, ..."``.
    """
    keys = list(keys)
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")


def unwrap_prefixes(
    state: dict[str, torch.Tensor],
    recognised: Callable[[set[str]], bool],
    prefixes: tuple[str, ...] = TRAINING_PREFIXES,
) -> tuple[dict[str, torch.Tensor], str | None, list[str]]:
    """Strip training-code prefixes (``model.``, ``net.``, ...) until a known layout shows.

    A prefix is stripped when the keys under it hold most of the tensor elements (a
    Lightning module also saves e.g. a loss's ``criterion.pos_weight`` beside ``model.*``);
    the keys outside it are returned as left out. When no sequence of prefixes yields a
    recognised layout, ``state`` comes back unchanged.

    Args:
        state: a flat state dict.
        recognised: whether a key set is a layout the caller knows.
        prefixes: candidate prefixes.

    Returns:
        ``(state, stripped, left_out)``: ``stripped`` joins the removed prefixes (``None``
        when nothing was removed); ``left_out`` names the original keys dropped.
    """
    current, removed, left_out = state, "", []
    while not recognised(set(current)):
        total = sum(v.numel() for v in current.values()) or 1
        for prefix in prefixes:
            inside = {k[len(prefix) :]: v for k, v in current.items() if k.startswith(prefix)}
            if inside and sum(v.numel() for v in inside.values()) * 2 > total:
                left_out += [removed + k for k in current if not k.startswith(prefix)]
                current, removed = inside, removed + prefix
                break
        else:
            return state, None, []
    return current, (removed or None), left_out
