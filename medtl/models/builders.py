"""How a missing model package is made: the command to run, for an error message.

A config that names starting weights by package (``weights: cxr-source``) fails on a fresh
machine until that package exists. The package is made by one of three things, looked up
here in this order:

1. a published foundation encoder medtl fetches (``astra-ct``: ``medtl models fetch``);
2. a pretraining config whose ``name:`` is the package name, in the user's ``configs/``
   folder, in the ``configs/`` folder of a medtl checkout, or among the configs ``medtl
   demo`` wrote under ``MEDTL_HOME/demo/<size>/configs`` (``medtl pretrain CONFIG``);
3. otherwise: which packages are registered, and the commands that make or register one.

Nothing here runs anything; configs are read with ``yaml.safe_load``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["config_folders", "how_to_build"]


def config_folders() -> list[Path]:
    """Where pretraining configs are looked for, nearest first.

    Returns:
        ``./configs``, the checkout's ``configs/`` (when medtl runs from a source tree) and
        ``MEDTL_HOME/demo/*/configs``, those that exist.
    """
    from medtl.paths import medtl_home

    checkout = Path(__file__).resolve().parents[2] / "configs"
    demo = sorted((medtl_home(create=False) / "demo").glob("*/configs"))
    seen: list[Path] = []
    for folder in (Path.cwd() / "configs", checkout, *demo):
        if folder.is_dir() and folder.resolve() not in [s.resolve() for s in seen]:
            seen.append(folder)
    return seen


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when it lies inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _builds(path: Path, name: str) -> bool:
    """Whether ``path`` is a pretraining config that writes the package ``name``."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    # a pretraining config names its backbone at the top; an experiment under model:
    return (
        isinstance(raw, dict)
        and raw.get("name") == name
        and (isinstance(raw.get("backbone"), str) or "stages" in raw)
    )


def how_to_build(name: str, folders: Iterable[Path] | None = None) -> str:
    """The next step for a package that is not registered.

    Args:
        name: the package name (``cxr-source``, ``astra-ct``), without ``@version``.
        folders: where to look for pretraining configs (default: :func:`config_folders`).

    Returns:
        One clause, e.g. ``"build it with `medtl pretrain configs/pretrain_cxr.yaml`"``.
    """
    from medtl.models.foundation import ALIASES, SOURCES

    if ALIASES.get(name, name) in SOURCES:
        return f"fetch it with `medtl models fetch {name}`"
    for folder in config_folders() if folders is None else folders:
        for path in sorted(Path(folder).glob("*.y*ml")):
            if _builds(path, name):
                return f"build it with `medtl pretrain {_shown(path)}`"
    from medtl.models.package import list_packages

    known = sorted({info.name for info in list_packages()})
    registered = f"registered: {', '.join(known)}" if known else "none is registered yet"
    return (
        f"{registered}; make one with `medtl package RUN` (a fine-tuned run) or `medtl "
        f"pretrain CONFIG` (a source backbone; the config's name: {name}), or register a "
        "package folder with `medtl models register FOLDER`"
    )
