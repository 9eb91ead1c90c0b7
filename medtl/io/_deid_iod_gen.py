"""Generate ``deid_iod_types.json``: the Type 1 and Type 2 attributes of the image IODs medtl
de-identifies, so that de-identification empties or replaces them instead of deleting them.

Run from the repository root (needs ``highdicom``, which the ``pacs`` and ``app`` extras
install)::

    python -m medtl.io._deid_iod_gen

Why a table: PS3.15 E.1.1 lets an implementation choose between removing (``X``), emptying
(``Z``) and replacing (``D``) an attribute "according to its type in the IOD": a Type 1
attribute must keep a value, a Type 2 attribute must stay present (empty allowed), only
a Type 3 attribute may go. pydicom carries no module or IOD definitions, so medtl needs the
types from somewhere. They are not typed by hand: ``highdicom`` (MIT licence, Copyright 2020 MGH
Computational Pathology) ships the module and IOD tables of PS3.3 as JSON (``highdicom/_standard``,
generated from the standard's own tables by the ``dicom-standard`` project), and this
generator extracts from them, for each SOP class in :data:`SOP_CLASSES`, every *top-level*
attribute of every module of the IOD whose type is ``1``, ``1C``, ``2`` or ``2C`` (the
strictest type where an attribute appears in several modules).

Only attributes that are present in the source are affected (a conditional attribute that
was present is taken to have met its condition), so a type from a module the object does
not use only makes medtl keep an attribute empty rather than remove it: never a leak.

The generated JSON is committed and read lazily by :mod:`medtl.io.deid_iod`; this module is
a maintainer's tool, never imported by medtl itself. ``tests/io/test_deid_iod.py`` checks
that the committed file is what this generator makes from the installed highdicom.
"""

from __future__ import annotations

import argparse
import json
import logging
import pkgutil
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger("medtl.io._deid_iod_gen")

OUT_FILE = Path(__file__).with_name("deid_iod_types.json")

#: The image storage SOP classes medtl reads (CR, DX, MG, IO, CT, MR, US, NM, PET, XA, RF,
#: secondary capture): the objects ``load_scan``, the PACS ingest and uploads de-identify.
SOP_CLASSES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.1",  # CR
    "1.2.840.10008.5.1.4.1.1.1.1",  # DX for presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1",  # DX for processing
    "1.2.840.10008.5.1.4.1.1.1.2",  # MG for presentation
    "1.2.840.10008.5.1.4.1.1.1.2.1",  # MG for processing
    "1.2.840.10008.5.1.4.1.1.1.3",  # IO for presentation
    "1.2.840.10008.5.1.4.1.1.1.3.1",  # IO for processing
    "1.2.840.10008.5.1.4.1.1.2",  # CT
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT
    "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT
    "1.2.840.10008.5.1.4.1.1.4",  # MR
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR
    "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR
    "1.2.840.10008.5.1.4.1.1.6.1",  # US
    "1.2.840.10008.5.1.4.1.1.3.1",  # US multi-frame
    "1.2.840.10008.5.1.4.1.1.20",  # NM
    "1.2.840.10008.5.1.4.1.1.128",  # PET
    "1.2.840.10008.5.1.4.1.1.12.1",  # XA
    "1.2.840.10008.5.1.4.1.1.12.2",  # RF
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.1",  # Multi-frame Single Bit SC
    "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte SC
    "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word SC
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color SC
)

#: Strictness of the types kept (lower is stricter); Type 3 is left out.
_ORDER = {"1": 0, "1C": 1, "2": 2, "2C": 3}


def _load(member: str) -> Any:
    data = pkgutil.get_data("highdicom", f"_standard/{member}")
    if data is None:  # pragma: no cover - a broken highdicom install
        raise FileNotFoundError(f"highdicom/_standard/{member}")
    return json.loads(data.decode("utf-8"))


def _iod_types(iod: str, iod_modules: dict[str, Any], attributes: dict[str, Any]) -> dict:
    """Keyword -> strictest non-3 type of the top-level attributes of ``iod``'s modules."""
    types: dict[str, str] = {}
    for module in iod_modules[iod]:
        for attribute in attributes[module["key"]]:
            keyword, kind = attribute["keyword"], attribute["type"]
            if attribute["path"] or kind not in _ORDER:
                continue
            if keyword not in types or _ORDER[kind] < _ORDER[types[keyword]]:
                types[keyword] = kind
    return dict(sorted(types.items()))


def generate() -> dict[str, Any]:
    """Build the document written to ``deid_iod_types.json``.

    Returns:
        ``{"source": ..., "sop_classes": {uid: iod}, "iods": {iod: {keyword: type}}}``.
    """
    import highdicom
    from pydicom.datadict import tag_for_keyword

    sop_iod = _load("sop_class_iod_map.json")
    iod_modules = _load("iod_module_map.json")
    attributes = _load("module_attribute_map.json")
    sop_classes = {uid: sop_iod[uid] for uid in SOP_CLASSES}
    iods = {}
    for iod in sorted(set(sop_classes.values())):
        types = _iod_types(iod, iod_modules, attributes)
        # repeating groups (overlays 60xx) have no single keyword pydicom can look up, and
        # medtl removes those groups whole, with their module
        iods[iod] = {k: t for k, t in types.items() if tag_for_keyword(k) is not None}
    return {
        "source": {
            "package": "highdicom",
            "version": highdicom.__version__,
            "license": "MIT License, Copyright 2020 MGH Computational Pathology",
            "files": [
                "_standard/sop_class_iod_map.json",
                "_standard/iod_module_map.json",
                "_standard/module_attribute_map.json",
            ],
            "note": "top-level attributes of Type 1, 1C, 2 and 2C (strictest over modules)",
        },
        "sop_classes": sop_classes,
        "iods": iods,
    }


def main(argv: list[str] | None = None) -> int:
    """Write the JSON (one attribute per line, so a change reads well in a diff)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_FILE)
    args = parser.parse_args(argv)
    doc = generate()
    args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logger.info("wrote %s: %d IODs", args.out, len(doc["iods"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
