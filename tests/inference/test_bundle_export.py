"""`medtl models export --format monai-bundle`: `python -m monai.bundle run`, in a process that
cannot import medtl, gives Predictor's calibrated probabilities (or embedding), with
consistent metadata and a LICENSE."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from medtl.inference.bundle_export import BundleExportError, export_monai_bundle
from medtl.inference.predictor import Predictor
from medtl.io import load_scan
from medtl.io.testing import SOP_CLASS, image_dataset, write
from medtl.models import (
    ModelCard,
    create_backbone,
    import_weights,
    load_package,
    save_package,
)
from medtl.models.foundation import merlin_preprocessing
from medtl.transfer.presets import default_preprocessing
from tests.io.dicom_factory import ct_series, write_series
from tests.models.merlin_layout import merlin_file_bytes, merlin_state

torch.set_num_threads(1)


@pytest.fixture
def root_logging():
    """`medtl`'s root callback reconfigures logging; put it back for the tests after this."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="module")
def encoder_package(tmp_path_factory):
    folder = tmp_path_factory.mktemp("enc")
    (folder / "w.pt").write_bytes(merlin_file_bytes(merlin_state(width=4, seed=5)))
    spec = merlin_preprocessing().model_copy(update={"spatial_size": [32, 32, 16]})
    model = create_backbone("i3resnet152", spatial_dims=3, options={"width": 4})
    import_weights(model, folder / "w.pt")
    provenance = {"licence": "MIT (tiny upstream)", "licence_file": "LICENSE_NOTICE.txt"}
    card = ModelCard(
        name="tiny-enc", preprocessing=spec.model_dump(), training={"provenance": provenance}
    )
    package = save_package(model, card, folder / "pkg")
    (package / "LICENSE_NOTICE.txt").write_text("Copyright (c) tiny upstream\nMIT text\n")
    return package


