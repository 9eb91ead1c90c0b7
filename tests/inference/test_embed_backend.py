"""Embed backends give eager fp32's embedding (within 1e-3) or fall back to eager."""

from __future__ import annotations

import logging
import sys

import pytest
import torch

from medtl.inference.embed import embed_tensor
from medtl.inference.embed_backend import BACKENDS, TOLERANCE, EmbedRunner, resolve_backend
from medtl.models import create_backbone, import_weights
from tests.models.merlin_layout import merlin_file_bytes, merlin_state

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    path = tmp_path_factory.mktemp("enc") / "w.pt"
    path.write_bytes(merlin_file_bytes(merlin_state(width=4, seed=7)))
    model = create_backbone("i3resnet152", spatial_dims=3, options={"width": 4})
    import_weights(model, path)
    return model.eval()


@pytest.fixture
def medtl_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDTL_HOME", str(tmp_path))
    return tmp_path


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layer", ["layer3", "layer4"])
def test_every_backend_matches_eager_fp32(encoder, backend, layer, medtl_home):
    pytest.importorskip("onnxruntime") if backend == "onnxruntime" else None
    x = torch.rand(2, 1, 32, 32, 16)
    with torch.inference_mode():
        ref = embed_tensor(encoder, x, layer)
    runner = EmbedRunner(encoder, layer, backend)
    out = runner(x)
    encoder.to(memory_format=torch.contiguous_format)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert _rel(out, ref) < TOLERANCE
    if backend == "onnxruntime":
        assert runner._sessions[tuple(x.shape)] is not None  # really ran in ONNX Runtime
        runner(x)
        assert len(runner._sessions) == 1  # one session per shape
        # the exported graph is cached: a new runner (another process) reuses the file
        (graph,) = (medtl_home / "cache" / "onnx").glob(f"embed-{layer}-*.onnx")
        stamp = graph.stat().st_mtime_ns
        torch.testing.assert_close(EmbedRunner(encoder, layer, backend)(x), out)
        assert graph.stat().st_mtime_ns == stamp


def test_missing_onnxruntime_falls_back_to_eager_numbers(encoder, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    x = torch.rand(1, 1, 32, 32, 16)
    with caplog.at_level(logging.INFO, logger="medtl.inference.embed_backend"):
        out = EmbedRunner(encoder, "layer4", "onnxruntime")(x)
    with torch.inference_mode():
        torch.testing.assert_close(out, embed_tensor(encoder, x, "layer4"))
    assert "onnxruntime is not installed" in caplog.text


def test_backend_choice_env_and_errors(monkeypatch):
    monkeypatch.setenv("MEDTL_EMBED_BACKEND", "channels_last_3d")
    assert resolve_backend() == "channels_last_3d"
    assert resolve_backend("eager") == "eager"
    monkeypatch.setenv("MEDTL_EMBED_BACKEND", "tensorrt")
    with pytest.raises(ValueError, match="unknown embed backend"):
        resolve_backend()
