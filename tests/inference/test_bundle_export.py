"""`medtl models export --format monai-bundle`: monai.bundle.run gives Predictor's numbers."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from medtl.inference.bundle_export import export_monai_bundle
from medtl.inference.predictor import Predictor
from medtl.io import load_scan
from medtl.io.testing import SOP_CLASS, image_dataset, write
from medtl.models import ModelCard, create_backbone, import_weights, save_package
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
    card = ModelCard(name="tiny-enc", preprocessing=spec.model_dump())
    return save_package(model, card, folder / "pkg")


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


def _run_bundle(bundle, input_file, output_file) -> subprocess.CompletedProcess:
    """``monai.bundle.run`` in a fresh interpreter (what ``python -m monai.bundle run`` calls;
    that command line also needs ``fire``). A subprocess also keeps MONAI's logging setup out
    of this test session."""
    call = (
        "from monai.bundle import run; run(config_file={c!r}, meta_file={m!r}, "
        "bundle_root={r!r}, input_file={i!r}, output_file={o!r})"
    ).format(
        c=str(bundle / "configs" / "inference.json"),
        m=str(bundle / "configs" / "metadata.json"),
        r=str(bundle),
        i=str(input_file),
        o=str(output_file),
    )
    cmd = [sys.executable, "-c", call]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


def test_bundle_layout_and_weights_only_state_dict(encoder_package, tmp_path):
    out = export_monai_bundle(encoder_package, tmp_path / "bundle")
    meta = json.loads((out / "configs" / "metadata.json").read_text())
    config = json.loads((out / "configs" / "inference.json").read_text())
    assert meta["network_data_format"]["inputs"]["image"]["spatial_shape"] == [32, 32, 16]
    assert meta["network_data_format"]["outputs"]["pred"]["type"] == "embedding"
    assert config["network_def"]["_target_"] == "medtl.models.registry.build_backbone"
    state = torch.load(out / "models" / "model.pt", weights_only=True)
    assert "encoder.layer3.35.conv2.weight" in state
    assert (out / "docs" / "model.json").is_file()
    # medtl reads its own export back as a MONAI bundle, completely
    model = create_backbone("i3resnet152", spatial_dims=3, options={"width": 4})
    report = import_weights(model, out)
    assert report.format == "monai_bundle" and report.loaded_fraction == 1.0
    with pytest.raises(FileExistsError):
        export_monai_bundle(encoder_package, out)


def test_monai_bundle_run_cli_gives_predictor_embedding(encoder_package, ct_folder, tmp_path):
    out = export_monai_bundle(encoder_package, tmp_path / "bundle")
    result = tmp_path / "embedding.npy"
    done = _run_bundle(out, ct_folder, result)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = Predictor.from_package(encoder_package).embed(load_scan(ct_folder)).vector
    np.testing.assert_allclose(np.load(result), expected, rtol=1e-5, atol=1e-6)


def test_monai_bundle_run_gives_predictor_logits(classifier_package, tmp_path):
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
    assert type(parser.get_parsed_content("network_def")).__name__ == "SmallCNNBackbone"
    result = tmp_path / "logits.npy"
    done = _run_bundle(out, image, result)
    assert done.returncode == 0, done.stderr[-3000:]
    logits = np.load(result)
    expected = Predictor.from_package(classifier_package).predict(image, saliency=False).logits
    assert logits.shape == (3,)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)


def test_cli_export(root_logging, classifier_package, tmp_path):
    from medtl.cli import app

    runner = CliRunner()
    args = ["models", "export", str(classifier_package), "--out", str(tmp_path / "b")]
    ok = runner.invoke(app, args)
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "b" / "configs" / "inference.json").is_file()
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.output
    other = runner.invoke(app, [*args, "--format", "onnx", "--overwrite"])
    assert other.exit_code == 2 and "monai-bundle" in other.output
