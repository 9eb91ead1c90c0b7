"""read_dataset: files and bytes, with/without preamble and file meta, non-DICOM input."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medtl.io.dicom import read_dataset, read_with_notes
from medtl.io.errors import CorruptScanError, ScanError, UnsupportedFormatError
from medtl.io.series import load_dicom
from tests.io import dicom_factory as f

_PX = (np.arange(16 * 16).reshape(16, 16) * 7 % 2000).astype(np.int16)


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDTL_HOME", str(tmp_path / "home"))


def test_path_and_bytes_give_the_same_dataset(tmp_path):
    ds = f.ct_slice(_PX)
    path = f.write(ds, tmp_path / "a.dcm")
    from_path, from_bytes = read_dataset(path), read_dataset(path.read_bytes())
    assert from_path.SOPInstanceUID == from_bytes.SOPInstanceUID == ds.SOPInstanceUID
    np.testing.assert_array_equal(from_path.pixel_array, _PX)


def test_stop_before_pixels():
    ds = read_dataset(f.to_bytes(f.ct_slice(_PX)), stop_before_pixels=True)
    assert "PixelData" not in ds and int(ds.Rows) == 16


def test_without_preamble():
    data = f.to_bytes(f.ct_slice(_PX), preamble=False)
    assert data[:4] == b"DICM"
    ds, notes = read_with_notes(data)
    assert notes == [] and int(ds.Columns) == 16


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_without_file_meta_is_sniffed_with_warning(syntax):
    data = f.to_bytes(f.encode(f.ct_slice(_PX), syntax), file_meta=False)
    assert b"DICM" not in data[:132]
    ds, notes = read_with_notes(data)
    assert ds.file_meta.TransferSyntaxUID == syntax
    assert len(notes) == 1 and "no DICOM file meta" in notes[0] and syntax.name in notes[0]
    scan = load_dicom([data])
    np.testing.assert_array_equal(scan.array, _PX - 1024.0)
    assert any("sniffed" in w for w in scan.warnings)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello world, not a scan",
        b"\x89PNG\r\n\x1a\n" + bytes(200),
        bytes(128) + b"NOPE" + bytes(100),
    ],
)
def test_non_dicom_is_unsupported_format(data):
    with pytest.raises(UnsupportedFormatError):
        read_dataset(data)
    with pytest.raises(UnsupportedFormatError):
        load_dicom([data])


def test_damaged_header_is_corrupt():
    data = bytearray(f.to_bytes(f.ct_slice(_PX)))
    data[140:148] = b"\xff" * 8  # inside the file meta group length / first element
    with pytest.raises(CorruptScanError):
        read_dataset(bytes(data))


def test_missing_path_is_scan_error(tmp_path):
    with pytest.raises(ScanError, match="could not be read"):
        read_dataset(tmp_path / "missing.dcm")
