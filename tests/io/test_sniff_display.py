"""Content sniffing and display windowing, on real bytes."""

from __future__ import annotations

import gzip
import io
import zipfile

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medtl.io import (
    CorruptScanError,
    ScanNotFoundError,
    UnsupportedFormatError,
    Window,
    apply_window,
    load_scan,
    window_preset,
)
from medtl.io.sniff import Format, sniff


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _nifti_bytes() -> bytes:
    img = nib.Nifti1Image(np.zeros((4, 4, 4), dtype=np.int16), np.eye(4))
    return img.to_bytes()


def test_sniff_by_content_not_extension(tmp_path) -> None:
    cases = {
        "a.dcm": (_png_bytes(), Format.PNG),
        "b.png": (_jpeg_bytes(), Format.JPEG),
        "c.jpg": (_nifti_bytes(), Format.NIFTI),
        "d.txt": (gzip.compress(_nifti_bytes()), Format.NIFTI),
        "e.nii.gz": (gzip.compress(b"hello world" * 100), Format.GZIP_UNKNOWN),
        "f.dcm": (b"%PDF-1.7\n" + b"x" * 2000, Format.PDF),
        "g.dcm": (b"\x00" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00", Format.DICOM),
        "h.bin": (b"just some text" * 10, Format.UNKNOWN),
    }
    for name, (data, expected) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        assert sniff(path) is expected, name
        assert sniff(data) is expected, name


def test_raw_dicom_without_preamble_detected() -> None:
    # (0008,0005) CS "ISO_IR 100" in explicit VR little endian, no preamble.
    head = b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100"
    assert sniff(head) is Format.DICOM
    # implicit VR: tag then a 4-byte length
    head = b"\x08\x00\x16\x00\x1a\x00\x00\x001.2.840.10008.5.1.4.1.1.2\x00"
    assert sniff(head) is Format.DICOM


def test_load_scan_refuses_pdf_renamed_dcm(tmp_path) -> None:
    path = tmp_path / "scan.dcm"
    path.write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + b"0" * 4000)
    with pytest.raises(UnsupportedFormatError, match="PDF"):
        load_scan(path)


def test_load_scan_missing_empty_unknown(tmp_path) -> None:
    with pytest.raises(ScanNotFoundError):
        load_scan(tmp_path / "nope.dcm")
    with pytest.raises(CorruptScanError, match="empty"):
        load_scan(b"")
    with pytest.raises(UnsupportedFormatError, match="not a recognised scan format"):
        load_scan(b"hello" * 100)
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    with pytest.raises(UnsupportedFormatError, match="no DICOM"):
        load_scan(empty)


def test_zip_errors(tmp_path) -> None:
    with pytest.raises(CorruptScanError, match="zip"):
        load_scan(b"PK\x03\x04" + b"\x00" * 100)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("notes.txt", "no images here")
    with pytest.raises(UnsupportedFormatError, match="no DICOM"):
        load_scan(buf.getvalue())


def test_zip_bomb_is_capped() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.dcm", b"\x00" * (5 * 1024 * 1024))
    from medtl.io import ImageTooLargeError

    with pytest.raises(ImageTooLargeError, match="expands"):
        load_scan(buf.getvalue(), max_bytes=1024 * 1024)


def test_window_presets_and_apply() -> None:
    lung = window_preset("lung")
    assert (lung.center, lung.width) == (-600.0, 1500.0)
    assert (window_preset("mediastinum").center, window_preset("mediastinum").width) == (40, 400)
    assert (window_preset("bone").center, window_preset("bone").width) == (480, 2500)
    assert (window_preset("brain").center, window_preset("brain").width) == (40, 80)
    with pytest.raises(KeyError, match="choose one of"):
        window_preset("liverish")
    values = np.array([-1000.0, 0.0, 40.0, 240.0, 3000.0], dtype=np.float32)
    out = apply_window(values, Window(center=40.0, width=400.0))
    assert out.dtype == np.uint8
    # bounds -160..240: -1000 -> 0, 0 -> 0.4*255=102, 40 -> 127.5 -> 128, 240 -> 255
    assert out.tolist() == [0, 102, 128, 255, 255]
    with pytest.raises(ValueError):
        apply_window(values, Window(center=0.0, width=0.0))
