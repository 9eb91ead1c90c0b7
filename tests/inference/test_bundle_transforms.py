"""The MONAI transform configs an exported bundle runs instead of medtl's loader and
preprocessing give medtl's network input, on real files: PNG (grey and RGB), MONOCHROME1
DICOM, a DICOM series with scrambled InstanceNumbers, NIfTI stored in a non-canonical order."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from PIL import Image

from medtl.artifacts import IntensitySpec
from medtl.data.preprocessing import build_preprocessing
from medtl.data.scan_input import scan_to_input
from medtl.inference import bundle_runtime
from medtl.inference.bundle_transforms import (
    array_transforms,
    describe_preprocessing,
    load_transforms,
)
from medtl.io import load_scan
from medtl.io.testing import SOP_CLASS, image_dataset, write
from medtl.models.foundation import merlin_preprocessing
from medtl.transfer.presets import default_preprocessing
from tests.io.dicom_factory import ct_series, write_series

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def bundle_scripts(tmp_path_factory):
    """A folder holding ``scripts/runtime.py`` as an exported bundle does."""
    root = tmp_path_factory.mktemp("bundle")
    (root / "scripts").mkdir()
    (root / "scripts" / "__init__.py").write_text("")
    shutil.copyfile(bundle_runtime.__file__, root / "scripts" / "runtime.py")
    return root


def _bundle_input(spec, path, root, monkeypatch) -> torch.Tensor:
    """What the bundle's ``preprocessing`` component makes of a file (MONAI's parser)."""
    monkeypatch.syspath_prepend(str(root))
    parser = ConfigParser(
        {
            "imports": ["$import numpy", "$import torch"],
            "pre": {
                "_target_": "monai.transforms.Compose",
                "transforms": [*load_transforms(spec), *array_transforms(spec)],
            },
        }
    )
    return torch.as_tensor(parser.get_parsed_content("pre")(str(path)))


def _same(spec, path, root, monkeypatch) -> None:
    expected = scan_to_input(load_scan(path), spec)
    got = _bundle_input(spec, path, root, monkeypatch)
    assert tuple(got.shape) == (spec.in_channels, *spec.spatial_size)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5)


def _cxr(size=(48, 40), channels: int = 1):
    return default_preprocessing("cxr", list(size)).model_copy(update={"in_channels": channels})


def test_png_grey_and_rgb(tmp_path, bundle_scripts, monkeypatch):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 255, (70, 52)).astype(np.uint8)
    grey[10:30, 5:20] = 250  # not symmetric: a transposed image would differ
    Image.fromarray(grey).save(tmp_path / "grey.png")
    rgb = rng.integers(0, 255, (70, 52, 3)).astype(np.uint8)
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "rgb.png")
    _same(_cxr(channels=3), tmp_path / "grey.png", bundle_scripts, monkeypatch)
    _same(_cxr(), tmp_path / "rgb.png", bundle_scripts, monkeypatch)


def test_monochrome1_dicom_is_flipped_as_medtl_does(tmp_path, bundle_scripts, monkeypatch):
    pixels = np.random.default_rng(1).integers(0, 4000, (64, 50)).astype(np.uint16)
    pixels[5:20, 30:45] = 100
    ds = image_dataset(
        pixels, modality="CR", sop_class_uid=SOP_CLASS["CR"], bits_stored=12,
        photometric="MONOCHROME1", rescale=(2.0, -50.0),
    )  # fmt: skip
    path = write(ds, tmp_path / "m1.dcm")
    spec = _cxr().model_copy(update={"intensity": IntensitySpec(kind="window", lower=0, upper=5e3)})
    _same(spec, path, bundle_scripts, monkeypatch)


def test_dicom_series_with_scrambled_instance_numbers(tmp_path, bundle_scripts, monkeypatch):
    vol = np.random.default_rng(2).integers(0, 2000, size=(10, 30, 26)).astype(np.uint16)
    vol[:3] += 1500  # the first slices bright: a reversed stack would differ
    write_series(ct_series(vol, spacing=(2.0, 1.0, 0.8)), tmp_path, shuffle_seed=3)
    ct = default_preprocessing("ct", [12, 16, 16])
    _same(ct, tmp_path, bundle_scripts, monkeypatch)
    merlin = merlin_preprocessing().model_copy(update={"spatial_size": [24, 24, 12]})
    _same(merlin, tmp_path, bundle_scripts, monkeypatch)


def test_nifti_in_a_non_canonical_order(tmp_path, bundle_scripts, monkeypatch):
    data = np.random.default_rng(4).normal(0.0, 300.0, (20, 14, 9)).astype(np.float32)
    data[:4, :5, :2] = 1500.0
    # voxel axes stored as (A->P, S->I, R->L) with anisotropic voxels
    affine = np.array(
        [[0.0, 0.0, -1.2, 30.0], [-0.9, 0.0, 0.0, 40.0], [0.0, -2.0, 0.0, 50.0], [0, 0, 0, 1]]
    )
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    _same(default_preprocessing("ct", [10, 12, 12]), path, bundle_scripts, monkeypatch)
    merlin = merlin_preprocessing().model_copy(update={"spatial_size": [20, 20, 16]})
    _same(merlin, path, bundle_scripts, monkeypatch)


@pytest.mark.parametrize(
    "update",
    [
        {"intensity": IntensitySpec(kind="zscore")},
        {"intensity": IntensitySpec(kind="percentile", lower=2, upper=98), "in_channels": 3},
        {"fit": "pad_crop", "spatial_size": [20, 40, 8]},
    ],
    ids=["zscore", "percentile-3ch", "pad_crop"],
)
def test_array_transforms_are_build_preprocessing(update):
    spec = default_preprocessing("ct", [16, 16, 8]).model_copy(update=update)
    array = np.random.default_rng(5).normal(0.0, 400.0, (1, 30, 24, 10)).astype(np.float32)
    parser = ConfigParser(
        {"imports": ["$import torch"], "pre": {"_target_": "monai.transforms.Compose",
                                               "transforms": array_transforms(spec)}}
    )  # fmt: skip
    got = parser.get_parsed_content("pre")(array)
    expected = build_preprocessing(spec)(array)
    expected = expected.expand(spec.in_channels, *expected.shape[1:])
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-6)
    words = describe_preprocessing(spec)
    assert words[-1].startswith(f"float32 tensor of shape ({spec.in_channels}, ")
