"""medtl.data: manifests, splits, public demo sources and dataset builders.

Heavy builders (MRI source set, CT target set, fetch) live in their modules and are
imported from there; only the manifest model is re-exported here, lazily, so that
``import medtl.data.cli`` (every ``medtl`` command) does not import NumPy and pydantic models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medtl._lazy import lazy_exports

_EXPORTS = {
    "SPLITS": "manifest",
    "Manifest": "manifest",
    "ManifestRecord": "manifest",
    "manifest_schema": "manifest",
}

__all__ = ["SPLITS", "Manifest", "ManifestRecord", "manifest_schema"]

if TYPE_CHECKING:
    from medtl.data.manifest import SPLITS, Manifest, ManifestRecord, manifest_schema

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
