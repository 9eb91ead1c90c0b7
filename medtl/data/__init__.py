"""medtl.data: manifests, splits, public demo sources and dataset builders.

Heavy builders (MRI source set, CT target set, fetch) live in their modules and are
imported from there; only the manifest model is re-exported here.
"""

from medtl.data.manifest import SPLITS, Manifest, ManifestRecord, manifest_schema

__all__ = ["SPLITS", "Manifest", "ManifestRecord", "manifest_schema"]
