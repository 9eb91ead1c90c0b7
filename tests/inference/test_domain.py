"""Domain guard: Mahalanobis with Ledoit-Wolf, validation threshold, header and geometry
checks, persistence, and its verdicts through the Predictor on real files."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from sklearn.covariance import LedoitWolf

from medtl.inference import Predictor
from medtl.inference.domain import (
    GUARD_ARRAYS_FILE,
    GUARD_JSON_FILE,
    DomainGuard,
    fit_domain_guard,
    load_domain_guard,
)
from medtl.io import Scan

from .conftest import square_image, write_dicom


def _features(seed: int, n: int, d: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d))
    return rng.normal(size=(n, d)) @ mix + 3.0


def test_distance_is_sklearn_ledoit_wolf_mahalanobis() -> None:
    train, val = _features(0, 300), _features(1, 100)
    guard = fit_domain_guard(train, val)
    lw = LedoitWolf().fit(train)
    # sklearn returns squared distances
    np.testing.assert_allclose(guard.distance(val) ** 2, lw.mahalanobis(val), rtol=1e-8)
    assert guard.threshold_ == pytest.approx(np.quantile(np.sqrt(lw.mahalanobis(val)), 0.99))
    assert guard.threshold_source_ == "validation"
    assert 0.0 <= guard.shrinkage_ <= 1.0
    assert (guard.distance(val) > guard.threshold_).sum() == 1  # 1% of 100
    far = guard.check_features(train.mean(0) + 20 * train.std(0))
    assert far.status == "warn" and far.checks == {"features": "warn"}
    assert far.feature_distance > far.distance_threshold == guard.threshold_
    assert "unlike the images the model learned from" in far.reasons[0]
    near = guard.check_features(train.mean(0))
    assert near.status == "ok" and near.feature_distance < guard.threshold_


def test_threshold_without_validation_and_errors() -> None:
    train = _features(0, 50)
    guard = DomainGuard(quantile=0.5).fit(train)
    assert guard.threshold_source_ == "training"
    assert guard.threshold_ == pytest.approx(np.median(guard.distance(train)))
    with pytest.raises(ValueError, match="dimensions"):
        guard.distance(np.zeros((1, 5)))
    with pytest.raises(ValueError, match="at least 2"):
        DomainGuard().fit(train[:1])
    with pytest.raises(RuntimeError, match="not fitted"):
        DomainGuard().distance(train)
    assert DomainGuard().check_features(train[0]).checks == {"features": "not checked"}


def test_save_and_load_round_trip(tmp_path) -> None:
    train, val = _features(0, 100), _features(1, 40)
    guard = fit_domain_guard(train, val, modality_family="cxr", body_parts=["CHEST"])
    guard.save(tmp_path)
    assert (tmp_path / GUARD_ARRAYS_FILE).is_file()
    meta = json.loads((tmp_path / GUARD_JSON_FILE).read_text())
    assert meta["modalities"] == ["CR", "DX"] and meta["body_parts"] == ["CHEST"]
    assert meta["threshold"] == pytest.approx(guard.threshold_) and meta["feature_dim"] == 12
    loaded = load_domain_guard(tmp_path)
    np.testing.assert_allclose(loaded.distance(val), guard.distance(val))
    assert loaded.threshold_ == guard.threshold_ and loaded.spacing_range_mm == (0.05, 1.0)
    assert load_domain_guard(tmp_path / "elsewhere") is None


def test_a_damaged_guard_file_names_the_file_and_field(tmp_path) -> None:
    guard = fit_domain_guard(_features(0, 60), _features(1, 20), modality_family="cxr")
    guard.save(tmp_path)
    meta = json.loads((tmp_path / GUARD_JSON_FILE).read_text())
    (tmp_path / GUARD_JSON_FILE).write_text(json.dumps(dict(meta, quantile=7)))
    with pytest.raises(ValueError, match=r"domain_guard\.json: field quantile"):
        load_domain_guard(tmp_path)
    (tmp_path / GUARD_JSON_FILE).write_text(json.dumps(dict(meta, colour="red")))
    with pytest.raises(ValueError, match="field colour"):
        load_domain_guard(tmp_path)


def test_features_from_run_folder_files(tmp_path) -> None:
    from safetensors.numpy import save_file

    train, val = _features(0, 80), _features(1, 30)
    for name, feats in (("train", train), ("val", val)):
        save_file(
            {"features": feats.astype(np.float32), "labels": np.zeros(len(feats), np.int64)},
            str(tmp_path / f"features_{name}.safetensors"),
        )
    guard = fit_domain_guard(
        tmp_path / "features_train.safetensors", tmp_path / "features_val.safetensors"
    )
    reference = fit_domain_guard(train.astype(np.float32), val.astype(np.float32))
    assert guard.threshold_ == pytest.approx(reference.threshold_)


def _scan(array, modality="CR", spacing=None, meta=None, warnings=None) -> Scan:
    return Scan(
        array=np.asarray(array, np.float32),
        spacing=spacing or (0.2,) * np.ndim(array),
        affine=np.eye(4),
        modality=modality,
        source_format="dicom",
        meta={"body_part": "CHEST"} if meta is None else meta,
        warnings=warnings or [],
    )


def test_header_and_geometry_checks() -> None:
    guard = DomainGuard(
        spatial_dims=2,
        modalities=["CR", "DX"],
        body_parts=["CHEST"],
        spacing_range_mm=(0.05, 1.0),
        aspect_ratio_range=(0.5, 2.0),
    )
    ok = guard.check_scan(_scan(np.zeros((40, 50))))
    assert ok.status == "ok" and ok.reasons == []
    ct = guard.check_scan(_scan(np.zeros((40, 50)), modality="CT"))
    assert ct.status == "refuse" and ct.checks["modality"] == "refuse"
    assert "This is a CT image" in ct.reasons[0]
    png = guard.check_scan(_scan(np.zeros((40, 50)), modality="OT", meta={}))
    assert png.status == "warn" and "does not record the imaging modality" in png.reasons[0]
    assert png.checks["body_part"] == "not checked"
    knee = guard.check_scan(_scan(np.zeros((40, 50)), meta={"body_part": "KNEE"}))
    assert knee.status == "warn" and "knee" in knee.reasons[0]
    vol = guard.check_scan(_scan(np.zeros((5, 40, 50))))
    assert vol.status == "refuse" and "3D volume" in vol.reasons[0]
    assert guard.check_scan(_scan(np.zeros((1, 40, 50)))).status == "ok"  # one slice = image
    strip = guard.check_scan(_scan(np.zeros((10, 50))))
    assert strip.status == "warn" and "unusually wide" in strip.reasons[0]
    coarse = guard.check_scan(_scan(np.zeros((40, 50)), spacing=(3.0, 3.0)))
    assert coarse.status == "warn" and "pixel size" in coarse.reasons[0]
    assumed = _scan(np.zeros((40, 50)), spacing=(3.0, 3.0), meta={"spacing_source": "default"})
    assert guard.check_scan(assumed).status == "ok"  # an assumed spacing is not evidence
    guard3d = DomainGuard(spatial_dims=3, modalities=["CT"])
    flat = guard3d.check_scan(_scan(np.zeros((40, 50)), modality="CT"))
    assert flat.status == "refuse" and "2D image" in flat.reasons[0]


# ------------------------------------------------------------ through the Predictor


@pytest.fixture(scope="module")
def predictor(square_package) -> Predictor:
    return Predictor.from_package(square_package)


def test_noise_image_warns(predictor, tmp_path) -> None:
    rng = np.random.default_rng(7)
    noise = rng.uniform(0, 4095, (64, 64))
    result = predictor.predict(write_dicom(tmp_path / "noise.dcm", noise))
    assert result.domain.status == "warn", result.domain
    assert result.domain.checks["features"] == "warn"
    assert result.domain.feature_distance > result.domain.distance_threshold
    assert result.probability is not None  # a warning still gives the result


def test_other_modality_refused_without_running_the_model(predictor, tmp_path) -> None:
    img, _ = square_image(np.random.default_rng(3), True)
    result = predictor.predict(write_dicom(tmp_path / "ct.dcm", img, modality="CT"))
    assert result.refused and result.domain.status == "refuse"
    assert result.probability is None and result.decision is None and result.heatmap is None
    assert result.timings_ms.forward == 0
    assert any("CT image" in r for r in result.domain.reasons)
    assert "REFUSED" in result.summary_line()


def test_png_without_modality_warns(predictor, tmp_path) -> None:
    img, _ = square_image(np.random.default_rng(4), False)
    path = tmp_path / "square.png"
    Image.fromarray(img.astype(np.uint16)).save(path)
    result = predictor.predict(path)
    assert result.domain.status == "warn"
    assert result.domain.checks["modality"] == "warn"
    assert result.probability is not None


def test_volume_refused_by_a_2d_model(predictor, tmp_path) -> None:
    vol = np.random.default_rng(5).normal(1000, 60, (64, 64, 12)).astype(np.int16)
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.eye(4)), path)
    result = predictor.predict(path)
    assert result.refused
    assert result.domain.checks["dimensionality"] == "refuse"
    assert any("3D volume" in r for r in result.domain.reasons)
