"""Evaluation plots render to valid, non-blank PNGs without touching pyplot."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from PIL import Image
from scipy.special import expit

from medtl.evaluation.bootstrap import bootstrap_ci
from medtl.evaluation.calibration import TemperatureScaler
from medtl.evaluation.operating_points import operating_points
from medtl.evaluation.plots import (
    plot_learning_curves,
    plot_pr,
    plot_reliability,
    plot_roc,
)
from medtl.evaluation.transfer_analysis import LearningCurvePoint, sample_efficiency_table


def check_png(png: bytes, min_size: tuple[int, int] = (400, 300)) -> np.ndarray:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(png))
    img.load()
    assert img.format == "PNG"
    assert img.size[0] >= min_size[0] and img.size[1] >= min_size[1]
    arr = np.asarray(img.convert("L"), dtype=float)
    assert arr.std() > 10  # not blank
    assert (arr < 128).mean() > 0.01  # some dark ink: axes, text, curves
    return arr


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    z_t = 2.0 * (1.5 * y - 0.75 + rng.normal(0, 1, 300))
    z_s = 2.0 * (0.8 * y - 0.4 + rng.normal(0, 1, 300))
    return y, z_t, z_s


def test_roc_png_with_ci_and_operating_points(data, tmp_path):
    y, z_t, z_s = data
    ops = {"transfer": list(operating_points(y, z_t).values())}
    ci = {"transfer": bootstrap_ci(y, z_t, n_resamples=100), "scratch": (0.6, 0.7)}
    out = tmp_path / "roc.png"
    png = plot_roc(y, {"transfer": z_t, "scratch": z_s}, ci=ci, operating_points=ops, path=out)
    check_png(png)
    assert out.read_bytes() == png
    # a single unnamed score array works too, and differs from the two-model figure
    assert plot_roc(y, z_t) != png


def test_pr_png(data):
    y, z_t, z_s = data
    check_png(plot_pr(y, {"transfer": z_t, "scratch": z_s}))


def test_reliability_png_before_after(data):
    y, z_t, _ = data
    ts = TemperatureScaler().fit(z_t, y)
    arr = check_png(plot_reliability(y, expit(z_t), ts.transform(z_t), n_bins=10))
    assert arr.shape[0] > arr.shape[1]  # taller: diagram above, histogram below
    check_png(plot_reliability(y, expit(z_t)))


def test_learning_curves_png():
    rng = np.random.default_rng(1)
    pts = [
        LearningCurvePoint(s, f, seed, auroc=base + 0.1 * f + rng.normal(0, 0.01))
        for s, base in (("full", 0.8), ("scratch", 0.65))
        for f in (0.05, 0.1, 0.25, 0.5, 1.0)
        for seed in range(3)
    ]
    png = plot_learning_curves(pts)
    check_png(png)
    assert plot_learning_curves(sample_efficiency_table(pts)) == png


def test_plots_do_not_switch_backend_or_use_pyplot(monkeypatch, data):
    import matplotlib

    had_pyplot = "matplotlib.pyplot" in sys.modules

    def forbidden(*args, **kwargs):
        raise AssertionError("matplotlib.use must not be called by medtl plots")

    monkeypatch.setattr(matplotlib, "use", forbidden)
    y, z_t, _ = data
    check_png(plot_pr(y, z_t))
    if not had_pyplot:  # another test may have imported pyplot already
        assert "matplotlib.pyplot" not in sys.modules
