"""medtl.models: backbone registry, the backbone contract, weight import, model packages.

Re-exports only; see the submodules for details:
:mod:`~medtl.models.registry`, :mod:`~medtl.models.backbones`, :mod:`~medtl.models.config`,
:mod:`~medtl.models.heads`, :mod:`~medtl.models.weights`, :mod:`~medtl.models.importers`,
:mod:`~medtl.models.package`.

The names are re-exported lazily, so ``import medtl.models`` (e.g. by ``medtl models list``
or ``medtl --help``) does not import torch until a name that needs it is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medtl._lazy import lazy_exports

_EXPORTS = {
    "Backbone": "backbones",
    "BackboneConfig": "config",
    "HeadConfig": "config",
    "ClassifierHead": "heads",
    "FORMATS": "importers",
    "import_weights": "importers",
    "sniff_format": "importers",
    "CardOperatingPoint": "package",
    "ModelCard": "package",
    "PackageError": "package",
    "PackageInfo": "package",
    "list_packages": "package",
    "load_package": "package",
    "read_card": "package",
    "register_package": "package",
    "resolve_package": "package",
    "save_package": "package",
    "build_backbone": "registry",
    "create_backbone": "registry",
    "describe_backbones": "registry",
    "list_backbones": "registry",
    "register_backbone": "registry",
    "LoadReport": "weights",
    "WeightImportError": "weights",
    "read_checkpoint": "weights",
    "save_weights": "weights",
}

__all__ = [
    "FORMATS",
    "Backbone",
    "BackboneConfig",
    "CardOperatingPoint",
    "ClassifierHead",
    "HeadConfig",
    "LoadReport",
    "ModelCard",
    "PackageError",
    "PackageInfo",
    "WeightImportError",
    "build_backbone",
    "create_backbone",
    "describe_backbones",
    "import_weights",
    "list_backbones",
    "list_packages",
    "load_package",
    "read_card",
    "read_checkpoint",
    "register_backbone",
    "register_package",
    "resolve_package",
    "save_package",
    "save_weights",
    "sniff_format",
]

if TYPE_CHECKING:
    from medtl.models.backbones import Backbone
    from medtl.models.config import BackboneConfig, HeadConfig
    from medtl.models.heads import ClassifierHead
    from medtl.models.importers import FORMATS, import_weights, sniff_format
    from medtl.models.package import (
        CardOperatingPoint,
        ModelCard,
        PackageError,
        PackageInfo,
        list_packages,
        load_package,
        read_card,
        register_package,
        resolve_package,
        save_package,
    )
    from medtl.models.registry import (
        build_backbone,
        create_backbone,
        describe_backbones,
        list_backbones,
        register_backbone,
    )
    from medtl.models.weights import LoadReport, WeightImportError, read_checkpoint, save_weights

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
