"""DICOM series: sorting, geometry checks, series choice, multi-frame, stacking."""

from __future__ import annotations

import random

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

from medtl.io.errors import (
    CorruptScanError,
    ImageTooLargeError,
    NonImageObjectError,
    ScanError,
    SeriesError,
    UnsupportedImageError,
)
from medtl.io.series import load_dicom
from tests.io import dicom_factory as f


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDTL_HOME", str(tmp_path / "home"))


def _volume(n=6, rows=16, cols=12, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 3000, (n, rows, cols)).astype(np.int16)


def _shuffled_bytes(datasets, seed=3) -> list[bytes]:
    blobs = [f.to_bytes(ds) for ds in datasets]
    random.Random(seed).shuffle(blobs)
    return blobs


def test_shuffled_series_sorted_by_position_not_instance_number_or_name(tmp_path):
    vol = _volume()
    # Column cosines point to -y, so the normal is -z: slices go *down* in z as k grows.
    iop = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
    dss = f.ct_series(
        vol,
        spacing=(2.5, 0.7, 0.9),
        origin=(-10.0, 20.0, 100.0),
        orientation=iop,
        scramble_instance_numbers=True,
    )
    assert [int(d.InstanceNumber) for d in dss] != sorted(int(d.InstanceNumber) for d in dss)
    paths = f.write_series(dss, tmp_path / "series", shuffle_seed=7)
    scan = load_dicom(sorted(paths))
    np.testing.assert_array_equal(scan.array, vol.astype(np.float32) - 1024)
    assert scan.array.dtype == np.float32 and scan.array.flags.c_contiguous
    assert scan.spacing == pytest.approx((2.5, 0.7, 0.9))
    want = np.array([[0, 0, 0.9, -10.0], [0, -0.7, 0, 20.0], [-2.5, 0, 0, 100.0], [0, 0, 0, 1]])
    np.testing.assert_allclose(scan.affine, want, atol=1e-9)
    assert scan.warnings == []
    assert scan.summary()["orientation"] == "FAL"  # slices to feet, rows anterior, cols left
    assert scan.meta["number_of_files"] == 6 and scan.meta["series_choice"] == "only series"
    # Same answer from bytes in another order, serially.
    again = load_dicom(_shuffled_bytes(dss, seed=11), max_workers=1)
    np.testing.assert_array_equal(again.array, scan.array)


def test_oblique_series_sorted_along_normal():
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    iop = (c, s, 0.0, 0.0, 0.0, -1.0)  # a tilted coronal-ish plane
    vol = _volume(n=5)
    scan = load_dicom(_shuffled_bytes(f.ct_series(vol, orientation=iop, spacing=(3.0, 1, 1))))
    np.testing.assert_array_equal(scan.array, vol.astype(np.float32) - 1024)
    normal = np.cross(iop[:3], iop[3:])
    np.testing.assert_allclose(scan.affine[:3, 0], 3.0 * normal, atol=1e-9)
    assert scan.warnings == []


def test_missing_slice_is_reported():
    vol = _volume(n=8)
    dss = f.ct_series(vol, spacing=(2.0, 0.5, 0.5), drop=(4,))
    scan = load_dicom(_shuffled_bytes(dss))
    np.testing.assert_array_equal(scan.array, np.delete(vol, 4, axis=0) - 1024.0)
    assert scan.spacing[0] == pytest.approx(2.0)
    missing = [w for w in scan.warnings if "missing" in w]
    assert len(missing) == 1 and "About 1 slice(s)" in missing[0] and "4 mm" in missing[0]


def test_gantry_tilt_is_reported_with_angle_and_sheared_affine():
    vol = _volume(n=5)
    scan = load_dicom(_shuffled_bytes(f.ct_series(vol, spacing=(2.0, 0.5, 0.5), tilt_deg=15.0)))
    np.testing.assert_array_equal(scan.array, vol - 1024.0)
    tilt = [w for w in scan.warnings if "Gantry tilt" in w]
    assert len(tilt) == 1 and "15.00 degrees" in tilt[0]
    assert scan.spacing[0] == pytest.approx(2.0)
    np.testing.assert_allclose(scan.affine[:3, 0], [0, 2.0 * np.tan(np.radians(15)), 2.0])


def test_non_uniform_spacing_is_reported():
    vol = _volume(n=6)
    dss = f.ct_series(vol, spacing=(2.0, 0.5, 0.5), origin=(0, 0, 0))
    for k, z in enumerate([0.0, 2.0, 4.0, 6.6, 8.6, 10.6]):
        dss[k].ImagePositionPatient = [0.0, 0.0, z]
    scan = load_dicom(_shuffled_bytes(dss))
    np.testing.assert_array_equal(scan.array, vol - 1024.0)
    assert scan.spacing[0] == pytest.approx(2.0)
    assert any("not uniform" in w and "2.6" in w for w in scan.warnings)


