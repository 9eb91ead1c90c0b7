"""Device choice, mixed precision (autocast + GradScaler) and channels-last memory format.

- :func:`select_device`: CUDA, then MPS, then CPU (or what the config names).
- :func:`resolve_amp`: the autocast dtype for a device: bf16 on CUDA when supported, else
  fp16 (which needs a GradScaler); bf16 on CPUs with AMX-BF16 tiles, read lazily from
  torch's own CPU probe (``/proc/cpuinfo`` where torch has none); otherwise full precision.
  AVX512-BF16 alone is not enough: on such a 2-core Xeon a smallcnn training step ran at
  0.79x of fp32 and the I3ResNet-152 embedding at 0.83x (bench/results.md), and bf16 also
  moves results, so the same config would train differently on an AVX2 machine.
- :func:`to_memory_format`: ``torch.channels_last`` for 4-D tensors (2-D images) and
  ``torch.channels_last_3d`` for 5-D tensors (volumes).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger(__name__)

_CPUINFO = Path("/proc/cpuinfo")
#: tests point ``_CPUINFO`` at a fake file and set this, so the file is read instead of torch
_CPUINFO_OVERRIDE = False


def select_device(preference: str = "auto", local_rank: int | None = None) -> torch.device:
    """Pick the compute device.

    Args:
        preference: ``"auto"`` (CUDA, then MPS, then CPU), ``"cuda"``, ``"mps"`` or ``"cpu"``.
        local_rank: CUDA device index for this process (DDP); defaults to ``$LOCAL_RANK`` or 0.

    Returns:
        The device.

    Raises:
        RuntimeError: when the named device is not available.
    """
    if preference == "auto":
        if torch.cuda.is_available():
            preference = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            preference = "mps"
        else:
            preference = "cpu"
    if preference == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
        index = local_rank if local_rank is not None else int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    if preference == "mps":
        if not torch.backends.mps.is_available():
            raise RuntimeError("device 'mps' requested but MPS is not available")
        return torch.device("mps")
    if preference == "cpu":
        return torch.device("cpu")
    raise ValueError(f"unknown device {preference!r}")


def _cpu_flags() -> set[str]:
    """CPU feature names, from torch's probe (cpuinfo library) or else ``/proc/cpuinfo``."""
    probe = getattr(getattr(torch._C, "_cpu", None), "_get_cpu_capability", None)
    if callable(probe) and not _CPUINFO_OVERRIDE:
        try:
            caps = probe()
        except RuntimeError:
            caps = None
        if isinstance(caps, dict):
            return {str(k) for k, v in caps.items() if v is True}
    try:
        text = _CPUINFO.read_text(encoding="ascii", errors="ignore")
    except OSError:  # not Linux: no cheap, reliable probe, so stay in fp32
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@functools.cache
def cpu_supports_bf16() -> bool:
    """Whether this CPU has bf16 instructions at all (AVX512-BF16 or AMX-BF16).

    Returns:
        True when the CPU lists ``avx512_bf16`` or ``amx_bf16`` and oneDNN is built in.
    """
    if not torch.backends.mkldnn.is_available():
        return False
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


@functools.cache
def cpu_bf16_is_fast() -> bool:
    """Whether bf16 autocast is worth choosing by default here: AMX-BF16 tiles present.

    Without AMX, bf16 on CPU is emulated (AVX2) or runs on AVX512-BF16 dot products that
    measured slower than fp32 for medtl's networks, so ``amp="auto"`` stays in fp32.

    Returns:
        True when the CPU lists ``amx_bf16`` and oneDNN is built in.
    """
    if not torch.backends.mkldnn.is_available():
        return False
    return "amx_bf16" in _cpu_flags()


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """Map a config ``amp`` value to an autocast dtype for ``device``.

    Args:
        amp: ``"auto"``, ``"none"``, ``"bf16"`` or ``"fp16"``.
        device: the compute device.

    Returns:
        ``torch.bfloat16``, ``torch.float16`` or ``None`` (full precision).

    Raises:
        ValueError: fp16 requested off CUDA (fp16 autocast needs CUDA and a GradScaler).
    """
    if amp == "none":
        return None
    if amp == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and cpu_bf16_is_fast():
            return torch.bfloat16
        return None
    if amp == "bf16":
        if device.type == "mps":
            raise ValueError("bf16 autocast is not supported on MPS here; use amp='none'")
        return torch.bfloat16
    if amp == "fp16":
        if device.type != "cuda":
            raise ValueError(f"fp16 autocast needs CUDA (device is {device.type}); use bf16")
        return torch.float16
    raise ValueError(f"unknown amp {amp!r}")


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast context for ``device`` and ``dtype``; a no-op context when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A GradScaler that is enabled only for fp16 on CUDA (bf16 has fp32's exponent range)."""
    enabled = device.type == "cuda" and dtype == torch.float16
    return torch.amp.GradScaler("cuda" if device.type == "cuda" else "cpu", enabled=enabled)


def memory_format_for(ndim: int) -> torch.memory_format | None:
    """``channels_last`` for 4-D (N, C, H, W), ``channels_last_3d`` for 5-D, else None."""
    if ndim == 4:
        return torch.channels_last
    if ndim == 5:
        return torch.channels_last_3d
    return None


def to_memory_format(x: torch.Tensor) -> torch.Tensor:
    """Return ``x`` in channels-last layout when it is a 4-D or 5-D tensor."""
    fmt = memory_format_for(x.dim())
    return x if fmt is None else x.contiguous(memory_format=fmt)


def model_to_channels_last(model: nn.Module, input_ndim: int) -> nn.Module:
    """Convert a model's conv weights to the channels-last layout matching its input rank.

    Args:
        model: the model (converted in place).
        input_ndim: rank of the input batch: 4 for 2-D images, 5 for volumes.

    Returns:
        The same model.
    """
    fmt = memory_format_for(input_ndim)
    if fmt is not None:
        model.to(memory_format=fmt)
    return model


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Temporarily put ``model`` in eval mode, restoring each module's own flag afterwards."""
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for module, flag in flags.items():
            module.training = flag
