"""Where a run's starting weights come from: the file, its hash and its own model card.

:func:`locate_weights` resolves ``model.weights`` of an experiment (a file, a folder, or a
registered package name) to what the importer reads, hashes it, and reads the source domain
and task the weights state about themselves: a model package's ``model.json``, or the backbone
config medtl writes into a safetensors header. A run records those, not the free text of the
experiment template, which describes whatever weights the template was written for.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from medtl.artifacts.run import file_sha256

logger = logging.getLogger(__name__)

__all__ = ["WeightsOrigin", "locate_weights", "weights_sha256"]

#: (resolved path, size, mtime) -> sha256: a learning curve locates the same weights for
#: every point, and a foundation encoder is large
_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def _file_sha(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = file_sha256(path)
    return _SHA_CACHE[key]


@dataclass(frozen=True)
class WeightsOrigin:
    """Starting weights as found on disk.

    Attributes:
        path: the file or folder the importer reads.
        file: the file read (``weights.safetensors`` of a package folder, else ``path``).
        package: ``name@version`` of a model package, else ``None``.
        sha256: SHA-256 of ``file`` (of every file, for a folder without one weights file).
        has_card: the weights state their own source (package card or safetensors header).
        domain: the domain the weights were last trained on, from their card.
        task: the task the weights were last trained on, from their card.
    """

    path: Path
    file: Path
    package: str | None
    sha256: str
    has_card: bool
    domain: str | None = None
    task: str | None = None


def weights_sha256(path: str | Path) -> str:
    """SHA-256 of starting weights: the file, a package's ``weights.safetensors``, or every
    file of another folder (a MONAI bundle), in sorted relative-path order.

    Args:
        path: a weights file or folder.

    Returns:
        64 hex digits.
    """
    path = Path(path)
    if path.is_file():
        return _file_sha(path)
    if (path / "weights.safetensors").is_file():
        return _file_sha(path / "weights.safetensors")
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = item.relative_to(path)
        if any(part.startswith(".") for part in rel.parts):
            continue
        digest.update(str(rel.as_posix()).encode())
        digest.update(bytes.fromhex(_file_sha(item)))
    return digest.hexdigest()


def _header_config(file: Path) -> dict | None:
    """The backbone config medtl stores in a safetensors header (``medtl_config``)."""
    if file.suffix != ".safetensors":
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as fh:
            raw = (fh.metadata() or {}).get("medtl_config")
    except Exception:  # not readable as safetensors: the importer says why
        return None
    try:
        data = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def locate_weights(weights: str | Path) -> WeightsOrigin:
    """Resolve, hash and describe an experiment's ``model.weights``.

    A fine-tuned package's card names the target it was last trained on; that target is the
    source of a run that starts from it (its card's ``target_*`` first, then ``source_*``).

    Args:
        weights: a file, a folder, or a registered package ``name[@version]``.

    Returns:
        The :class:`WeightsOrigin`.

    Raises:
        medtl.models.package.PackageError: neither a path nor a registered package.
    """
    from medtl.models.package import CARD_FILE, WEIGHTS_FILE, read_card, resolve_package

    path = Path(weights)
    if not path.exists():
        path = resolve_package(path.name)
    file = path / WEIGHTS_FILE if (path / WEIGHTS_FILE).is_file() else path
    sha = weights_sha256(path)
    if path.is_dir() and (path / CARD_FILE).is_file():
        card = read_card(path)
        arch = card.architecture
        domain = card.target_domain or card.source_domain or (arch.source_domain if arch else None)
        task = card.target_task or card.source_task or (arch.source_task if arch else None)
        return WeightsOrigin(path, file, card.ref, sha, True, domain, task)
    header = _header_config(file) if file.is_file() else None
    if header is not None:
        return WeightsOrigin(
            path, file, None, sha, True, header.get("source_domain"), header.get("source_task")
        )
    return WeightsOrigin(path, file, None, sha, False)
