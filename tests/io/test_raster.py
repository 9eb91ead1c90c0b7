"""PNG/JPEG loading: modes, luminance, spacing from pHYs/JFIF, size limits, PHI-free meta."""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from medtl.io.errors import CorruptScanError, ImageTooLargeError, UnsupportedFormatError
from medtl.io.raster import load_raster
from medtl.io.scan import Scan


def encode(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def gradient(h: int = 6, w: int = 8, dtype=np.uint8, scale: int = 1) -> np.ndarray:
    return (np.arange(h * w).reshape(h, w) * scale).astype(dtype)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def test_8bit_grey_png() -> None:
    arr = gradient()
    scan = load_raster(encode(Image.fromarray(arr)))
    assert isinstance(scan, Scan) and scan.ndim == 2
    np.testing.assert_array_equal(scan.array, arr.astype(np.float32))
    assert scan.array.dtype == np.float32
    assert scan.spacing == (1.0, 1.0)
    np.testing.assert_array_equal(scan.affine, np.eye(4))
    assert scan.modality == "OT" and scan.source_format == "png"
    assert scan.meta["spacing_source"] == "default" and scan.meta["bits_per_sample"] == 8
    assert any("1 mm per pixel" in w for w in scan.warnings)


def test_16bit_png_keeps_full_range() -> None:
    arr = gradient(scale=1300, dtype=np.uint16)
    arr[0, 0] = 65535
    scan = load_raster(encode(Image.fromarray(arr)), modality="dx")
    np.testing.assert_array_equal(scan.array, arr.astype(np.float32))
    assert scan.modality == "DX" and scan.meta["bits_per_sample"] == 16


def test_16bit_big_endian_source() -> None:
    arr = gradient(scale=1000, dtype=np.uint16)
    img = Image.frombytes("I;16B", (arr.shape[1], arr.shape[0]), arr.astype(">u2").tobytes())
    assert img.mode == "I;16B"
    scan = load_raster(encode(img))
    np.testing.assert_array_equal(scan.array, arr.astype(np.float32))


def test_grey_saved_as_rgb_is_not_warned() -> None:
    arr = gradient()
    rgb = Image.fromarray(np.stack([arr] * 3, axis=-1))
    scan = load_raster(encode(rgb))
    np.testing.assert_array_equal(scan.array, arr.astype(np.float32))
    assert not any("colour" in w for w in scan.warnings)


def test_colour_rgb_becomes_luminance_with_warning() -> None:
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 255, 0)
    rgb[0, 2] = (0, 0, 255)
    rgb[1, :] = (10, 20, 30)
    scan = load_raster(encode(Image.fromarray(rgb)))
    expected = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(scan.array, expected, rtol=1e-5)
    assert any("luminance" in w for w in scan.warnings)


def test_rgba_palette_and_la() -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., :3] = 100
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0
    scan = load_raster(encode(Image.fromarray(rgba)))
    assert np.all(scan.array == 100) and any("transparency" in w for w in scan.warnings)

    pal = Image.fromarray(gradient(2, 2)).convert("P")
    scan = load_raster(encode(pal))
    np.testing.assert_array_equal(scan.array, gradient(2, 2).astype(np.float32))

    la = Image.fromarray(np.stack([gradient(2, 2), np.full((2, 2), 255, np.uint8)], -1), "LA")
    scan = load_raster(encode(la))
    np.testing.assert_array_equal(scan.array, gradient(2, 2).astype(np.float32))
    assert not any("transparency" in w for w in scan.warnings)


def test_bilevel_png() -> None:
    img = Image.fromarray(np.array([[0, 255], [255, 0]], dtype=np.uint8)).convert("1")
    scan = load_raster(encode(img))
    np.testing.assert_array_equal(scan.array, [[0, 255], [255, 0]])


def test_png_phys_sets_spacing_in_row_column_order() -> None:
    # 254 dpi across (0.1 mm columns), 127 dpi down (0.2 mm rows)
    scan = load_raster(encode(Image.fromarray(gradient()), dpi=(254, 127)))
    np.testing.assert_allclose(scan.spacing, (0.2, 0.1), rtol=1e-3)
    np.testing.assert_allclose(np.diag(scan.affine)[:2], (0.2, 0.1), rtol=1e-3)
    assert scan.meta["spacing_source"] == "dpi"
    assert not any("1 mm per pixel" in w for w in scan.warnings)


