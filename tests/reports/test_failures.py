"""Failure-case selection and Grad-CAM overlays (2D and the central slice of 3D)."""

from __future__ import annotations

import io

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image


def test_select_failures_orders_worst_first() -> None:
    from medtl.reports.failures import select_failures

    labels = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    probs = np.array([0.9, 0.2, 0.6, 0.1, 0.8, 0.3, 0.55, 0.45])
    picks = select_failures(labels, probs, threshold=0.5, k=2)
    assert picks == [
        ("false positive", 0),
        ("false positive", 2),
        ("false negative", 3),
        ("false negative", 5),
    ]
    # without errors the nearest miss of each class stands in
    clean = select_failures(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.6, 0.9]), 0.5)
    assert clean == [("nearest negative", 1), ("nearest positive", 2)]
    # the threshold is inclusive: p == threshold is a positive call
    assert select_failures(np.array([0, 1]), np.array([0.5, 0.7]), 0.5)[0] == (
        "false positive",
        0,
    )


def test_render_case_draws_the_central_slice_of_a_volume(tmp_path) -> None:
    from medtl.artifacts import PreprocessingSpec
    from medtl.data.preprocessing import build_preprocessing
    from medtl.models import BackboneConfig, build_backbone
    from medtl.reports.failures import render_case

    torch.manual_seed(0)
    torch.set_num_threads(1)
    vol = np.full((12, 20, 20), -800.0, dtype=np.float32)
    vol[6, 5:15, 5:15] = 60.0  # only the central slice holds tissue
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(np.transpose(vol, (2, 1, 0)), np.eye(4)), path)
    spec = PreprocessingSpec(
        modality="ct",
        spatial_dims=3,
        spatial_size=[12, 16, 16],
        intensity={"kind": "window", "lower": -1000, "upper": 1000},
    )
    model = build_backbone(
        BackboneConfig(name="smallcnn", spatial_dims=3, num_outputs=1, options={"widths": [4, 8]})
    ).eval()
    with torch.no_grad():  # positive head weights on ReLU features: Grad-CAM cannot be flat
        model.head.fc.weight.abs_()
    png, status = render_case(model, build_preprocessing(spec), path, "case")
    assert status == "drawn"
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG" and im.width > 100
        rgb = np.asarray(im.convert("RGB")).astype(int)
    # the jet overlay makes some pixels clearly non-grey
    assert np.abs(rgb[..., 0] - rgb[..., 2]).max() > 60
    png_plain, status_plain = render_case(
        model, build_preprocessing(spec), path, "case", saliency=False
    )
    assert status_plain == "off"
    with Image.open(io.BytesIO(png_plain)) as im:
        plain = np.asarray(im.convert("RGB")).astype(int)
    assert np.abs(plain[..., 0] - plain[..., 2]).max() < 10
    # a head that only lowers the score gives a flat map, reported as such (no overlay)
    with torch.no_grad():
        model.head.fc.weight.copy_(-model.head.fc.weight.abs())
    png_flat, status_flat = render_case(model, build_preprocessing(spec), path, "case")
    assert status_flat == "flat"
    with Image.open(io.BytesIO(png_flat)) as im:
        flat = np.asarray(im.convert("RGB")).astype(int)
    assert np.abs(flat[..., 0] - flat[..., 2]).max() < 10
    # medtl.inference is part of medtl: a broken import is a bug and surfaces (no silent
    # "saliency unavailable" report).
    import sys

    saved = sys.modules.pop("medtl.inference.saliency", None)
    sys.modules["medtl.inference.saliency"] = None  # type: ignore[assignment]
    try:
        with pytest.raises(ImportError):
            render_case(model, build_preprocessing(spec), path, "case")
    finally:
        del sys.modules["medtl.inference.saliency"]
        if saved is not None:
            sys.modules["medtl.inference.saliency"] = saved
