"""Where medtl keeps its files: ``MEDTL_HOME`` (default ``~/.medtl``).

Nothing in medtl writes outside ``MEDTL_HOME`` or paths the user names explicitly.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "MEDTL_HOME"


def medtl_home(create: bool = True) -> Path:
    """Return the medtl home folder.

    Args:
        create: create the folder (mode 0700, since it may hold scans) when missing.

    Returns:
        The absolute path named by ``$MEDTL_HOME``, or ``~/.medtl``.
    """
    home = Path(os.environ.get(ENV_VAR) or Path.home() / ".medtl").expanduser().resolve()
    if create:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return home


def home_subdir(name: str, create: bool = True) -> Path:
    """Return ``MEDTL_HOME/name`` (e.g. ``cache``, ``data``, ``models``, ``secrets``)."""
    path = medtl_home(create=create) / name
    if create:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
