"""NIfTI loading: reorientation to the LPS (slices, rows, columns) contract, scaling, errors."""

from __future__ import annotations

import gzip
import json
import struct

import nibabel as nib
import numpy as np
import pytest

from medtl.io.errors import (
    CorruptScanError,
    ImageTooLargeError,
    UnsupportedFormatError,
    UnsupportedImageError,
)
from medtl.io.nifti import load_nifti
from medtl.io.scan import orientation_codes

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def unique_volume(shape: tuple[int, ...]) -> np.ndarray:
    return np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape)


def nifti_bytes(data: np.ndarray, affine: np.ndarray, *, klass=nib.Nifti1Image, **hdr) -> bytes:
    img = klass(data, affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    for key, value in hdr.items():
        img.header[key] = value
    return img.to_bytes()


def assert_same_points(scan, data: np.ndarray, affine_ras: np.ndarray) -> None:
    """Every voxel of ``scan`` sits at the LPS point of the same voxel in the file."""
    flat = data.reshape(-1)
    where = np.empty(flat.size, dtype=np.int64)
    where[flat] = np.arange(flat.size)
    original_ijk = np.stack(np.unravel_index(where, data.shape), axis=1)  # by value
    values = scan.array.astype(np.int64)
    new_idx = np.stack(np.indices(values.shape).reshape(values.ndim, -1), axis=1)
    orig = original_ijk[values.reshape(-1)]
    if data.ndim == 2:
        orig = np.c_[orig, np.zeros(len(orig))]
    homo_orig = np.c_[orig, np.ones(len(orig))]
    expected = (RAS_TO_LPS @ affine_ras @ homo_orig.T).T
    pad = [np.zeros((len(new_idx), 1))] if values.ndim == 2 else []
    homo_new = np.concatenate([new_idx, *pad, np.ones((len(new_idx), 1))], axis=1)
    got = (scan.affine @ homo_new.T).T
    np.testing.assert_allclose(got[:, :3], expected[:, :3], atol=1e-5)


def test_ras_axial_volume_becomes_slice_row_column_lps() -> None:
    data = unique_volume((4, 5, 6))
    affine = np.diag([2.0, 3.0, 4.0, 1.0])
    affine[:3, 3] = [10.0, 20.0, 30.0]
    scan = load_nifti(nifti_bytes(data, affine))
    assert scan.shape == (6, 5, 4)
    assert scan.spacing == (4.0, 3.0, 2.0)
    assert orientation_codes(scan.affine) == "HPL"
    # RAS i (towards right) becomes column L (reversed); j (anterior) becomes row P (reversed).
    assert scan.array[0, 0, 0] == data[3, 4, 0]
    assert scan.array[5, 1, 2] == data[4 - 1 - 2, 5 - 1 - 1, 5]
    np.testing.assert_allclose(scan.affine[:3, 3], [-(10 + 2 * 3), -(20 + 3 * 4), 30.0])
    assert_same_points(scan, data, affine)
    assert scan.array.dtype == np.float32 and scan.modality == "OT"
    assert scan.source_format == "nifti" and scan.warnings == []


def test_las_volume() -> None:
    data = unique_volume((3, 4, 5))
    affine = np.diag([-1.5, 1.0, 2.0, 1.0])
    scan = load_nifti(nifti_bytes(data, affine))
    assert orientation_codes(scan.affine) == "HPL"
    assert scan.array[2, 1, 0] == data[0, 4 - 1 - 1, 2]  # L already along i: not reversed
    assert_same_points(scan, data, affine)


def test_oblique_sagittal_acquisition() -> None:
    # i runs anterior->posterior, j feet->head, k right->left, rotated 10 deg about x.
    theta = np.deg2rad(10)
    rot_x = np.array(
        [[1, 0, 0], [0, np.cos(theta), -np.sin(theta)], [0, np.sin(theta), np.cos(theta)]]
    )
    axes = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]]).T  # columns: i, j, k
    affine = np.eye(4)
    affine[:3, :3] = rot_x @ axes @ np.diag([0.8, 0.9, 3.0])
    affine[:3, 3] = [40.0, -25.0, 12.0]
    data = unique_volume((5, 6, 3))
    scan = load_nifti(nifti_bytes(data, affine))
    assert scan.shape == (6, 5, 3)  # (S from j, P from i, L from k)
    assert orientation_codes(scan.affine) == "HPL"
    np.testing.assert_allclose(scan.spacing, (0.9, 0.8, 3.0), atol=1e-6)
    assert scan.array[0, 0, 0] == data[0, 0, 0]
    assert_same_points(scan, data, affine)


