"""Whole-scan embeddings with the ``merlin`` preprocessing: axes, orientation, refusals.

A tiny ``i3resnet152`` (width 4, Merlin's exact keys, random bf16 weights) stands in for
astra-ct so the tests run in seconds; the real weights run under ``pytest -m weights``.
"""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pytest
import torch
from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform
from typer.testing import CliRunner

from medtl.artifacts.preprocessing import PreprocessingSpec
from medtl.data.scan_input import LPS_TO_RAS, scan_to_input
from medtl.inference.embed import ScanRefusedError
from medtl.inference.predictor import Predictor
from medtl.io import Scan, load_scan
from medtl.models import ModelCard, create_backbone, import_weights, save_package
from medtl.models.foundation import merlin_preprocessing
from tests.io.dicom_factory import ct_series, write_series
from tests.models.merlin_layout import merlin_file_bytes, merlin_state

torch.set_num_threads(1)
SPACING = (2.5, 0.9, 1.1)  # (slices, rows, columns) in mm: resampled to 1.5 x 1.5 x 3


def tiny_spec() -> PreprocessingSpec:
    """The merlin preset at a small size (same steps, 40 x 40 x 24 instead of 224^2 x 160)."""
    return merlin_preprocessing().model_copy(update={"spatial_size": [40, 40, 24]})


def phantom() -> np.ndarray:
    """HU volume (slices, rows, columns), asymmetric along every axis."""
    k, j, i = np.mgrid[0:20, 0:48, 0:40].astype(np.float32)
    vol = np.full(k.shape, -1000.0, dtype=np.float32)
    body = ((j - 24) / 20) ** 2 + ((i - 20) / 17) ** 2 < 1
    vol[body] = 40.0
    vol[body & (i < 16) & (j < 26)] = -800.0  # one "lung" only
    vol[((j - 34) ** 2 + (i - 28) ** 2 < 16) & (k > 6)] = 700.0  # bone in the upper half
    vol += 10.0 * np.sin(k / 3.0) * np.cos(i / 5.0)
    return vol