def test_screen_default_dpi_is_ignored() -> None:
    scan = load_raster(encode(Image.fromarray(gradient()), "JPEG", dpi=(72, 72)))
    assert scan.spacing == (1.0, 1.0) and scan.meta["spacing_source"] == "default"


def test_jpeg_grey_with_density(tmp_path) -> None:
    arr = np.full((16, 16), 120, dtype=np.uint8)
    path = tmp_path / "x.jpg"
    path.write_bytes(encode(Image.fromarray(arr), "JPEG", quality=95, dpi=(300, 300)))
    scan = load_raster(path)
    assert scan.source_format == "jpeg" and scan.shape == (16, 16)
    assert np.abs(scan.array - 120).max() <= 2
    np.testing.assert_allclose(scan.spacing, (25.4 / 300, 25.4 / 300), rtol=1e-3)


def test_jpeg_exif_orientation_is_applied() -> None:
    arr = np.zeros((8, 16), dtype=np.uint8)
    arr[:, :8] = 255  # bright left half
    exif = Image.Exif()
    exif[0x0112] = 6  # stored image must be rotated 90 degrees clockwise for display
    scan = load_raster(encode(Image.fromarray(arr), "JPEG", quality=100, exif=exif))
    assert scan.shape == (16, 8)
    assert scan.array[:8].mean() > 200 and scan.array[8:].mean() < 50  # left -> top
    assert any("EXIF orientation" in w for w in scan.warnings)


def test_text_chunks_exif_and_comments_never_reach_meta() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Patient", "DOE^JANE")
    info.add_text("ID", "MRN-8675309", zip=True)
    info.add_itxt("Comment", "DOE^JANE born 19700101")
    png = load_raster(encode(Image.fromarray(gradient()), pnginfo=info))
    exif = Image.Exif()
    exif[0x010E] = "DOE^JANE MRN-8675309"  # ImageDescription
    jpg = load_raster(
        encode(Image.fromarray(gradient()), "JPEG", exif=exif, comment=b"DOE^JANE MRN-8675309")
    )
    for scan in (png, jpg):
        text = json.dumps(scan.summary())
        assert "DOE" not in text and "8675309" not in text and "19700101" not in text


def test_max_pixels_refused_before_decoding() -> None:
    with pytest.raises(ImageTooLargeError, match="limit of 40 pixels"):
        load_raster(encode(Image.fromarray(gradient())), max_pixels=40)


def forged_png(width: int, height: int) -> bytes:
    """A PNG whose header claims a size its tiny pixel data does not have."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 10))
        + png_chunk(b"IEND", b"")
    )


def test_forged_huge_png_header_is_refused_without_decoding() -> None:
    with pytest.raises(ImageTooLargeError, match="decompression bomb"):
        load_raster(forged_png(200_000, 200_000))  # Pillow's own bomb error
    with pytest.raises(ImageTooLargeError, match="9000 x 9000"):
        load_raster(forged_png(9000, 9000), max_pixels=1_000_000)  # our limit, header only


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files_are_corrupt(fmt: str) -> None:
    rng = np.random.default_rng(0)
    raw = encode(Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)), fmt)
    with pytest.raises(CorruptScanError, match="truncated or damaged"):
        load_raster(raw[: len(raw) // 2])


def test_other_formats_are_refused() -> None:
    with pytest.raises(UnsupportedFormatError, match="GIF"):
        load_raster(encode(Image.fromarray(gradient()), "GIF"))
    with pytest.raises(UnsupportedFormatError):
        load_raster(b"this is not an image")


def test_animated_png_loads_first_frame_with_warning() -> None:
    first, second = Image.fromarray(gradient()), Image.fromarray(gradient()[::-1].copy())
    raw = encode(first, save_all=True, append_images=[second])
    scan = load_raster(raw)
    np.testing.assert_array_equal(scan.array, gradient().astype(np.float32))
    assert any("2 frames" in w for w in scan.warnings)


def test_truncated_png_refused_even_after_weasyprint_import(monkeypatch) -> None:
    """WeasyPrint turns Pillow's LOAD_TRUNCATED_IMAGES on process-wide; we still refuse."""
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    rng = np.random.default_rng(1)
    raw = encode(Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)), "PNG")
    with pytest.raises(CorruptScanError, match="truncated or damaged"):
        load_raster(raw[: len(raw) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored for the other library