def test_axial_nifti_matches_dicom_axial_ct_geometry() -> None:
    """The same volume written as dcm2niix would: array and affine equal the DICOM ones."""
    dicom_vol = unique_volume((4, 6, 5))  # (slices, rows, columns) of an axial CT
    row_sp, col_sp, dz = 0.7, 0.6, 2.5
    ipp0 = np.array([-120.0, -130.0, 55.0])  # LPS position of the first voxel of slice 0
    dicom_affine = np.eye(4)
    dicom_affine[:3, 0] = [0, 0, dz]
    dicom_affine[:3, 1] = [0, row_sp, 0]  # IOP column cosines (0,1,0)
    dicom_affine[:3, 2] = [col_sp, 0, 0]  # IOP row cosines (1,0,0)
    dicom_affine[:3, 3] = ipp0
    lps_ijk = dicom_affine[:, [2, 1, 0, 3]]  # NIfTI voxel order (column, row, slice)
    nifti_affine = RAS_TO_LPS @ lps_ijk
    nifti_data = dicom_vol.transpose(2, 1, 0)
    scan = load_nifti(nifti_bytes(nifti_data, nifti_affine))
    np.testing.assert_array_equal(scan.array, dicom_vol.astype(np.float32))
    np.testing.assert_allclose(scan.affine, dicom_affine, atol=1e-6)
    np.testing.assert_allclose(scan.spacing, (dz, row_sp, col_sp))


def test_gz_path_and_bytes_give_the_same_scan(tmp_path) -> None:
    data = unique_volume((3, 3, 3)).astype(np.int16)
    raw = nifti_bytes(data, np.eye(4))
    path = tmp_path / "vol.nii.gz"
    path.write_bytes(gzip.compress(raw))
    plain = tmp_path / "vol.nii"
    plain.write_bytes(raw)
    a, b, c = load_nifti(path), load_nifti(gzip.compress(raw)), load_nifti(str(plain))
    d = load_nifti(bytearray(raw))
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_array_equal(a.array, d.array)
    np.testing.assert_array_equal(a.array, c.array)
    np.testing.assert_allclose(a.affine, c.affine)


def test_scl_slope_and_inter_are_applied() -> None:
    data = np.array([[[0, 1], [2, 3]], [[4, 5], [6, 7]]], dtype=np.int16)
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_slope_inter(2.0, -1024.0)
    img.header.set_qform(np.eye(4), code=1)
    scan = load_nifti(img.to_bytes(), modality="ct")
    assert scan.modality == "CT"
    assert sorted(scan.array.reshape(-1).tolist()) == [-1024 + 2 * v for v in range(8)]


def test_four_d_keeps_first_volume_with_warning() -> None:
    data = np.stack([unique_volume((2, 3, 4)), unique_volume((2, 3, 4)) + 1000], axis=-1)
    scan = load_nifti(nifti_bytes(data, np.eye(4)))
    assert scan.shape == (4, 3, 2)
    assert scan.array.max() < 1000
    assert any("2 volumes" in w and "first" in w for w in scan.warnings)
    single = load_nifti(nifti_bytes(data[..., :1], np.eye(4)))
    assert single.shape == (4, 3, 2) and single.warnings == []


def test_five_d_is_refused() -> None:
    data = np.zeros((2, 3, 4, 2, 3), dtype=np.int16)
    with pytest.raises(UnsupportedImageError, match="5 dimensions"):
        load_nifti(nifti_bytes(data, np.eye(4)))


