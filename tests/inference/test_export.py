"""`medtl models export --format torchscript|onnx`: the exported network, run by TorchScript
and by ONNX Runtime, gives Predictor's calibrated probability (or logits) for the same
preprocessed input, for 2D and 3D classifiers; the sidecar says what goes in and comes out."""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from medtl.data.scan_input import scan_to_input
from medtl.inference.export import CalibratedOutput, ExportError, export_network
from medtl.inference.predictor import Predictor
from medtl.io import load_scan
from medtl.models import ModelCard, create_backbone, load_package, save_package
from medtl.transfer.presets import default_preprocessing
from tests.io.dicom_factory import ct_series, write_series

torch.set_num_threads(1)


@pytest.fixture
def root_logging():
    """`medtl`'s root callback reconfigures logging; put it back for the tests after this."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _repackage(package, folder, calibration):
    """The same weights with another calibration in the card."""
    model, card = load_package(package)
    return save_package(model, card.model_copy(update={"calibration": calibration}), folder)


def _run(path, x: torch.Tensor) -> np.ndarray:
    """The exported file on a batch: TorchScript by torch.jit.load, ONNX by ONNX Runtime."""
    if path.suffix == ".onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        return torch.jit.load(str(path)).eval()(x).numpy()


@pytest.fixture(scope="module")
def tempered_package(square_package, square_dicoms, tmp_path_factory):
    """The bright-square model with a temperature that keeps its probabilities inside
    (0.15, 0.85): a missing or wrong calibration is then visible."""
    fitted = Predictor.from_package(square_package)
    images = [square_dicoms["positive"], square_dicoms["negative"]]
    logits = [fitted.predict(image, saliency=False).logits[0] for image in images]
    temperature = max(abs(z) for z in logits) / 1.5
    calibration = {"method": "temperature", "temperature": temperature, "n_classes": 2}
    return _repackage(square_package, tmp_path_factory.mktemp("t") / "pkg", calibration)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_2d_export_gives_predictors_probability(fmt, tempered_package, square_dicoms, tmp_path):
    predictor = Predictor.from_package(tempered_package)
    suffix = ".ts" if fmt == "torchscript" else ".onnx"
    probs = export_network(tempered_package, tmp_path / f"p{suffix}", fmt)
    logits = export_network(tempered_package, tmp_path / f"z{suffix}", fmt, output="logits")
    scans = [load_scan(square_dicoms[k]) for k in ("positive", "negative")]
    x = torch.stack([predictor.preprocess(scan) for scan in scans])
    got = _run(probs, x)
    assert got.shape == (2, 1) and got.dtype == np.float32
    for i, scan in enumerate(scans):
        expected = predictor.predict(scan, saliency=False)
        assert expected.calibrated and 0.15 < expected.probability < 0.85
        assert abs(float(got[i, 0]) - expected.probability) < 1e-5
        uncalibrated = 1.0 / (1.0 + np.exp(-expected.logits[0]))
        assert abs(float(got[i, 0]) - uncalibrated) > 1e-2
        z = expected.logits[0]  # float32 logits: the same to 1e-5 relative
        assert abs(float(_run(logits, x)[i, 0]) - z) < 1e-5 * max(1.0, abs(z))


@pytest.fixture(scope="module")
def ct_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ct")
    vol = np.random.default_rng(0).integers(0, 2000, size=(12, 40, 36)).astype(np.uint16)
    write_series(ct_series(vol, spacing=(2.0, 1.0, 1.0)), folder, shuffle_seed=1)
    return folder


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize(
    "outputs,calibration",
    [(1, {"method": "platt", "a": 40.0, "b": -0.2}), (3, None)],
    ids=["binary-platt", "3class-uncalibrated"],
)
def test_3d_export_gives_predictors_probability(fmt, outputs, calibration, ct_folder, tmp_path):
    torch.manual_seed(1)
    spec = default_preprocessing("ct", [16, 16, 16])
    model = create_backbone("smallcnn", spatial_dims=3, num_outputs=outputs)
    labels = ["n", "y"] if outputs == 1 else ["a", "b", "c"]
    card = ModelCard(
        name="tiny-vol", preprocessing=spec.model_dump(), target_task="volume",
        labels=labels, calibration=calibration,
    )  # fmt: skip
    package = save_package(model.eval(), card, tmp_path / "pkg")
    predictor = Predictor.from_package(package)
    out = export_network(package, tmp_path / f"m.{fmt}", fmt)
    x = scan_to_input(load_scan(ct_folder), predictor.spec)[None]
    with torch.no_grad():
        z = predictor.model(x).double().numpy()
    expected = predictor.calibrate(z[:, 0] if outputs == 1 else z)
    got = _run(out, x)
    assert got.shape == (1, outputs)
    np.testing.assert_allclose(got.reshape(expected.shape), expected, atol=1e-5)
    if calibration:  # the calibrator changes the number: the check above sees it
        assert abs(float(got[0, 0]) - 1.0 / (1.0 + np.exp(-z[0, 0]))) > 1e-2
    info = json.loads((tmp_path / f"m.{fmt}.json").read_text())
    assert info["output"]["channels"] == (["y"] if outputs == 1 else labels)
    assert any("sliding windows" in note for note in info["not_included"])


@pytest.mark.parametrize(
    "calibration,outputs",
    [
        ({"method": "temperature", "temperature": 1.7, "n_classes": 2}, 1),
        ({"method": "temperature", "temperature": 0.6, "n_classes": 3}, 3),
        ({"method": "platt", "a": 0.6, "b": -0.4}, 1),
        ({"method": "isotonic", "x": [-3.0, -1.0, -1.0, 0.5, 2.0], "y": [0, 0.2, 0.3, 0.7, 1]}, 1),
        ({"method": "isotonic", "x": [0.25], "y": [0.4]}, 1),
        (None, 1),
        (None, 4),
    ],
    ids=["temp", "temp-3", "platt", "isotonic-repeated-knot", "isotonic-1", "sigmoid", "softmax"],
)
def test_calibrated_output_is_predictors_calibrate(calibration, outputs, square_package):
    """CalibratedOutput (traced into the exports) against Predictor.calibrate, over logits
    that cover every knot and both ends."""
    from medtl.evaluation.calibration import calibrator_from_dict

    module = CalibratedOutput(calibration, outputs)
    z = np.linspace(-4.0, 3.0, 57) if outputs == 1 else np.random.default_rng(0).normal(size=(9, 4))
    z = z[:, None] if outputs == 1 else z[:, :outputs]
    got = module(torch.as_tensor(z, dtype=torch.float32)).numpy()
    if calibration is not None:
        expected = calibrator_from_dict(calibration).transform(z[:, 0] if outputs == 1 else z)
    else:
        from scipy.special import expit, softmax

        expected = expit(z[:, 0]) if outputs == 1 else softmax(z, axis=1)
    np.testing.assert_allclose(got.reshape(expected.shape), expected, atol=2e-6)


def test_sidecar_records_inputs_outputs_and_calibration(tempered_package, tmp_path):
    out = export_network(tempered_package, tmp_path / "m.onnx", "onnx")
    info = json.loads((tmp_path / "m.onnx.json").read_text())
    card = json.loads((tempered_package / "model.json").read_text())
    assert info["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert info["input"]["shape"] == ["batch", 1, 64, 64]
    assert info["input"]["preprocessing"] == card["preprocessing"]
    assert info["input"]["monai_transforms"][1]["_target_"] == "monai.transforms.Resize"
    assert info["calibration"]["parameters"] == card["calibration"]
    assert (
        info["output"]["channels"] == ["square"] and "temperature" in info["output"]["description"]
    )
    assert info["package"] == f"{card['name']}@{card['version']}"


def test_export_refusals(square_package, tmp_path):
    out = export_network(square_package, tmp_path / "m.ts")
    with pytest.raises(FileExistsError):
        export_network(square_package, out)
    assert export_network(square_package, out, overwrite=True) == out
    with pytest.raises(ExportError, match="format"):
        export_network(square_package, tmp_path / "m.tflite", "tflite")
    with pytest.raises(ExportError, match="output"):
        export_network(square_package, tmp_path / "s.ts", output="scores")
    _model, card = load_package(square_package)
    three = create_backbone("smallcnn", spatial_dims=2, num_outputs=3)
    bad = card.model_copy(
        update={
            "architecture": three.config,
            "calibration": {"method": "platt", "a": 1.0, "b": 0.0},
            "labels": ["a", "b", "c"],
        }
    )
    package = save_package(three.eval(), bad, tmp_path / "bad")
    with pytest.raises(ExportError, match="one-output"):
        export_network(package, tmp_path / "b.onnx", "onnx")


def test_cli_export_torchscript_and_onnx(root_logging, tempered_package, tmp_path):
    from medtl.cli import app

    runner = CliRunner()
    for fmt, name in (("torchscript", "m.ts"), ("onnx", "m.onnx")):
        args = ["models", "export", str(tempered_package), "--format", fmt]
        ok = runner.invoke(app, [*args, "--out", str(tmp_path / name)])
        assert ok.exit_code == 0, ok.output
        assert (tmp_path / name).is_file() and (tmp_path / f"{name}.json").is_file()
        again = runner.invoke(app, [*args, "--out", str(tmp_path / name)])
        assert again.exit_code == 2 and "--overwrite" in again.output
    logits = runner.invoke(
        app,
        ["models", "export", str(tempered_package), "--format", "onnx", "--output", "logits",
         "--out", str(tmp_path / "z.onnx")],
    )  # fmt: skip
    assert logits.exit_code == 0, logits.output
    assert json.loads((tmp_path / "z.onnx.json").read_text())["output"]["kind"] == "logits"