def test_duplicate_positions_and_repeated_files():
    vol = _volume(n=4)
    dss = f.ct_series(vol)
    extra = f.ct_slice(
        vol[1],
        position=dss[1].ImagePositionPatient,
        series_uid=dss[0].SeriesInstanceUID,
        pixel_spacing=(0.5, 0.5),
    )
    blobs = [f.to_bytes(d) for d in dss]
    scan = load_dicom([*blobs, blobs[2], f.to_bytes(extra)])
    assert scan.shape[0] == 5
    assert any("repeated file" in w for w in scan.warnings)
    assert any("share a position" in w for w in scan.warnings)


def test_mixed_orientations_refused():
    vol = _volume(n=4)
    dss = f.ct_series(vol)
    dss[2].ImageOrientationPatient = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
    with pytest.raises(SeriesError, match="orientations"):
        load_dicom(_shuffled_bytes(dss))


def test_mixed_sizes_refused():
    dss = f.ct_series(_volume(n=3))
    other = f.ct_series(
        _volume(n=1, rows=8), series_uid=dss[0].SeriesInstanceUID, origin=(-10.0, -20.0, 40.0)
    )
    with pytest.raises(SeriesError, match="image sizes"):
        load_dicom(_shuffled_bytes(dss + other))


def test_several_series_choice_tie_and_series_uid():
    a = f.ct_series(_volume(n=5, seed=1))
    b = f.ct_series(_volume(n=3, seed=2))
    scan = load_dicom(_shuffled_bytes(a + b))
    assert scan.shape[0] == 5 and scan.meta["number_of_series"] == 2
    assert any("2 series" in w for w in scan.warnings)
    chosen = load_dicom(_shuffled_bytes(a + b), series_uid=str(b[0].SeriesInstanceUID))
    assert chosen.shape[0] == 3 and chosen.meta["series_choice"] == "requested series_uid"
    pseudo = chosen.meta["series_uid"]
    assert pseudo and pseudo != b[0].SeriesInstanceUID
    by_pseudo = load_dicom(_shuffled_bytes(a + b), series_uid=pseudo)
    np.testing.assert_array_equal(by_pseudo.array, chosen.array)
    c = f.ct_series(_volume(n=5, seed=3))
    with pytest.raises(SeriesError, match="cannot choose") as info:
        load_dicom(_shuffled_bytes(a + c))
    text = str(info.value)
    assert a[0].SeriesInstanceUID not in text and c[0].SeriesInstanceUID not in text
    assert "5 images" in text
    with pytest.raises(SeriesError, match="No series with the requested UID"):
        load_dicom(_shuffled_bytes(a), series_uid="1.2.3")


def _dicomdir() -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.FileSetID = "X"
    ds.DirectoryRecordSequence = DicomSequence([])
    return ds


def test_non_dicom_dicomdir_and_non_images_in_folder_are_ignored():
    vol = _volume(n=3)
    blobs = _shuffled_bytes(f.ct_series(vol))
    extras = [
        b"readme text",
        f.to_bytes(_dicomdir()),
        f.to_bytes(f.non_image("SR")),
        f.to_bytes(f.non_image("SEG", with_pixels=True)),
    ]
    scan = load_dicom([*extras, *blobs])
    np.testing.assert_array_equal(scan.array, vol - 1024.0)
    assert any("1 non-DICOM" in w for w in scan.warnings)
    ignored = [w for w in scan.warnings if "non-image" in w]
    assert len(ignored) == 1 and "DICOMDIR" in ignored[0] and "(SR)" in ignored[0]
    with pytest.raises(NonImageObjectError):
        load_dicom(extras[1:])


def test_several_radiographs_without_positions_refused():
    dss = [f.cr_image(np.zeros((8, 8), np.uint16), series_uid="1.2.3.4") for _ in range(2)]
    with pytest.raises(SeriesError, match="2 of the 2 images in the series have no slice position"):
        load_dicom([f.to_bytes(d) for d in dss])


def test_corrupt_file_in_series_named_by_index_only(tmp_path):
    dss = f.ct_series(_volume(n=4))
    paths = f.write_series(dss, tmp_path / "Doe_Jane_PID-98765")
    paths[2].write_bytes(paths[2].read_bytes()[:-100])
    with pytest.raises(CorruptScanError) as info:
        load_dicom(paths)
    assert "File 3 of 4" in str(info.value) and "Doe" not in str(info.value)


