"""Lazy re-exports for package ``__init__`` modules (PEP 562).

Packages re-export their public API without importing heavy dependencies (torch, MONAI,
scikit-learn, SQLAlchemy...) at import time: a name is imported from its module the first
time it is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, table: Mapping[str, str], module_globals: Mapping[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return the ``__getattr__`` and ``__dir__`` of a package with lazy re-exports.

    Args:
        package: the package's ``__name__``.
        table: exported name -> module, absolute (``medtl.io.deid``) or relative to the
            package (``calibration``).
        module_globals: the package's ``globals()`` (listed by ``__dir__``).

    Returns:
        ``(__getattr__, __dir__)``; assign both at module level.
    """

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        target = module if module.startswith("medtl.") else f"{package}.{module}"
        return getattr(importlib.import_module(target), name)

    def __dir__() -> list[str]:
        return sorted({*module_globals, *table})

    return __getattr__, __dir__