@pytest.fixture(scope="module")
def classifier_package(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cls")
    torch.manual_seed(0)
    spec = default_preprocessing("cxr", [64, 64])
    model = create_backbone(
        "smallcnn", spatial_dims=2, num_outputs=3, preprocessing=spec.model_dump()
    )
    card = ModelCard(
        name="tiny-cls",
        preprocessing=spec.model_dump(),
        target_task="three classes",
        labels=["a", "b", "c"],
    )
    return save_package(model.eval(), card, folder / "pkg")


@pytest.fixture(scope="module")
def ct_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ct")
    rng = np.random.default_rng(0)
    vol = rng.integers(0, 2000, size=(12, 40, 36)).astype(np.uint16)
    write_series(ct_series(vol, spacing=(2.0, 1.0, 1.0)), folder, shuffle_seed=1)
    return folder


_BLOCK_MEDTL = """
import sys


class _NoMedtl:
    def find_spec(self, name, path=None, target=None):
        if name == "medtl" or name.startswith("medtl."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the bundle test)")
        return None


sys.meta_path.insert(0, _NoMedtl())
"""


@pytest.fixture(scope="module")
def no_medtl(tmp_path_factory) -> dict[str, str]:
    """An environment whose interpreter cannot import medtl: a sitecustomize on PYTHONPATH
    puts a finder in front of every other (the editable install's included) that refuses
    ``medtl``; the runs start outside the checkout."""
    site = tmp_path_factory.mktemp("no_medtl_site")
    (site / "sitecustomize.py").write_text(_BLOCK_MEDTL)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    return env


@pytest.fixture
def run_bundle(no_medtl, tmp_path):
    """The bundle's README command, ``python -m monai.bundle run`` (MONAI's command line,
    which needs ``fire``), in a fresh interpreter that cannot import medtl, started in an
    empty folder; that also keeps MONAI's logging setup out of this test session."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()

    def run(bundle, input_file, output_file, *extra: str) -> subprocess.CompletedProcess:
        return _run_bundle(bundle, input_file, output_file, *extra, env=no_medtl, cwd=cwd)

    return run


def _run_bundle(
    bundle, input_file, output_file, *extra: str, env: dict, cwd
) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", str(bundle / "configs" / "inference.json"),
        "--meta_file", str(bundle / "configs" / "metadata.json"),
        "--bundle_root", str(bundle),
        "--input_file", str(input_file),
        "--output_file", str(output_file),
        *extra,
    ]  # fmt: skip
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, check=False, env=env, cwd=cwd
    )


def _medtl_symbols(config) -> list[str]:
    """Every component target and ``$`` expression of a bundle config that names medtl."""
    found = []
    if isinstance(config, dict):
        for key, value in config.items():
            if key == "_target_" and "medtl" in str(value):
                found.append(str(value))
            found += _medtl_symbols(value)
    elif isinstance(config, list):
        for value in config:
            found += _medtl_symbols(value)
    elif isinstance(config, str) and config.startswith("$") and "medtl" in config:
        found.append(config)
    return found


def _imports(source: str) -> str:
    """The import statements of a Python source, one a line."""
    import ast

    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
    return "\n".join(names)


def _meta(bundle) -> dict:
    return json.loads((bundle / "configs" / "metadata.json").read_text())


def _pred(bundle) -> dict:
    return _meta(bundle)["network_data_format"]["outputs"]["pred"]


def _repackage(package, folder, calibration) -> object:
    """The same weights with another calibration in the card."""
    model, card = load_package(package)
    return save_package(model, card.model_copy(update={"calibration": calibration}), folder)


def test_the_bundle_runs_are_made_where_medtl_cannot_be_imported(no_medtl, tmp_path):
    """The environment every bundle run here uses: medtl refused, MONAI and torch there."""
    blocked = subprocess.run(
        [sys.executable, "-c", "import medtl"], env=no_medtl, cwd=tmp_path,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert blocked.returncode != 0 and "blocked by the bundle test" in blocked.stderr
    ok = subprocess.run(
        [sys.executable, "-c", "import monai.bundle, torch, pydicom"], env=no_medtl,
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-2000:]


def test_bundle_layout_and_weights_only_state_dict(encoder_package, tmp_path):
    out = export_monai_bundle(encoder_package, tmp_path / "bundle")
    meta = _meta(out)
    config = json.loads((out / "configs" / "inference.json").read_text())
    assert meta["network_data_format"]["inputs"]["image"]["spatial_shape"] == [32, 32, 16]
    pred = meta["network_data_format"]["outputs"]["pred"]
    assert pred["type"] == "embedding"
    # the width of the tiny encoder's layer4 features (width 4 x 8 x bottleneck 4)
    assert pred["num_channels"] == 128 and pred["channel_def"] == {}
    assert "postprocessing" not in config and "calibration" not in meta
    # the network is the TorchScript file; nothing in the configs names medtl's code
    assert (
        config["network_def"].startswith("$torch.jit.load(") and "model.ts" in config["network_def"]
    )
    assert not _medtl_symbols(config) and not _medtl_symbols(meta)
    assert (out / "models" / "model.ts").is_file() and (out / "scripts" / "runtime.py").is_file()
    assert "medtl" not in _imports((out / "scripts" / "runtime.py").read_text())
    state = torch.load(out / "models" / "model.pt", weights_only=True)
    assert "encoder.layer3.35.conv2.weight" in state
    assert (out / "docs" / "model.json").is_file()
    # the weights' licence as the card states it, the upstream notice, and medtl's licence
    assert meta["license"] == "MIT (tiny upstream)"
    licence = (out / "LICENSE").read_text()
    assert "MIT (tiny upstream)" in licence and "Copyright (c) tiny upstream" in licence
    assert "Apache-2.0" in licence
    # medtl reads its own export back as a MONAI bundle, completely
    model = create_backbone("i3resnet152", spatial_dims=3, options={"width": 4})
    report = import_weights(model, out)
    assert report.format == "monai_bundle" and report.loaded_fraction == 1.0
    with pytest.raises(FileExistsError):
        export_monai_bundle(encoder_package, out)


def test_monai_bundle_run_cli_gives_predictor_embedding(
    encoder_package, ct_folder, tmp_path, run_bundle
):
    out = export_monai_bundle(encoder_package, tmp_path / "bundle")
    result = tmp_path / "embedding.npy"
    done = run_bundle(out, ct_folder, result)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = Predictor.from_package(encoder_package).embed(load_scan(ct_folder)).vector
    assert np.load(result).shape == (_pred(out)["num_channels"],)
    np.testing.assert_allclose(np.load(result), expected, rtol=1e-5, atol=1e-6)


def test_bundle_gives_the_calibrated_probability(
    square_package, square_dicoms, tmp_path, run_bundle
):
    """The issue's case: a temperature-scaled package; the bundle said sigmoid(logit)."""
    fitted = Predictor.from_package(square_package)
    images = [square_dicoms["positive"], square_dicoms["negative"]]
    logits = [fitted.predict(image, saliency=False).logits[0] for image in images]
    # The fixture's calibration split is separable, so its fitted T sits at the lower bound
    # and every probability is 0 or 1; a temperature that keeps them inside (0.15, 0.85)
    # makes a wrong postprocessing visible.
    temperature = max(abs(z) for z in logits) / 1.5
    package = _repackage(
        square_package,
        tmp_path / "pkg",
        {"method": "temperature", "temperature": temperature, "n_classes": 2},
    )
    predictor = Predictor.from_package(package)
    out = export_monai_bundle(package, tmp_path / "bundle")
    pred = _pred(out)
    assert pred["type"] == "probabilities" and pred["value_range"] == [0, 1]
    assert pred["num_channels"] == 1 == len(pred["channel_def"])
    assert pred["channel_def"] == {"0": "square"}  # P(positive label), named
    assert "temperature" in pred["description"]
    assert _meta(out)["calibration"]["method"] == "temperature"
    assert _meta(out)["license"] == "Apache-2.0"  # the card states none: medtl's
    assert "Apache-2.0" in (out / "LICENSE").read_text()
    for n, image in enumerate(images):
        result = tmp_path / f"{n}.npy"
        done = run_bundle(out, image, result)
        assert done.returncode == 0, done.stderr[-3000:]
        expected = predictor.predict(image, saliency=False)
        assert expected.calibrated and 0.15 < expected.probability < 0.85
        got = np.load(result)
        assert got.shape == (1,) and got.dtype == np.float32
        assert abs(float(got[0]) - expected.probability) < 1e-5
        uncalibrated = 1.0 / (1.0 + np.exp(-expected.logits[0]))
        assert abs(float(got[0]) - uncalibrated) > 1e-2
    # the raw logits stay one override away
    done = run_bundle(out, image, tmp_path / "logits.npy", "--output_kind", "logits")
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), expected.logits, rtol=1e-5)


