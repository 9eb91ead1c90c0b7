"""Decompression bombs are refused before their memory is committed (issue 15, finding 1).

Each test repeats an attack on real files (see :mod:`tests.io.bombs`) and measures this
process's peak resident memory around the call (``VmHWM`` after resetting it through
``/proc/self/clear_refs``).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from medtl.io import CorruptScanError, ImageTooLargeError, ScanError, load_scan
from medtl.io.limits import DecodeLimits
from tests.io import bombs
from tests.io import dicom_factory as f

GIB = 1024**3


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(field)


class _PeakRSS:
    """Peak resident memory of this process during a ``with`` block (Linux)."""

    def __enter__(self) -> _PeakRSS:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        self.before = _status("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = _status("VmHWM")
        self.growth = self.peak - self.before


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 3 MB on disk, 3 GiB of zeros once inflated."""
    return bombs.zip_of_zeros(tmp_path_factory.mktemp("bomb") / "series.zip", 3 * GIB)


def test_the_zip_bomb_is_a_real_zip_that_expands_to_gigabytes(zip_bomb: Path) -> None:
    assert zip_bomb.stat().st_size < 5 * 1024**2
    with zipfile.ZipFile(zip_bomb) as zf:
        (info,) = zf.infolist()
        assert info.file_size == 3 * GIB
        with zf.open(info) as fh:
            assert fh.read(1024**2) == bytes(1024**2)


def test_zip_bomb_is_refused_early_with_bounded_memory(zip_bomb: Path) -> None:
    with _PeakRSS() as rss, pytest.raises(ImageTooLargeError, match="times its own size"):
        load_scan(zip_bomb)
    assert rss.peak < 2 * GIB and rss.growth < GIB, (rss.peak, rss.growth)
    with pytest.raises(ImageTooLargeError, match="times its own size"):
        load_scan(zip_bomb.read_bytes())  # the same upload as bytes


def test_zip_caps_hold_without_trusting_the_zip_directory(tmp_path: Path) -> None:
    # 200 MiB of zeros: under the ratio grace, so only the byte cap can stop it.
    bomb = bombs.zip_of_zeros(tmp_path / "b.zip", 200 * 1024**2)
    limits = DecodeLimits(max_bytes=100 * 1024**2, max_zip_ratio=1e9)
    with _PeakRSS() as rss, pytest.raises(ImageTooLargeError, match=r"0\.1 GiB"):
        load_scan(bomb, limits=limits)
    assert rss.growth < 400 * 1024**2
    # A directory that understates the size: reading stops at the declared size and the
    # checksum then fails, so the member is refused as damaged, not trusted.
    liar = bombs.zip_of_zeros(tmp_path / "l.zip", 200 * 1024**2, declared=1000)
    with pytest.raises(CorruptScanError, match="damaged"):
        load_scan(liar)
    many = io.BytesIO()
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(30):
            zf.writestr(f"f{i}.dcm", b"x")
    with pytest.raises(ImageTooLargeError, match="more than 20 files"):
        load_scan(many.getvalue(), limits=DecodeLimits(max_files=20))


def test_normal_zipped_series_still_loads() -> None:
    vol = np.arange(4 * 16 * 16, dtype=np.int16).reshape(4, 16, 16)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, ds in enumerate(f.ct_series(vol)):
            zf.writestr(f"s/{i}.dcm", f.to_bytes(ds))
    assert load_scan(buf.getvalue()).shape == (4, 16, 16)


def test_deflated_dicom_declaring_20000_squared_is_refused_before_inflating() -> None:
    bomb = bombs.deflated_dicom_of_zeros(20000, 20000)  # 400 MB of pixels in ~400 kB
    assert len(bomb) < 1024**2
    with _PeakRSS() as rss, pytest.raises(ImageTooLargeError, match="20000 x 20000") as err:
        load_scan(bomb)
    assert "100 million pixels" in str(err.value)
    assert rss.growth < 200 * 1024**2, rss.growth  # far less than the 400 MB of pixels


