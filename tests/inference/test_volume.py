"""3D packages: sliding-window inference with per-region results, on real NIfTI bytes."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from medtl.evaluation.calibration import calibrator_from_dict
from medtl.inference import Predictor
from medtl.io import load_scan
from medtl.models import CardOperatingPoint, ModelCard, create_backbone, load_package, save_package
from medtl.transfer.presets import build_preprocessing, default_preprocessing

ROI = [16, 16, 16]


def _package(tmp_path, num_outputs: int, labels: list[str]) -> object:
    torch.manual_seed(0)
    model = create_backbone("smallcnn", 3, 1, num_outputs, options={"widths": [4, 8]})
    # Make windows differ: a head bias alone would give every window the same score.
    with torch.no_grad():
        model.head.fc.weight.mul_(20.0)
    card = ModelCard(
        name=f"tiny3d-{num_outputs}",
        preprocessing=default_preprocessing("ct", ROI).model_dump(),
        labels=labels,
        calibration={"method": "temperature", "temperature": 1.5, "n_classes": max(2, num_outputs)},
        operating_points=[CardOperatingPoint(name="youden", threshold=0.5)]
        if num_outputs == 1
        else [],
    )
    return save_package(model, card, tmp_path / f"pkg{num_outputs}")


def _nifti(tmp_path, shape, seed=0) -> object:
    rng = np.random.default_rng(seed)
    vol = rng.normal(0, 300, shape).astype(np.int16)  # (x, y, z) on disk
    vol[4:12, 6:14, 3:11] += 900
    path = tmp_path / f"vol_{'x'.join(map(str, shape))}.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.diag([1.0, 1.0, 1.0, 1.0])), path)
    return path


def _by_hand(package, scan) -> np.ndarray:
    model, card = load_package(package)
    x = build_preprocessing(card.preprocessing)(scan.array[None])
    with torch.no_grad():
        logits = model(x[None]).double().numpy()
    z = logits[:, 0] if logits.shape[1] == 1 else logits
    return calibrator_from_dict(card.calibration).transform(z)[0]


def test_multiclass_volume_regions(tmp_path) -> None:
    torch.set_num_threads(1)
    package = _package(tmp_path, 3, ["heart", "aorta", "liver"])
    scan = load_scan(_nifti(tmp_path, (40, 24, 30)))
    result = Predictor.from_package(package).predict(scan)
    assert result.kind == "multiclass" and result.decision is None
    assert result.n_windows is not None and result.n_windows > 1
    assert result.heatmap.shape == scan.shape and np.isfinite(result.heatmap).all()
    assert result.region_map.ndim == 3 and np.isfinite(result.region_map).all()
    regions = result.regions
    assert 1 < len(regions) <= 5
    scores = [r.probability for r in regions]
    assert scores == sorted(scores, reverse=True)
    for r in regions:
        assert all(0 <= a < b <= n for a, b, n in zip(r.start, r.stop, scan.shape, strict=True))
        assert sum(r.probabilities.values()) == pytest.approx(1.0)
        assert r.probability == pytest.approx(max(r.probabilities.values()))
    assert sum(result.probabilities.values()) == pytest.approx(1.0)
    assert result.top_class == max(result.probabilities, key=result.probabilities.get)
    data = json.loads(result.to_json())
    assert len(data["regions"]) == len(regions) and "region_map" not in data


def test_binary_volume_max_window_and_one_window_equals_by_hand(tmp_path) -> None:
    torch.set_num_threads(1)
    package = _package(tmp_path, 1, ["no nodule", "nodule"])
    predictor = Predictor.from_package(package)
    big = predictor.predict(load_scan(_nifti(tmp_path, (40, 24, 30))))
    assert big.probability == pytest.approx(big.regions[0].probability)  # the top window decides
    assert big.probability >= max(r.probability for r in big.regions)
    assert big.decision.positive is (big.probability >= 0.5)
    assert any("windows" in w for w in big.warnings)
    # a volume of exactly one window gives what model + preprocessing + calibrator give
    one = load_scan(_nifti(tmp_path, tuple(ROI), seed=1))
    result = predictor.predict(one)
    assert result.n_windows == 1
    assert result.probability == pytest.approx(float(_by_hand(package, one)), abs=1e-6)
    assert result.regions[0].start == [0, 0, 0] and result.regions[0].stop == ROI


def test_2d_image_refused_by_3d_model(tmp_path) -> None:
    package = _package(tmp_path, 1, ["no nodule", "nodule"])
    img = np.random.default_rng(0).normal(0, 100, (32, 32)).astype(np.int16)
    path = tmp_path / "slice.nii.gz"
    nib.save(nib.Nifti1Image(img[:, :, None], np.eye(4)), path)
    result = Predictor.from_package(package).predict(path)
    assert result.refused and result.domain.checks["dimensionality"] == "refuse"
    assert any("2D image" in r for r in result.domain.reasons)