def test_two_d_axial_image() -> None:
    data = unique_volume((4, 3))  # RAS: i towards right, j towards anterior
    scan = load_nifti(nifti_bytes(data, np.diag([0.5, 0.25, 1.0, 1.0])))
    assert scan.shape == (3, 4) and scan.ndim == 2
    assert scan.spacing == (0.25, 0.5)
    assert orientation_codes(scan.affine, 2) == "PL"
    assert scan.array[0, 0] == data[3, 2]  # top-left: most anterior and most right
    assert_same_points(scan, data, np.diag([0.5, 0.25, 1.0, 1.0]))


def test_single_coronal_slice_displays_head_up() -> None:
    data = unique_volume((4, 1, 5))  # RAS: i right, k superior, one coronal slice
    affine = np.diag([1.0, 2.0, 3.0, 1.0])
    scan = load_nifti(nifti_bytes(data, affine))
    assert scan.shape == (5, 4)
    assert orientation_codes(scan.affine, 2) == "FL"
    assert scan.array[0, 0] == data[3, 0, 4]  # top row is the most superior
    assert_same_points(scan, data, affine)


def test_header_text_fields_never_reach_meta() -> None:
    data = unique_volume((2, 2, 2))
    raw = nifti_bytes(
        data, np.eye(4), descrip=b"DOE^JANE MRN-8675309", aux_file=b"DOE_JANE", db_name=b"DOE"
    )
    scan = load_nifti(raw)
    text = json.dumps(scan.summary())
    assert "DOE" not in text and "8675309" not in text
    assert scan.meta["nifti_version"] == 1 and scan.meta["original_axcodes"] == "RAS"


def test_missing_orientation_is_warned() -> None:
    img = nib.Nifti1Image(unique_volume((2, 2, 2)), None)
    img.header.set_qform(None, code=0)
    img.header.set_sform(None, code=0)
    scan = load_nifti(img.to_bytes())
    assert any("no orientation" in w for w in scan.warnings)


def test_nifti2_loads() -> None:
    data = unique_volume((3, 4, 2))
    scan = load_nifti(nifti_bytes(data, np.eye(4), klass=nib.Nifti2Image))
    assert scan.meta["nifti_version"] == 2 and scan.shape == (2, 4, 3)


def test_truncated_files_are_corrupt() -> None:
    raw = nifti_bytes(unique_volume((8, 8, 8)), np.eye(4))
    with pytest.raises(CorruptScanError, match="truncated"):
        load_nifti(raw[: len(raw) - 100])
    with pytest.raises(CorruptScanError, match="truncated"):
        load_nifti(gzip.compress(raw)[:200])
    with pytest.raises(CorruptScanError):
        load_nifti(raw[:100])


def test_not_nifti_and_size_limits() -> None:
    with pytest.raises(UnsupportedFormatError):
        load_nifti(b"\x00" * 400)
    raw = nifti_bytes(unique_volume((8, 8, 8)), np.eye(4))
    with pytest.raises(ImageTooLargeError):
        load_nifti(raw, max_voxels=100)
    with pytest.raises(ImageTooLargeError):
        load_nifti(gzip.compress(raw), max_bytes=1000)


def test_complex_voxels_are_refused() -> None:
    data = np.ones((2, 2, 2), dtype=np.complex64)
    with pytest.raises(UnsupportedImageError, match="complex"):
        load_nifti(nifti_bytes(data, np.eye(4)))


def test_invalid_quaternion_is_corrupt() -> None:
    raw = bytearray(nifti_bytes(unique_volume((2, 2, 2)), np.eye(4)))
    struct.pack_into("<hh", raw, 252, 1, 0)  # qform_code scanner, no sform
    struct.pack_into("<fff", raw, 256, 2.0, 0.0, 0.0)  # quatern_b > 1: not a rotation
    with pytest.raises(CorruptScanError, match="invalid"):
        load_nifti(bytes(raw))
