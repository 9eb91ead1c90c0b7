"""Descriptive free text outside Table E.1-1 is cleaned (Clean Descriptors behaviour),
unless the site opts out."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from medtl.io.deid import deidentify, write_deidentified
from medtl.io.deid_clean import ENV_KEEP_FREE_TEXT, clean_text
from medtl.io.deid_tables import profile_table
from tests.io.test_deid import KEY, make_ct

SITE = "STMARY-CT2"


def with_site_text() -> Dataset:
    ds = make_ct()
    assert 0x00185021 not in profile_table().by_tag  # PostprocessingFunction: outside the table
    ds.PostprocessingFunction = f"{SITE} Lung sharp 5mm"
    ds.WindowCenterWidthExplanation = ["LUNG", f"{SITE} MEDIASTINUM", "JS"]
    ds.ReceiveCoilName = "KELLY"  # nothing safe left: removed
    item = Dataset()
    item.SeriesInstanceUID = ds.SeriesInstanceUID
    item.PostprocessingFunction = f"MIP {SITE}"
    ds.ReferencedSeriesSequence = Sequence([item])
    return ds


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("STMARY-CT2 LUNG/SHARP 5mm", "LUNG SHARP 5mm"),
        ("axial 3D MIP", "axial 3D MIP"),
        ("Dr Smith's protocol", "protocol"),
        ("ROE^RICHARD", ""),
        ("120kVp 2.5", "120kVp 2.5"),
        # digit runs of 4 or more: dates, times and IDs, whatever surrounds them
        ("UKE_pa_020395", "pa"),
        ("chest 19450317", "chest"),
        ("lung 2024-01-02 axial", "lung 01 02 axial"),
        ("ID12345 PA", "PA"),
        ("1024 1.25mm 120kv 512", "1.25mm 120kv 512"),
        ("20240102.5", ""),
    ],
)
def test_clean_text_keeps_only_vocabulary_and_numbers(text: str, expected: str) -> None:
    assert clean_text(text) == expected


def test_digit_runs_are_not_kept_in_a_written_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A date in a free-text attribute outside the table is gone from the written bytes."""
    monkeypatch.delenv(ENV_KEEP_FREE_TEXT, raising=False)
    ds = make_ct()
    ds.PostprocessingFunction = "UKE_pa_020395"
    ds.WindowCenterWidthExplanation = ["LUNG 7741203", "MEDIASTINUM"]
    src = tmp_path / "in.dcm"
    ds.save_as(src, enforce_file_format=True)
    assert b"020395" in src.read_bytes()
    (written,) = write_deidentified([src], tmp_path / "out", key=KEY)
    data = written.read_bytes()
    assert b"020395" not in data and b"7741203" not in data
    out = pydicom.dcmread(written)
    assert out.PostprocessingFunction == "pa"
    assert list(out.WindowCenterWidthExplanation) == ["LUNG", "MEDIASTINUM"]


def test_site_code_in_postprocessing_function_is_cleaned_in_the_written_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_KEEP_FREE_TEXT, raising=False)
    src = tmp_path / "in.dcm"
    with_site_text().save_as(src, enforce_file_format=True)
    (written,) = write_deidentified([src], tmp_path / "out", key=KEY)
    assert SITE.encode() not in written.read_bytes()
    assert b"KELLY" not in written.read_bytes()
    out = pydicom.dcmread(written)
    assert out.PostprocessingFunction == "Lung sharp 5mm"
    assert list(out.WindowCenterWidthExplanation) == ["LUNG", "MEDIASTINUM"]
    assert "ReceiveCoilName" not in out
    assert out.ReferencedSeriesSequence[0].PostprocessingFunction == "MIP"
    assert out.Manufacturer == "ACME" and out.ManufacturerModelName == "Scanner 9000"
    assert "free text cleaned" in out.DeidentificationMethod
    assert profile_table().edition in out.DeidentificationMethod


def test_site_can_opt_out_with_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_KEEP_FREE_TEXT, "1")
    out = deidentify(with_site_text(), key=KEY)
    assert out.PostprocessingFunction == f"{SITE} Lung sharp 5mm"
    assert out.ReceiveCoilName == "KELLY"
    assert "free text cleaned" not in out.DeidentificationMethod
    # the table still applies: descriptors it lists are removed whatever the setting
    assert "SeriesDescription" not in out and "InstitutionName" not in out


def test_argument_overrides_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_KEEP_FREE_TEXT, "1")
    assert deidentify(with_site_text(), key=KEY, clean_free_text=True).PostprocessingFunction == (
        "Lung sharp 5mm"
    )
    monkeypatch.delenv(ENV_KEEP_FREE_TEXT)
    kept = deidentify(with_site_text(), key=KEY, clean_free_text=False)
    assert kept.PostprocessingFunction.startswith(SITE)