def test_bundle_of_the_fitted_package_carries_its_calibration(square_package, tmp_path):
    out = export_monai_bundle(square_package, tmp_path / "bundle")
    card = json.loads((square_package / "model.json").read_text())
    config = json.loads((out / "configs" / "inference.json").read_text())
    assert config["calibration"] == card["calibration"]
    assert _meta(out)["calibration"]["parameters"] == card["calibration"]


def test_bundle_of_an_uncalibrated_package(square_package, square_dicoms, tmp_path, run_bundle):
    package = _repackage(square_package, tmp_path / "plain", None)
    out = export_monai_bundle(package, tmp_path / "bundle")
    assert _meta(out)["calibration"] == {
        "method": "none",
        "calibrated": False,
        "parameters": None,
        "applied_by": "configs/inference.json: postprocessing (output_kind probabilities)",
    }
    assert "uncalibrated" in _pred(out)["description"]
    image = square_dicoms["positive"]
    done = run_bundle(out, image, tmp_path / "p.npy")
    assert done.returncode == 0, done.stderr[-3000:]
    expected = Predictor.from_package(package).predict(image, saliency=False)
    assert expected.calibrated is False
    assert abs(float(np.load(tmp_path / "p.npy")[0]) - expected.probability) < 1e-5


@pytest.mark.parametrize(
    "calibration",
    [
        {"method": "platt", "a": 0.6, "b": -0.4},
        {"method": "isotonic", "x": [-3.0, -1.0, 0.5, 2.0], "y": [0.05, 0.2, 0.7, 0.9]},
    ],
    ids=["platt", "isotonic"],
)
def test_bundle_postprocessing_applies_every_calibrator(
    square_package, square_dicoms, tmp_path, calibration, run_bundle
):
    """The config's own postprocessing, read by MONAI's parser, equals Predictor.calibrate."""
    from monai.bundle import ConfigParser

    package = _repackage(square_package, tmp_path / "pkg", calibration)
    out = export_monai_bundle(package, tmp_path / "bundle")
    parser = ConfigParser()
    parser.read_config(out / "configs" / "inference.json")
    post = parser.get_parsed_content("postprocessing")
    predictor = Predictor.from_package(package)
    logits = np.linspace(-4.0, 3.0, 15)
    got = [float(post(torch.tensor([z], dtype=torch.float32))[0]) for z in logits]
    np.testing.assert_allclose(got, predictor.calibrate(logits), atol=1e-6)
    assert _meta(out)["calibration"]["parameters"] == calibration
    expected = predictor.predict(square_dicoms["positive"], saliency=False).probability
    done = run_bundle(out, square_dicoms["positive"], tmp_path / "p.npy")
    assert done.returncode == 0, done.stderr[-3000:]
    assert abs(float(np.load(tmp_path / "p.npy")[0]) - expected) < 1e-5