def test_classic_multiframe_frames_stacked_with_warning():
    vol = _volume(n=4).astype(np.uint16)
    ds = f.multiframe(
        vol,
        modality="MR",
        SpacingBetweenSlices=3.0,
        ImagePositionPatient=[1.0, 2.0, 3.0],
        ImageOrientationPatient=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
    )
    scan = load_dicom([f.to_bytes(ds)])
    np.testing.assert_array_equal(scan.array, vol.astype(np.float32))
    assert scan.spacing == (3.0, 0.5, 0.5)
    assert any("no per-frame positions" in w and "SpacingBetweenSlices" in w for w in scan.warnings)
    np.testing.assert_allclose(scan.affine[:3, 0], [0, 0, 3.0])
    np.testing.assert_allclose(scan.affine[:3, 3], [1.0, 2.0, 3.0])


def test_enhanced_ct_per_frame_rescale_and_frame_sorting():
    vol = _volume(n=5)
    rescale = [(1.0, -1024.0), (2.0, 0.0), (0.5, 10.0), (1.0, 0.0), (3.0, -5.0)]
    ds = f.enhanced_multiframe(
        vol,
        spacing=(1.25, 0.6, 0.7),
        origin=(5.0, 6.0, -7.0),
        per_frame_rescale=rescale,
        frame_order=[3, 0, 4, 2, 1],
    )
    assert "RescaleSlope" not in ds and "PixelSpacing" not in ds
    scan = load_dicom([f.to_bytes(ds)])
    want = np.stack([vol[k] * np.float32(s) + np.float32(i) for k, (s, i) in enumerate(rescale)])
    np.testing.assert_array_equal(scan.array, want)
    assert scan.spacing == pytest.approx((1.25, 0.6, 0.7))
    np.testing.assert_allclose(scan.affine[:3, 3], [5.0, 6.0, -7.0])
    np.testing.assert_allclose(scan.affine[:3, 0], [0, 0, 1.25])
    assert scan.warnings == []


def test_enhanced_mr_shared_rescale_only():
    vol = _volume(n=3).astype(np.uint16)
    ds = f.enhanced_multiframe(vol, modality="MR", shared_rescale=(0.25, 1.0))
    scan = load_dicom([f.to_bytes(ds)])
    np.testing.assert_array_equal(scan.array, vol.astype(np.float32) * 0.25 + 1.0)
    assert scan.modality == "MR"


def test_single_ct_file_of_series_is_2d():
    vol = _volume(n=1)
    scan = load_dicom([f.to_bytes(f.ct_series(vol, spacing=(3.0, 0.4, 0.6))[0])])
    assert scan.shape == (16, 12) and scan.spacing == (0.4, 0.6)


def test_rle_series_equals_native():
    vol = _volume(n=4)
    dss = f.ct_series(vol)
    compressed = [f.encode(d, RLELossless) for d in dss]
    scan = load_dicom(_shuffled_bytes(compressed), max_workers=2)
    np.testing.assert_array_equal(scan.array, vol - 1024.0)
    assert scan.meta["transfer_syntax"] == "RLE Lossless"


def test_time_series_at_one_position_refused():
    vol = _volume(n=3)
    dss = f.ct_series(vol, spacing=(2.0, 0.5, 0.5))
    for d in dss:
        d.ImagePositionPatient = [0.0, 0.0, 0.0]
    with pytest.raises(UnsupportedImageError, match="same position"):
        load_dicom(_shuffled_bytes(dss))


def test_empty_and_all_junk_inputs():
    with pytest.raises(ScanError):
        load_dicom([])
    with pytest.raises(ScanError, match=r"not DICOM|None of the files"):
        load_dicom([b"abc", b"def"])


def test_series_without_pixel_spacing_assumes_1mm_with_warning():
    vol = _volume(n=3)
    dss = f.ct_series(vol, spacing=(2.0, 0.5, 0.5))
    for d in dss:
        del d.PixelSpacing
    scan = load_dicom(_shuffled_bytes(dss))
    assert scan.spacing == pytest.approx((2.0, 1.0, 1.0))
    assert any("no pixel spacing" in w for w in scan.warnings)


def test_series_size_limit(monkeypatch):
    monkeypatch.setenv("MEDTL_MAX_SERIES_VOXELS", str(16 * 12 * 5))
    dss = f.ct_series(_volume(n=6))
    with pytest.raises(ImageTooLargeError, match="more than the limit of 960 voxels"):
        load_dicom(_shuffled_bytes(dss))
    assert load_dicom(_shuffled_bytes(dss[:5])).shape == (5, 16, 12)
