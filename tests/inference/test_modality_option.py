"""``medtl predict --modality``: a PNG says which modality it is, as ``medtl embed`` allows."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from medtl.inference.domain import DomainGuard

from .conftest import square_image
from .test_cli import _root

runner = CliRunner()


def _png(tmp_path, name: str = "x.png"):
    img, _ = square_image(np.random.default_rng(3), positive=True)
    path = tmp_path / name
    Image.fromarray((img / 16).astype(np.uint8)).save(path)
    return path


def _predict(*args) -> dict:
    result = runner.invoke(_root(), ["predict", *map(str, args), "--json"])
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def test_predict_modality_takes_a_png_as_that_modality(square_package, tmp_path) -> None:
    png = _png(tmp_path)
    plain = _predict(square_package, png)
    assert plain["domain"]["checks"]["modality"] == "warn"
    assert any("does not record the imaging modality" in r for r in plain["domain"]["reasons"])
    dx = _predict(square_package, png, "--modality", "DX")
    assert dx["domain"]["checks"]["modality"] == "ok"
    assert not any("modality" in r for r in dx["domain"]["reasons"])
    assert dx["scan"]["modality"] == "DX"
    ct = runner.invoke(_root(), ["predict", str(square_package), str(png), "--modality", "CT"])
    assert ct.exit_code == 1 and "This is a CT image" in ct.output  # the option is applied


def test_assumed_modality_round_trips_and_is_checked(tmp_path) -> None:
    from medtl.io import load_scan

    guard = DomainGuard(spatial_dims=2, modalities=["CR", "DX"], assumed_modality="DX")
    guard.save(tmp_path)
    loaded = DomainGuard.load(tmp_path)
    assert loaded.assumed_modality == "DX"
    png = load_scan(_png(tmp_path))
    assert png.modality == "OT"
    assert loaded.check_scan(png).checks["modality"] == "ok"
    # an assumed modality outside the expected ones does not silence the caution
    odd = DomainGuard(spatial_dims=2, modalities=["CR", "DX"], assumed_modality="MG")
    assert odd.check_scan(png).checks["modality"] == "warn"
    # a modality the file states (or --modality gives) still decides
    ct = load_scan(_png(tmp_path, "ct.png"), modality="CT")
    assert loaded.check_scan(ct).checks["modality"] == "refuse"
