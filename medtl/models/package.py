"""Model packages and the local package registry.

A **model package** is a folder that inference needs nothing else to use::

    weights.safetensors   the state dict (safetensors)
    model.json            the model card (:class:`ModelCard`)
    report.html           optional validation report

The local registry keeps packages under ``MEDTL_HOME/models/<name>/<version>/``.

Example:
    >>> card = ModelCard(name="cxr-nodule", version="1.0.0")  # doctest: +SKIP
    >>> save_package(model, card, "out/cxr-nodule")  # doctest: +SKIP
    >>> model, card = load_package("out/cxr-nodule")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medtl.artifacts.base import ArtifactError
from medtl.artifacts.card import _NAME as _NAME
from medtl.artifacts.card import (
    CARD_SCHEMA_VERSION,
    CardOperatingPoint,
    ModelCard,
    software_versions,
)
from medtl.paths import home_subdir

if TYPE_CHECKING:  # torch is imported where weights are read or written, not to list packages
    import torch

    from medtl.models.backbones import Backbone

logger = logging.getLogger(__name__)

# ModelCard, CardOperatingPoint and software_versions moved to medtl.artifacts.card (a typed
# hand-off read by inference and reports); re-exported here for existing imports.
__all__ = [
    "CARD_FILE",
    "CARD_SCHEMA_VERSION",
    "REPORT_FILE",
    "WEIGHTS_FILE",
    "CardOperatingPoint",
    "ModelCard",
    "PackageError",
    "software_versions",
]

WEIGHTS_FILE = "weights.safetensors"
CARD_FILE = "model.json"
REPORT_FILE = "report.html"


class PackageError(RuntimeError):
    """A model package is missing, incomplete, or does not match its card."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_package(
    model: Backbone,
    card: ModelCard,
    out_dir: str | Path,
    report_html: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a model package folder.

    The card's ``architecture`` is set from ``model.config`` (the truth the weights
    need), its ``labels`` default to the config's, and ``weights_sha256`` is filled in.

    Args:
        model: the trained backbone.
        card: the model card (not modified; a completed copy is written).
        out_dir: destination folder (created).
        report_html: optional validation report: a path to copy, or the HTML text.
        overwrite: replace an existing package in ``out_dir``.

    Returns:
        The package folder.

    Raises:
        FileExistsError: ``out_dir`` already holds a package and ``overwrite`` is false.
    """
    from medtl.models.weights import save_weights

    out = Path(out_dir)
    if (out / CARD_FILE).exists() and not overwrite:
        raise FileExistsError(f"a model package already exists in {out}")
    out.mkdir(parents=True, exist_ok=True)
    weights = save_weights(model, out / WEIGHTS_FILE, metadata={"medtl_package": card.ref})
    update: dict[str, Any] = {
        "architecture": model.config,
        "weights_sha256": _sha256(weights),
    }
    if not card.labels and model.config.labels:
        update["labels"] = list(model.config.labels)
    if not card.preprocessing and model.config.preprocessing:
        update["preprocessing"] = model.config.preprocessing
    final = card.model_copy(update=update)
    final.write(out / CARD_FILE)  # validated on the way out
    report_path = out / REPORT_FILE
    if isinstance(report_html, Path):
        shutil.copyfile(report_html, report_path)
    elif isinstance(report_html, str):
        report_path.write_text(report_html, encoding="utf-8")
    logger.info("saved model package %s", final.ref)
    return out


def read_card(path: str | Path) -> ModelCard:
    """Read and validate ``model.json`` of a package folder.

    Args:
        path: the package folder.

    Returns:
        The card.

    Raises:
        PackageError: missing or invalid card.
    """
    card_path = Path(path) / CARD_FILE
    if not card_path.is_file():
        raise PackageError(f"no {CARD_FILE} in {Path(path).name}: not a model package")
    try:
        return ModelCard.read(card_path)
    except ArtifactError as err:
        raise PackageError(f"invalid {CARD_FILE} in {Path(path).name}: {err}") from err


def load_package(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[Backbone, ModelCard]:
    """Load a model package: rebuild the backbone and load its weights strictly.

    Args:
        path: package folder, or a registry reference ``name`` / ``name@version``.
        device: where to put the model.

    Returns:
        ``(model, card)``; the model is in eval mode.

    Raises:
        PackageError: missing files, checksum mismatch, or weights that do not fit.
    """
    folder = resolve_package(path)
    card = read_card(folder)
    if card.architecture is None:
        raise PackageError(f"{card.ref}: the card has no architecture")
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise PackageError(f"{card.ref}: {WEIGHTS_FILE} is missing")
    if card.weights_sha256 and _sha256(weights) != card.weights_sha256:
        raise PackageError(f"{card.ref}: {WEIGHTS_FILE} does not match the card's checksum")
    from safetensors.torch import load_file

    from medtl.models.registry import build_backbone

    model = build_backbone(card.architecture)
    state = load_file(str(weights), device="cpu")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise PackageError(f"{card.ref}: weights do not fit the architecture: {err}") from err
    return model.to(device).eval(), card


@dataclass(frozen=True)
class PackageInfo:
    """A registered package."""

    name: str
    version: str
    path: Path
    created: datetime
    backbone: str | None

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"


def registry_root() -> Path:
    """Return ``MEDTL_HOME/models`` (created)."""
    return home_subdir("models")


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.\-_]", version))


def register_package(path: str | Path, overwrite: bool = False) -> str:
    """Copy a package into the local registry.

    Args:
        path: package folder.
        overwrite: replace an already registered ``name@version``.

    Returns:
        ``name@version``.

    Raises:
        PackageError: not a valid package. FileExistsError: already registered.
    """
    src = Path(path)
    card = read_card(src)
    if not (src / WEIGHTS_FILE).is_file():
        raise PackageError(f"{card.ref}: {WEIGHTS_FILE} is missing")
    if card.weights_sha256 and _sha256(src / WEIGHTS_FILE) != card.weights_sha256:
        raise PackageError(f"{card.ref}: {WEIGHTS_FILE} does not match the card's checksum")
    dest = registry_root() / card.name / card.version
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{card.ref} is already registered")
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Copy into a sibling temp folder, then rename: a crash never leaves half a package.
    tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=dest.parent))
    try:
        # Every top-level file travels (weights, card, report, domain guard, ...).
        for path in sorted(src.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                shutil.copyfile(path, tmp / path.name)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    logger.info("registered model package %s", card.ref)
    return card.ref


def list_packages() -> list[PackageInfo]:
    """List registered packages, by name then version (oldest first)."""
    infos = []
    for card_path in registry_root().glob(f"*/*/{CARD_FILE}"):
        if card_path.parent.name.startswith("."):  # a registration in progress
            continue
        try:
            card = read_card(card_path.parent)
        except PackageError as err:
            logger.warning("skipping invalid registry entry: %s", err)
            continue
        infos.append(
            PackageInfo(
                name=card.name,
                version=card.version,
                path=card_path.parent,
                created=card.created,
                backbone=card.architecture.name if card.architecture else None,
            )
        )
    return sorted(infos, key=lambda i: (i.name, _version_key(i.version)))


def resolve_package(name_or_path: str | Path) -> Path:
    """Find a package folder from a path, ``name@version`` or ``name`` (latest version).

    Args:
        name_or_path: an existing package folder, or a registry reference.

    Returns:
        The package folder.

    Raises:
        PackageError: nothing matches (the message says how to build or fetch the package).
    """
    path = Path(name_or_path)
    if path.is_dir() and (path / CARD_FILE).is_file():
        return path
    ref = str(name_or_path)
    name, _, version = ref.partition("@")
    if not re.match(_NAME, name) or (version and not re.match(_NAME, version)):
        raise PackageError(f"{ref!r} is neither a model package folder nor a registry name")
    matches = [
        i for i in list_packages() if i.name == name and (not version or i.version == version)
    ]
    if not matches:
        from medtl.models.builders import how_to_build

        if version and any(i.name == name for i in list_packages()):
            have = ", ".join(i.version for i in list_packages() if i.name == name)
            raise PackageError(f"no version {version} of model package {name!r} (have: {have})")
        raise PackageError(
            f"no model package {ref!r} (folder or registered name); {how_to_build(name)}"
        )
    return matches[-1].path