def test_deflated_dicom_holding_more_than_its_header_declares_is_refused() -> None:
    liar = bombs.deflated_dicom_of_zeros(64, 64, pixel_bytes=300 * 1024**2)
    with _PeakRSS() as rss, pytest.raises(CorruptScanError, match="more data than its header"):
        load_scan(liar)
    assert rss.growth < 200 * 1024**2, rss.growth


def test_valid_deflated_dicom_loads_and_the_frame_cap_is_configurable() -> None:
    data = bombs.deflated_dicom_of_zeros(300, 200)
    scan = load_scan(data)
    assert scan.shape == (300, 200) and float(scan.array.max()) == 0.0
    with pytest.raises(ImageTooLargeError, match="300 x 200"):
        load_scan(data, limits=DecodeLimits(max_frame_pixels=50_000))
    plain = f.to_bytes(f.ct_slice(np.zeros((300, 200), np.int16)))
    with pytest.raises(ImageTooLargeError, match="per image"):
        load_scan(plain, limits=DecodeLimits(max_frame_pixels=50_000))


def test_frame_cap_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDTL_MAX_FRAME_PIXELS", "1000")
    with pytest.raises(ImageTooLargeError, match="1,000 pixels per image"):
        load_scan(f.to_bytes(f.ct_slice(np.zeros((40, 40), np.int16))))


def test_nifti_gz_bomb_is_refused_from_its_header() -> None:
    bomb = bombs.nifti_gz_of_zeros((12000, 12000))  # 576 MB of float32 in ~570 kB
    with _PeakRSS() as rss, pytest.raises(ImageTooLargeError, match="12000 x 12000"):
        load_scan(bomb)
    assert rss.growth < 100 * 1024**2, rss.growth


def test_every_refusal_is_a_scan_error() -> None:
    assert issubclass(ImageTooLargeError, ScanError)


def test_codestream_declaring_more_than_the_dicom_header_is_refused_before_decoding() -> None:
    # A JPEG 2000 frame whose SIZ marker claims 50000 x 50000 (openjpeg would allocate
    # about 5 GB for it) behind a DICOM header that declares 64 x 64.
    from pydicom.encaps import encapsulate, generate_frames
    from pydicom.uid import JPEG2000Lossless

    ds = f.encode(f.ct_slice(np.zeros((64, 64), np.int16)), JPEG2000Lossless)
    (frame,) = generate_frames(ds.PixelData, number_of_frames=1)
    crafted = bytearray(frame)
    assert crafted[:4] == b"\xff\x4f\xff\x51"  # SOC, SIZ
    crafted[8:16] = (50000).to_bytes(4, "big") * 2  # Xsiz, Ysiz
    ds.PixelData = encapsulate([bytes(crafted)])
    with _PeakRSS() as rss, pytest.raises(CorruptScanError, match="50000 x 50000"):
        load_scan(f.to_bytes(ds))
    assert rss.growth < 100 * 1024**2, rss.growth


def test_deflated_header_with_pixel_tag_bytes_inside_a_value_still_loads() -> None:
    # Bytes that look like the Pixel Data element inside an earlier value must not end the
    # header read (here the real one comes 3 MiB later).
    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = f.ct_slice(np.arange(64 * 64, dtype=np.int16).reshape(64, 64))
    ds.add_new(0x00091010, "LO", "MEDTL")  # private creator
    ds.add_new(0x00091011, "OB", b"\xe0\x7f\x10\x00OB\x00\x00" * 4)
    ds.add_new(0x00091012, "OB", bytes(3 * 1024**2))  # a large header after the look-alike
    data = f.to_bytes(f.encode(ds, DeflatedExplicitVRLittleEndian))
    scan = load_scan(data)
    want = pydicom.dcmread(io.BytesIO(data)).pixel_array.astype(np.float32) - 1024
    assert scan.shape == (64, 64) and np.array_equal(scan.array, want)
