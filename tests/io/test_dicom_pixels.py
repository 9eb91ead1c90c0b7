"""Single DICOM images: modality LUT, polarity, colour, transfer syntaxes, damaged files."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import convert_color_space, get_decoder
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from medtl.io.dicom import read_dataset
from medtl.io.dicom_pixels import DECODER_PACKAGES, decode_frames
from medtl.io.errors import (
    CorruptScanError,
    MissingDecoderError,
    NonImageObjectError,
    ScanError,
    UnsupportedImageError,
)
from medtl.io.series import load_dicom
from tests.io import dicom_factory as f


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDTL_HOME", str(tmp_path / "home"))


def _ct_pixels(shape=(32, 32), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 3000, shape).astype(np.int16)


def _load(ds: Dataset):
    return load_dicom([f.to_bytes(ds)])


def test_ct_slice_hounsfield_units_spacing_affine_window():
    px = _ct_pixels()
    ds = f.ct_slice(
        px,
        rescale=(1.0, -1024.0),
        pixel_spacing=(0.6, 0.8),
        position=(-5.0, 7.0, 12.5),
        window=([40, 400], [400, 1500]),
    )
    scan = _load(ds)
    assert scan.array.dtype == np.float32 and scan.array.flags.c_contiguous
    np.testing.assert_array_equal(scan.array, px.astype(np.float32) - 1024)
    assert scan.shape == (32, 32) and scan.modality == "CT" and scan.source_format == "dicom"
    assert scan.spacing == (0.6, 0.8)
    # rows run along the column cosines (y, 0.6 mm), columns along the row cosines (x).
    np.testing.assert_allclose(scan.affine[:3, :2], [[0, 0.8], [0.6, 0], [0, 0]])
    np.testing.assert_allclose(scan.affine[:3, 3], [-5.0, 7.0, 12.5])
    assert scan.window is not None and (scan.window.center, scan.window.width) == (40.0, 400.0)
    assert scan.warnings == []


def test_mr_slice_float_rescale():
    px = _ct_pixels(seed=1).astype(np.uint16)
    scan = _load(f.mr_slice(px, rescale=(0.5, 3.0)))
    np.testing.assert_array_equal(scan.array, px.astype(np.float32) * 0.5 + 3.0)
    assert scan.modality == "MR"


def test_cr_monochrome1_inverted_exactly_with_bit_depth_range_and_window():
    px = _ct_pixels(seed=2).astype(np.uint16) % 4096
    ds = f.cr_image(px, photometric="MONOCHROME1", bits_stored=12, window=(1000, 500))
    scan = _load(ds)
    np.testing.assert_array_equal(scan.array, 4095.0 - px.astype(np.float32))
    assert scan.window is not None and scan.window.center == 4095 - 1000
    assert scan.spacing == (0.2, 0.2)
    assert any("orientation unknown" in w for w in scan.warnings)


def test_monochrome1_with_rescale_inverts_in_modality_units():
    px = (_ct_pixels(seed=3) % 256).astype(np.uint8)
    ds = f.cr_image(px, photometric="MONOCHROME1", rescale=(2.0, 10.0))
    scan = _load(ds)
    lo, hi = 10.0, 255 * 2.0 + 10.0
    np.testing.assert_array_equal(scan.array, lo + hi - (px.astype(np.float32) * 2 + 10))


def test_dx_uses_imager_pixel_spacing_with_warning_and_patient_orientation():
    px = (_ct_pixels(seed=4) % 1024).astype(np.uint16)
    ds = f.dx_image(px, imager_pixel_spacing=(0.14, 0.15), PatientOrientation=["L", "F"])
    scan = _load(ds)
    np.testing.assert_array_equal(scan.array, px.astype(np.float32))
    assert scan.spacing == (0.14, 0.15)
    assert any("ImagerPixelSpacing" in w for w in scan.warnings)
    # row index goes to the feet (-z), column index to the patient's left (+x).
    np.testing.assert_allclose(scan.affine[:3, 0], [0, 0, -0.14])
    np.testing.assert_allclose(scan.affine[:3, 1], [0.15, 0, 0])


def test_signed_12_bit_values_are_sign_extended():
    px = np.array([[-2048, -1, 0, 2047]] * 4, dtype=np.int16)
    px = np.tile(px, (8, 8))
    scan = _load(f.ct_slice(px, rescale=(1.0, 0.0), bits_stored=12))
    np.testing.assert_array_equal(scan.array, px.astype(np.float32))


def test_unused_high_bits_are_masked_and_sign_extended():
    # 12 stored bits in 16: garbage in the top nibble must be ignored (unsigned), and 12-bit
    # two's complement written without sign extension must still read as negative (signed).
    unsigned = np.tile(np.array([[0x0FFF, 0xF001, 0x1002, 5]], dtype=np.uint16), (8, 8))
    scan = _load(f.cr_image(unsigned, bits_stored=12))
    np.testing.assert_array_equal(scan.array[0, :4], [4095, 1, 2, 5])
    raw = np.tile(np.array([[0x0FFF, 0x0800, 0x07FF, 5]], dtype=np.uint16), (8, 8))
    scan = _load(f.ct_slice(raw.view(np.int16), rescale=(1.0, 0.0), bits_stored=12))
    np.testing.assert_array_equal(scan.array[0, :4], [-1, -2048, 2047, 5])


def test_modality_lut_sequence_is_applied():
    px = (np.arange(32 * 32).reshape(32, 32) % 16).astype(np.uint16)
    ds = f.cr_image(px, bits_stored=12)
    item = Dataset()
    item.LUTDescriptor = [16, 0, 16]
    item.ModalityLUTType = "US"
    lut = [i * i + 5 for i in range(16)]
    item.LUTData = np.asarray(lut, dtype="<u2").tobytes()
    ds.ModalityLUTSequence = DicomSequence([item])
    scan = _load(ds)
    np.testing.assert_array_equal(scan.array, np.asarray(lut, dtype=np.float32)[px])


def test_rgb_is_converted_to_bt601_luminance_with_warning():
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    scan = _load(f.image_dataset(rgb, modality="OT", photometric="RGB"))
    want = (
        rgb[..., 0].astype(np.float32) * 0.299
        + rgb[..., 1].astype(np.float32) * 0.587
        + rgb[..., 2].astype(np.float32) * 0.114
    )
    np.testing.assert_allclose(scan.array, want, rtol=1e-6)
    assert any("luminance" in w for w in scan.warnings)


def test_ybr_full_native_is_converted_to_rgb_then_luminance():
    rng = np.random.default_rng(6)
    rgb = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    scan = _load(f.image_dataset(ybr, modality="OT", photometric="YBR_FULL"))
    want = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(scan.array, want, atol=1.5)


def test_jpeg_baseline_colour_ybr_422():
    yy, xx = np.mgrid[0:32, 0:32]
    rgb = np.stack([yy * 8, xx * 8, 128 + 0 * xx], axis=-1).astype(np.uint8)
    ds = f.encode(
        f.image_dataset(rgb, modality="OT", photometric="RGB"), JPEGBaseline8Bit, quality=95
    )
    assert ds.PhotometricInterpretation == "YBR_FULL_422"
    scan = _load(ds)
    want = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    assert np.abs(scan.array - want).mean() < 3.0


def test_palette_color_is_refused_with_reason():
    ds = f.image_dataset(np.zeros((8, 8), np.uint8), modality="OT", photometric="PALETTE COLOR")
    with pytest.raises(UnsupportedImageError, match="pseudo-colour"):
        _load(ds)


_SMOOTH = ((np.add.outer(np.arange(32), np.arange(32)) * 20) % 2000 + 100).astype(np.int16)


@pytest.mark.parametrize(
    "syntax",
    [
        ImplicitVRLittleEndian,
        ExplicitVRBigEndian,
        DeflatedExplicitVRLittleEndian,
        RLELossless,
        JPEGLSLossless,
        JPEG2000Lossless,
    ],
)
def test_lossless_transfer_syntaxes_decode_exactly(syntax):
    ds = f.encode(f.ct_slice(_SMOOTH), syntax)
    data = f.to_bytes(ds)
    assert read_dataset(data).file_meta.TransferSyntaxUID == syntax
    scan = load_dicom([data])
    np.testing.assert_array_equal(scan.array, _SMOOTH.astype(np.float32) - 1024)
    assert scan.meta["transfer_syntax"] == syntax.name


@pytest.mark.parametrize("syntax", [JPEGLossless, JPEGLosslessSV1])
def test_jpeg_lossless_process14_decodes_exactly(syntax):
    ds = f.gdcm_encode(f.ct_slice(_SMOOTH.astype(np.uint16).view(np.int16)), syntax)
    assert ds.file_meta.TransferSyntaxUID == syntax
    scan = _load(ds)
    np.testing.assert_array_equal(scan.array, _SMOOTH.astype(np.float32) - 1024)


def test_jpeg_extended_8_bit_decodes_approximately():
    px = (_SMOOTH % 256).astype(np.uint8)
    ds = f.gdcm_encode(f.cr_image(px), JPEGExtended12Bit)
    scan = _load(ds)
    assert np.abs(scan.array - px.astype(np.float32)).max() < 16


def test_jpeg_extended_12_bit_says_which_decoder_is_missing():
    px = (_SMOOTH % 4096).astype(np.uint16)
    ds = f.gdcm_encode(f.cr_image(px, bits_stored=12), JPEGExtended12Bit)
    with pytest.raises(MissingDecoderError, match="pylibjpeg-libjpeg"):
        _load(ds)


def test_jpeg_baseline_grey():
    px = (_SMOOTH % 256).astype(np.uint8)
    scan = _load(f.encode(f.cr_image(px), JPEGBaseline8Bit, quality=95))
    assert np.abs(scan.array - px.astype(np.float32)).max() < 12
    assert np.abs(scan.array - px.astype(np.float32)).mean() < 2


def test_jpeg_2000_lossy_is_close():
    ds = f.encode(f.ct_slice(_SMOOTH), JPEG2000, j2k_cr=[5])
    scan = _load(ds)
    err = np.abs(scan.array - (_SMOOTH.astype(np.float32) - 1024))
    assert 0 < err.max() < 200 and err.mean() < 20


def test_jpeg_ls_near_lossless_within_error_bound():
    ds = f.encode(f.ct_slice(_SMOOTH), JPEGLSNearLossless, jls_error=3)
    scan = _load(ds)
    err = np.abs(scan.array - (_SMOOTH.astype(np.float32) - 1024))
    assert err.max() <= 3


def test_missing_decoder_names_the_package(monkeypatch):
    ds = f.encode(f.ct_slice(_SMOOTH), RLELossless)
    monkeypatch.setattr(get_decoder(RLELossless), "_available", {})
    with pytest.raises(MissingDecoderError) as info:
        _load(ds)
    assert "pip install pylibjpeg pylibjpeg-rle" in str(info.value)
    assert set(DECODER_PACKAGES) >= {str(JPEGLossless), str(JPEG2000), str(JPEGLSLossless)}


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_truncated_pixel_data_is_corrupt(keep):
    data = f.to_bytes(f.ct_slice(_SMOOTH))
    with pytest.raises(CorruptScanError, match="truncated"):
        load_dicom([data[: int(len(data) * keep)]])


def test_truncated_compressed_pixel_data_is_corrupt():
    data = f.to_bytes(f.encode(f.ct_slice(_SMOOTH), JPEG2000Lossless))
    with pytest.raises(CorruptScanError):
        load_dicom([data[:-200]])


@pytest.mark.parametrize("kind", ["SEG", "SR", "RTSTRUCT", "KO", "PR"])
def test_non_image_objects_are_refused(kind):
    with pytest.raises(NonImageObjectError, match="not an image"):
        _load(f.non_image(kind, with_pixels=kind == "SEG"))


def test_file_without_pixel_data_is_refused():
    ds = f.non_image("SR")
    ds.SOPClassUID = "1.2.3.4"  # an unknown class, and no pixel data
    with pytest.raises(NonImageObjectError, match="without pixel data"):
        _load(ds)


def test_decode_frames_errors_are_scan_errors():
    ds = f.ct_slice(_SMOOTH)
    ds.Rows = 0
    with pytest.raises(CorruptScanError, match="invalid image size"):
        decode_frames(ds)
    ds = f.ct_slice(_SMOOTH)
    ds.RescaleSlope = "nan"
    with pytest.raises(ScanError):
        decode_frames(ds)


def test_messages_never_contain_phi():
    ds = f.ct_slice(_SMOOTH)
    data = f.to_bytes(ds)
    for bad in (data[: len(data) // 2], data[:300], b"not dicom at all, " + data[:50]):
        with pytest.raises(ScanError) as info:
            load_dicom([bad])
        text = str(info.value)
        for phi in (f.PATIENT_NAME, "Doe", f.PATIENT_ID, f.PATIENT_BIRTH_DATE):
            assert phi not in text
    scan = load_dicom([data])
    blob = repr(scan.meta) + repr(scan.warnings)
    for phi in (
        f.PATIENT_NAME,
        "Doe",
        f.PATIENT_ID,
        f.PATIENT_BIRTH_DATE,
        ds.SeriesInstanceUID,
        ds.StudyInstanceUID,
        "General Hospital",
    ):
        assert phi not in blob
    assert scan.meta["deidentified"] is True


def test_unknown_transfer_syntax_is_refused_with_advice():
    ds = f.encode(f.ct_slice(_SMOOTH), RLELossless)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 video
    with pytest.raises(UnsupportedImageError, match="Re-export"):
        _load(ds)


def test_enhanced_frame_voi_lut_window_is_kept():
    vol = np.stack([_SMOOTH, _SMOOTH])
    ds = f.enhanced_multiframe(vol)
    voi = Dataset()
    voi.WindowCenter, voi.WindowWidth = [50.0, 300.0], [350.0, 1500.0]
    ds.SharedFunctionalGroupsSequence[0].FrameVOILUTSequence = DicomSequence([voi])
    scan = _load(ds)
    assert scan.window is not None and (scan.window.center, scan.window.width) == (50.0, 350.0)
    np.testing.assert_array_equal(scan.array, vol - 1024.0)