@pytest.fixture
def root_logging():
    """`medtl`'s root callback reconfigures logging; put it back for the tests after this."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pkg")
    weights = folder / "tiny_merlin.pt"
    weights.write_bytes(merlin_file_bytes(merlin_state(width=4, seed=3)))
    spec = tiny_spec()
    model = create_backbone(
        "i3resnet152", spatial_dims=3, options={"width": 4}, preprocessing=spec.model_dump()
    )
    import_weights(model, weights)
    card = ModelCard(name="tiny-merlin", preprocessing=spec.model_dump())
    return save_package(model, card, folder / "tiny-merlin")


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ct")
    stored = np.round(phantom() + 1024.0).astype(np.uint16)
    write_series(ct_series(stored, spacing=SPACING), folder, shuffle_seed=7)
    return folder


def _nifti(scan: Scan, path, axcodes: tuple[str, str, str]):
    img = nib.Nifti1Image(scan.array, LPS_TO_RAS @ scan.affine)
    ornt = ornt_transform(io_orientation(img.affine), axcodes2ornt(axcodes))
    out = img.as_reoriented(ornt)
    assert nib.aff2axcodes(out.affine) == axcodes
    nib.save(out, path)
    return path


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


def test_same_ct_as_nifti_ras_lps_and_shuffled_dicom_gives_one_embedding(package, series, tmp_path):
    predictor = Predictor.from_package(package)
    dicom = load_scan(series)
    ras = load_scan(_nifti(dicom, tmp_path / "ras.nii.gz", ("R", "A", "S")), modality="CT")
    lps = load_scan(_nifti(dicom, tmp_path / "lps.nii.gz", ("L", "P", "S")), modality="CT")
    ref = predictor.embed(dicom).vector
    assert ref.shape == (128,) and np.isfinite(ref).all()
    assert _rel(ref, predictor.embed(ras).vector) < 1e-3
    assert _rel(ref, predictor.embed(lps).vector) < 1e-3


def test_orientation_step_undoes_any_voxel_order(package, series):
    """A volume stored sagittally and flipped, with the matching affine, is the same input."""
    scan = load_scan(series)
    # array axes (columns reversed, rows, slices): new index (a, b, c) = old (c, b, 39 - a)
    array = np.ascontiguousarray(scan.array.transpose(2, 1, 0)[::-1])
    perm = np.zeros((4, 4))
    perm[0, 2], perm[1, 1], perm[2, 0], perm[3, 3] = 1, 1, 1, 1
    flip = np.eye(4)
    flip[2, 2], flip[2, 3] = -1, scan.shape[2] - 1
    affine = scan.affine @ flip @ perm
    odd = Scan(array, (SPACING[2], SPACING[1], SPACING[0]), affine, "CT", "nifti")
    spec = tiny_spec()
    x_ref, x_odd = scan_to_input(scan, spec), scan_to_input(odd, spec)
    assert x_ref.shape == (1, 40, 40, 24)
    torch.testing.assert_close(x_ref, x_odd, atol=1e-5, rtol=1e-5)
    # the guard: an X/Y swap is a different input and a different embedding
    predictor = Predictor.from_package(package)
    model = predictor.model
    with torch.no_grad():
        a = model.pool_features(x_ref[None])[0].numpy()
        b = model.pool_features(x_ref.transpose(1, 2)[None])[0].numpy()
    assert _rel(a, b) > 1e-2


def test_preprocessing_equals_merlins_own_monai_chain(series, tmp_path):
    """medtl's loader + merlin preset == Merlin's monai_transforms.py on the same NIfTI."""
    from monai.transforms import (
        CenterSpatialCropd,
        Compose,
        EnsureChannelFirstd,
        LoadImaged,
        Orientationd,
        ScaleIntensityRanged,
        Spacingd,
        SpatialPadd,
    )

    size = [40, 40, 24]
    merlin = Compose(  # Merlin's ImageTransforms, with the test's smaller crop
        [
            LoadImaged(keys=["image"], reader="NibabelReader"),
            EnsureChannelFirstd(keys=["image"]),
            Orientationd(keys=["image"], axcodes="RAS"),
            Spacingd(keys=["image"], pixdim=(1.5, 1.5, 3), mode=("bilinear")),
            ScaleIntensityRanged(
                keys=["image"], a_min=-1000, a_max=1000, b_min=0.0, b_max=1.0, clip=True
            ),
            SpatialPadd(keys=["image"], spatial_size=size),
            CenterSpatialCropd(roi_size=size, keys=["image"]),
        ]
    )
    path = _nifti(load_scan(series), tmp_path / "lps.nii.gz", ("L", "P", "S"))
    theirs = torch.as_tensor(merlin({"image": str(path)})["image"]).float()
    ours = scan_to_input(load_scan(path, modality="CT"), tiny_spec())
    assert theirs.shape == ours.shape == (1, *size)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_embed_layers(package, series):
    predictor = Predictor.from_package(package)
    scan = load_scan(series)
    assert predictor.embed(scan, layer="layer3").vector.shape == (64,)
    assert predictor.embed(scan, layer="layer2").vector.shape == (32,)
    with pytest.raises(ValueError, match="layer5"):
        predictor.embed(scan, layer="layer5")


def test_mr_series_is_refused(package, tmp_path):
    mr = np.full((4, 16, 16), 300, np.uint16)
    write_series(ct_series(mr, modality="MR", rescale=(1.0, 0.0)), tmp_path / "mr")
    with pytest.raises(ScanRefusedError, match="MR"):
        Predictor.from_package(package).embed(load_scan(tmp_path / "mr"))


def test_cli_embed_writes_npy_and_exit_codes(root_logging, package, series, tmp_path):
    from PIL import Image

    from medtl.cli import app

    runner = CliRunner()
    out = tmp_path / "emb.npy"
    ok = runner.invoke(app, ["embed", str(package), str(series), "--out", str(out)])
    assert ok.exit_code == 0, ok.output
    vector = np.load(out)
    assert vector.shape == (128,) and vector.dtype == np.float32
    expected = Predictor.from_package(package).embed(load_scan(series)).vector
    np.testing.assert_allclose(vector, expected, rtol=1e-6)
    layer3 = runner.invoke(
        app, ["embed", str(package), str(series), "--layer", "layer3", "--out", str(out)]
    )
    assert layer3.exit_code == 0 and np.load(out).shape == (64,)
    radiograph = tmp_path / "cxr.png"
    Image.fromarray(np.full((32, 32), 128, np.uint8)).save(radiograph)
    refused = runner.invoke(app, ["embed", str(package), str(radiograph), "--out", str(out)])
    assert refused.exit_code == 1
    lines = [line for line in refused.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: refused:")
    mr = _nifti(load_scan(series), tmp_path / "mr.nii.gz", ("R", "A", "S"))
    as_mr = runner.invoke(
        app, ["embed", str(package), str(mr), "--modality", "MR", "--out", str(out)]
    )
    assert as_mr.exit_code == 1 and "MR" in as_mr.output
    junk = tmp_path / "junk.nii"
    junk.write_bytes(b"not an image at all" * 10)
    broken = runner.invoke(app, ["embed", str(package), str(junk), "--out", str(out)])
    assert broken.exit_code == 2 and "error:" in broken.output
    bad_layer = runner.invoke(
        app, ["embed", str(package), str(series), "--layer", "layer9", "--out", str(out)]
    )
    assert bad_layer.exit_code == 2 and "layer9" in bad_layer.output
    args = ["embed", str(package), str(series), "--out", str(out)]
    fast = runner.invoke(app, [*args, "--backend", "channels_last_3d"])
    assert fast.exit_code == 0, fast.output
    assert np.linalg.norm(np.load(out) - expected) / np.linalg.norm(expected) < 1e-3
    bad_backend = runner.invoke(app, [*args, "--backend", "tensorrt"])
    assert bad_backend.exit_code == 2 and "unknown embed backend" in bad_backend.output


def test_training_and_predict_replay_the_same_preprocessing(package, series, tmp_path):
    """Training's loader, predict and embed all feed the network the same tensor."""
    from medtl.data.datasets import LoadAndPreprocess
    from medtl.data.preprocessing import build_preprocessing

    spec = tiny_spec()
    scan = load_scan(series)
    expected = scan_to_input(scan, spec)
    loader = LoadAndPreprocess(build_preprocessing(spec), spec.model_dump_json())
    item = loader({"image": str(series), "label": 1, "index": 0})
    torch.testing.assert_close(torch.as_tensor(item["image"]), expected)
    predictor = Predictor.from_package(package)
    with torch.no_grad():
        logit = float(predictor.model(expected[None])[0, 0])
    result = predictor.predict(scan)
    assert not result.refused
    assert result.logits == pytest.approx([logit], rel=1e-5)
    assert result.heatmap is not None and result.heatmap.shape == scan.shape
    assert float(result.heatmap.max()) == pytest.approx(1.0)
    lps = load_scan(_nifti(scan, tmp_path / "lps.nii.gz", ("L", "P", "S")), modality="CT")
    again = predictor.predict(lps)
    assert again.logits == pytest.approx(result.logits, rel=1e-4)
    np.testing.assert_allclose(again.heatmap, result.heatmap, atol=1e-4)


def test_embed_works_for_any_backbone_from_its_last_stage(tmp_path):
    """A 2D package without stages: the pooled last feature map, named layer4."""
    from medtl.io.testing import SOP_CLASS, image_dataset, write
    from medtl.transfer.presets import default_preprocessing

    spec = default_preprocessing("cxr", [64, 64])
    model = create_backbone("smallcnn", spatial_dims=2, preprocessing=spec.model_dump())
    card = ModelCard(name="tiny-cxr", preprocessing=spec.model_dump())
    package = save_package(model.eval(), card, tmp_path / "pkg")
    image = tmp_path / "cr.dcm"
    pixels = np.random.default_rng(2).integers(0, 4000, (70, 60)).astype(np.uint16)
    write(image_dataset(pixels, modality="CR", sop_class_uid=SOP_CLASS["CR"]), image)
    predictor = Predictor.from_package(package)
    result = predictor.embed(image)
    assert result.vector.shape == (128,) and result.layer == "layer4"
    with torch.no_grad():
        x = predictor.preprocess(load_scan(image))[None]
        expected = predictor.model.forward_features(x).mean(dim=(2, 3))[0].numpy()
    np.testing.assert_allclose(result.vector, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="layer3"):
        predictor.embed(image, layer="layer3")
