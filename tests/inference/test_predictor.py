"""Predictor on a real (tiny, trained-here) package: exact calibrated probability, decision,
heat map on the scan grid and over the square, domain guard, no PHI in the result."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medtl.evaluation.calibration import calibrator_from_dict
from medtl.inference import PredictionResult, Predictor
from medtl.io import load_scan
from medtl.models import CardOperatingPoint, load_package, register_package
from medtl.models.package import PackageError
from medtl.transfer.presets import build_preprocessing

from .conftest import PHI_BIRTH, PHI_ID, PHI_NAME


@pytest.fixture(scope="module")
def predictor(square_package) -> Predictor:
    torch.set_num_threads(1)
    return Predictor.from_package(square_package)


def _by_hand(package, path) -> float:
    model, card = load_package(package)
    scan = load_scan(path)
    x = build_preprocessing(card.preprocessing)(scan.array[None])
    with torch.no_grad():
        logit = model(x[None])[:, 0].double().numpy()
    return float(calibrator_from_dict(card.calibration).transform(logit)[0])


def test_probability_equals_model_preprocessing_calibrator(
    predictor, square_package, square_dicoms
) -> None:
    for key in ("positive", "negative"):
        result = predictor.predict(square_dicoms[key])
        assert result.probability == pytest.approx(
            _by_hand(square_package, square_dicoms[key]), abs=1e-6
        )
        assert result.calibrated
        assert result.probabilities["square"] == pytest.approx(result.probability)
        assert result.probabilities["no square"] == pytest.approx(1 - result.probability)
    pos = predictor.predict(square_dicoms["positive"])
    neg = predictor.predict(square_dicoms["negative"])
    assert pos.probability > 0.5 > neg.probability
    assert pos.top_class == "square" and neg.top_class == "no square"
    assert pos.decision.operating_point == "youden"
    assert pos.decision.positive and not neg.decision.positive


def test_decision_respects_the_threshold(predictor, square_dicoms) -> None:
    # the negative's probability is tiny but above 0 (the positive's is 1.0): thresholds are
    # probabilities, so there is room for one below it and one above it in [0, 1]
    p = predictor.predict(square_dicoms["negative"]).probability
    assert 0.0 < p < 1.0
    card = predictor.card.model_copy(
        update={
            "operating_points": [
                CardOperatingPoint(name="below", threshold=p / 2, sensitivity=0.9, specificity=0.5),
                CardOperatingPoint(name="equal", threshold=p),
                CardOperatingPoint(
                    name="above", threshold=(p + 1.0) / 2, sensitivity=0.6, specificity=0.99
                ),
                CardOperatingPoint(name="unreachable", threshold=None),
            ]
        }
    )
    pred = Predictor(predictor.model, card, predictor.guard)
    assert pred.operating_point.name == "below"  # no youden: the first reachable point
    scan = load_scan(square_dicoms["negative"])
    below = pred.predict(scan, operating_point="below").decision
    assert below.positive and below.label == "square" and below.threshold == pytest.approx(p / 2)
    assert (below.expected_sensitivity, below.expected_specificity) == (0.9, 0.5)
    assert pred.predict(scan, operating_point="equal").decision.positive  # score >= threshold
    above = pred.predict(scan, operating_point="above").decision
    assert not above.positive and above.label == "no square"
    with pytest.raises(ValueError, match="no operating point 'unreachable'"):
        pred.predict(scan, operating_point="unreachable")


def test_heatmap_on_scan_grid_and_over_the_square(predictor, square_dicoms) -> None:
    result = predictor.predict(square_dicoms["positive"])
    heat = result.heatmap
    assert heat.shape == load_scan(square_dicoms["positive"]).shape
    assert np.isfinite(heat).all() and heat.min() >= 0.0 and 0.9 < heat.max() <= 1.0
    assert heat.std() > 0.05
    y0, x0, s = square_dicoms["box"]
    inside = np.zeros(heat.shape, bool)
    inside[y0 : y0 + s, x0 : x0 + s] = True
    assert heat[inside].mean() > 3 * heat[~inside].mean()
    py, px = result.heatmap_info.peak_index
    # within two feature-map cells (4 px each) of the square
    assert y0 - 8 <= py < y0 + s + 8 and x0 - 8 <= px < x0 + s + 8
    assert result.heatmap_info.target_class == "square"
    assert result.heatmap_info.shape == list(heat.shape)


def test_timings_and_json(predictor, square_dicoms) -> None:
    result = predictor.predict(str(square_dicoms["positive"]))
    t = result.timings_ms
    assert t.decode > 0 and t.forward > 0 and t.saliency > 0 and t.preprocess > 0
    assert t.total >= t.decode + t.forward + t.saliency
    data = json.loads(result.to_json())
    assert "heatmap" not in data and "region_map" not in data
    again = PredictionResult.model_validate(data)
    assert again.probability == result.probability and again.decision == result.decision
    no_heat = predictor.predict(square_dicoms["positive"], saliency=False)
    assert no_heat.heatmap is None and no_heat.timings_ms.saliency == 0
    assert no_heat.probability == result.probability


def test_no_phi_in_result(predictor, square_dicoms) -> None:
    scan = load_scan(square_dicoms["positive"])
    text = predictor.predict(scan).to_json()
    for secret in (PHI_NAME, "DOE", "JANE", PHI_ID, PHI_BIRTH):
        assert secret not in text
    for key in ("patient_pseudonym", "study_uid", "series_uid", "instance_uid"):
        value = scan.meta.get(key)
        assert value, key  # the loader kept a pseudonym/UID ...
        assert str(value) not in text  # ... the result does not carry it
    assert json.loads(text)["scan"]["body_part"] == "CHEST"


def test_domain_ok_in_distribution(predictor, square_dicoms) -> None:
    result = predictor.predict(square_dicoms["negative"])
    assert result.domain.status == "ok", result.domain.reasons
    assert result.domain.checks["features"] == "ok"
    assert result.domain.feature_distance <= result.domain.distance_threshold


def test_registered_name_loads_the_same_package(
    square_package, square_dicoms, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("MEDTL_HOME", str(tmp_path / "home"))
    register_package(square_package)
    by_name = Predictor.from_package("squares@1.0.0")
    by_path = Predictor.from_package(square_package)
    scan = load_scan(square_dicoms["positive"])
    assert by_name.predict(scan).probability == by_path.predict(scan).probability
    with pytest.raises(PackageError):
        Predictor.from_package("no-such-model")


def test_multiclass_package_gives_class_probabilities(tmp_path) -> None:
    from medtl.models import ModelCard, create_backbone, save_package
    from medtl.transfer.presets import default_preprocessing

    torch.manual_seed(0)
    model = create_backbone("smallcnn", 2, 1, 3, options={"widths": [4, 8]})
    card = ModelCard(
        name="three",
        preprocessing=default_preprocessing("mri", [32, 32]).model_dump(),
        labels=["a", "b", "c"],
        calibration={"method": "temperature", "temperature": 2.0, "n_classes": 3},
    )
    predictor = Predictor.from_package(save_package(model, card, tmp_path / "three"))
    rng = np.random.default_rng(0)
    from medtl.io import Scan

    scan = Scan(
        array=rng.normal(500, 50, (48, 40)).astype(np.float32),
        spacing=(1.0, 1.0),
        affine=np.eye(4),
        modality="MR",
        source_format="nifti",
    )
    result = predictor.predict(scan)
    x = build_preprocessing(card.preprocessing)(scan.array[None])
    with torch.no_grad():
        logits = predictor.model(x[None]).double().numpy()
    expected = calibrator_from_dict(card.calibration).transform(logits)[0]
    assert result.kind == "multiclass" and result.decision is None
    np.testing.assert_allclose(list(result.probabilities.values()), expected, rtol=1e-6)
    assert result.top_class == "abc"[int(np.argmax(expected))]
    assert result.probability == pytest.approx(float(expected.max()))
    assert result.heatmap.shape == (48, 40)
    assert result.heatmap_info.target_class == result.top_class