def test_multiclass_bundle_gives_predictor_probabilities(classifier_package, tmp_path, run_bundle):
    from monai.bundle import ConfigParser

    image = tmp_path / "cr.dcm"
    pixels = np.random.default_rng(1).integers(0, 4000, (80, 72)).astype(np.uint16)
    write(
        image_dataset(pixels, modality="CR", sop_class_uid=SOP_CLASS["CR"], bits_stored=12),
        image,
    )
    out = export_monai_bundle(classifier_package, tmp_path / "bundle")
    parser = ConfigParser()
    parser.read_config(out / "configs" / "inference.json")
    parser["bundle_root"] = str(out)
    assert type(parser.get_parsed_content("network_def")).__name__ == "RecursiveScriptModule"
    pred = _pred(out)
    assert pred["num_channels"] == 3 and pred["channel_def"] == {"0": "a", "1": "b", "2": "c"}
    result = tmp_path / "probs.npy"
    done = run_bundle(out, image, result)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = Predictor.from_package(classifier_package).predict(image, saliency=False)
    probs = np.load(result)
    assert probs.shape == (3,)
    np.testing.assert_allclose(probs, [expected.probabilities[k] for k in "abc"], atol=1e-6)
    logits_bundle = export_monai_bundle(
        classifier_package, tmp_path / "logits", output_kind="logits"
    )
    assert _pred(logits_bundle)["type"] == "logits"
    done = run_bundle(logits_bundle, image, tmp_path / "logits.npy")
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_allclose(
        np.load(tmp_path / "logits.npy"), expected.logits, rtol=1e-5, atol=1e-6
    )


def test_export_refuses_a_calibrator_the_outputs_cannot_use(classifier_package, tmp_path):
    package = _repackage(
        classifier_package, tmp_path / "pkg", {"method": "platt", "a": 1.0, "b": 0.0}
    )
    with pytest.raises(BundleExportError, match="one-output"):
        export_monai_bundle(package, tmp_path / "bundle")
    with pytest.raises(BundleExportError, match="output_kind"):
        export_monai_bundle(classifier_package, tmp_path / "b2", output_kind="scores")


def test_cli_export(root_logging, classifier_package, tmp_path):
    from medtl.cli import app

    runner = CliRunner()
    args = ["models", "export", str(classifier_package), "--out", str(tmp_path / "b")]
    ok = runner.invoke(app, args)
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "b" / "configs" / "inference.json").is_file()
    assert (tmp_path / "b" / "LICENSE").is_file()
    assert _pred(tmp_path / "b")["type"] == "probabilities"
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.output
    other = runner.invoke(app, [*args, "--format", "tflite", "--overwrite"])
    assert other.exit_code == 2 and "monai-bundle, torchscript, onnx" in other.output
    logits = runner.invoke(app, [*args, "--output", "logits", "--overwrite"])
    assert logits.exit_code == 0, logits.output
    assert _pred(tmp_path / "b")["type"] == "logits"


def test_volume_classifier_bundle_states_how_it_differs(tmp_path):
    """medtl predict slides windows over volumes of a 3D package without geometry."""
    spec = default_preprocessing("ct", [16, 16, 16])
    model = create_backbone("smallcnn", spatial_dims=3, num_outputs=1)
    card = ModelCard(
        name="tiny-vol", preprocessing=spec.model_dump(), target_task="yes/no", labels=["n", "y"]
    )
    package = save_package(model.eval(), card, tmp_path / "pkg")
    out = export_monai_bundle(package, tmp_path / "bundle")
    assert "slides windows" in _meta(out)["volume_inference"]
    assert "slides windows" in (out / "docs" / "README.md").read_text()
    assert _pred(out)["channel_def"] == {"0": "y"}
    assert _meta(out)["calibration"]["calibrated"] is False
