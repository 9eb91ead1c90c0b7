"""Grad-CAM: the same map as MONAI's classic GradCAM call, without side effects."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.visualize import GradCAM

from medtl.inference.saliency import (
    gradcam,
    heatmap_on_grid,
    normalize_map,
    overlay_heatmap,
    saliency_map,
    upsample_map,
)
from medtl.models import create_backbone


@pytest.mark.parametrize(("spatial_dims", "num_outputs"), [(2, 1), (2, 3), (3, 2)])
def test_matches_monai_gradcam_on_gradcam_layer(spatial_dims: int, num_outputs: int) -> None:
    torch.manual_seed(0)
    model = create_backbone("smallcnn", spatial_dims, 1, num_outputs, options={"widths": [4, 8, 8]})
    model.eval()
    size = (32, 32) if spatial_dims == 2 else (16, 16, 16)
    x = torch.randn(2, 1, *size)
    ours = gradcam(model, x)
    with torch.no_grad():
        expected_logits = model(x)
    torch.testing.assert_close(ours.logits, expected_logits)
    expected_class = (
        torch.zeros(2, dtype=torch.long) if num_outputs == 1 else expected_logits.argmax(1)
    )
    assert ours.class_idx.tolist() == expected_class.tolist()
    peak = 0.0
    for i in range(2):
        reference = GradCAM(model, target_layers=model.gradcam_layer, postprocessing=lambda t: t)
        ref = reference(x[i : i + 1], class_idx=int(expected_class[i])).detach()
        mine = upsample_map(ours.cam[i : i + 1], size)
        peak = max(peak, float(ref.abs().max()))
        torch.testing.assert_close(mine, ref, rtol=1e-4, atol=1e-7 + 1e-6 * float(ref.abs().max()))
    assert peak > 0  # (a random net's map can be all zero after the ReLU; not both here)


def test_no_side_effects_on_the_model() -> None:
    torch.manual_seed(0)
    model = create_backbone("smallcnn", 2, 1, 1, options={"widths": [4, 8]}).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hooks_before = sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())
    gradcam(model, torch.randn(1, 1, 32, 32))
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    hooks_after = sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())
    assert hooks_after == hooks_before
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_explicit_class_changes_the_map() -> None:
    torch.manual_seed(1)
    model = create_backbone("smallcnn", 2, 1, 3, options={"widths": [4, 8]}).eval()
    x = torch.randn(1, 1, 32, 32)
    maps = [saliency_map(model, x[0], class_idx=k) for k in range(3)]
    assert all(m.shape == (32, 32) for m in maps)
    assert not np.allclose(maps[0], maps[1]) or not np.allclose(maps[1], maps[2])
    resized = saliency_map(model, x, class_idx=0, out_shape=(50, 70))
    assert resized.shape == (50, 70) and resized.dtype == np.float32
    with pytest.raises(ValueError, match="one image"):
        saliency_map(model, torch.randn(2, 1, 32, 32))


def test_normalize_and_overlay() -> None:
    m = normalize_map(np.array([[1.0, 4.0], [2.0, np.nan]]))  # NaN counts as 0
    np.testing.assert_allclose(m, [[0.25, 1.0], [0.5, 0.0]])
    assert not normalize_map(np.full((3, 3), 7.0)).any()
    grey = np.full((2, 2), 100, np.uint8)
    rgb = overlay_heatmap(grey, np.array([[0.0, 1.0], [0.0, 0.0]]))
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert (rgb[0, 0] == 100).all()  # no heat: the grey pixel unchanged
    assert not (rgb[0, 1] == 100).all()
    with pytest.raises(ValueError, match="shape"):
        overlay_heatmap(grey, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="does not match"):
        upsample_map(torch.zeros(1, 1, 4, 4), (8, 8, 8))


def test_heatmap_on_grid_peak_and_range() -> None:
    small = torch.zeros(1, 1, 4, 5)
    small[0, 0, 2, 3] = 3.0
    small[0, 0, 0, 0] = 1.0
    heat, peak = heatmap_on_grid(small, (40, 50))
    assert heat.shape == (40, 50) and heat.dtype == np.float32
    assert heat.min() == 0.0 and 0.9 < heat.max() <= 1.0  # node centre between pixels
    assert peak == [24, 34]  # centre of cell (2, 3): 2.5 * 10 - 0.5, 3.5 * 10 - 0.5, rounded
    found = np.unravel_index(int(np.argmax(heat)), heat.shape)
    assert abs(found[0] - peak[0]) <= 1 and abs(found[1] - peak[1]) <= 1
    exact, exact_peak = heatmap_on_grid(small, (4, 5))  # no resize: exactly the normalised map
    np.testing.assert_allclose(exact, normalize_map(small[0, 0]))
    assert exact_peak == [2, 3] and exact.max() == 1.0
    flat, none = heatmap_on_grid(torch.zeros(1, 1, 3, 3), (9, 9))
    assert none is None and not flat.any()
