"""``i3resnet152``: Merlin's layout, the backbone contract, and the weight-import report."""

from __future__ import annotations

import math

import pytest
import torch

from medtl.models import WeightImportError, create_backbone, import_weights, sniff_format
from tests.models.merlin_layout import (
    PUBLISHED_FLOAT_ELEMENTS,
    PUBLISHED_TENSORS,
    merlin_file_bytes,
    merlin_shapes,
    merlin_state,
)

torch.set_num_threads(1)
TINY = {"width": 4}


def _tiny(**options):
    return create_backbone("i3resnet152", spatial_dims=3, options={**TINY, **options})


def test_hand_written_layout_matches_the_published_file_meta():
    shapes = merlin_shapes()
    floats = sum(math.prod(s) for k, s in shapes.items() if not k.endswith("tracked"))
    assert (len(shapes), floats) == (PUBLISHED_TENSORS, PUBLISHED_FLOAT_ELEMENTS)


def test_real_size_network_has_merlins_keys_and_shapes():
    with torch.device("meta"):
        model = create_backbone("i3resnet152", spatial_dims=3)
    encoder = {
        k.removeprefix("encoder."): tuple(v.shape)
        for k, v in model.state_dict().items()
        if k.startswith("encoder.")
    }
    assert encoder == merlin_shapes()
    assert model.feature_dim == 2048
    assert model.feature_layers() == {"layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048}


def test_input_axes_are_merlins_and_feature_maps_come_back_in_input_order():
    model = _tiny().eval()
    x = torch.randn(1, 1, 32, 64, 16)  # (X, Y, Z): Merlin permutes to (Z, X, Y)
    with torch.no_grad():
        feats = model.forward_features(x)
        stages = model.forward_stages(x, ("layer2", "layer3"))
    # the stem strides (1, 2, 2) on (Z, X, Y): X and Y shrink 32-fold, Z only 16-fold
    assert feats.shape == (1, 128, 32 // 32, 64 // 32, 16 // 16)
    assert stages["layer2"].shape == (1, 32, 4, 8, 4)
    assert stages["layer3"].shape == (1, 64, 2, 4, 2)
    with torch.no_grad():  # one grey channel is the three repeated channels of Merlin
        same = model.forward_features(x.repeat(1, 3, 1, 1, 1))
    torch.testing.assert_close(feats, same)
    with pytest.raises(ValueError, match="layer5"):
        model.forward_stages(x, ("layer5",))


def test_blocks_hold_every_non_head_parameter_once():
    model = _tiny()
    ids = [id(p) for block in model.blocks() for p in block.parameters()]
    non_head = [id(p) for n, p in model.named_parameters() if not n.startswith("head.")]
    assert sorted(ids) == sorted(non_head)
    assert len(model.blocks()) == 5


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = _tiny()
    ckpt = _tiny(grad_checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 1, 16, 16, 8)
    for model in (plain, ckpt):
        model.train()
        model.head.dropout.p = 0.0
        model(x).sum().backward()
    g1 = plain.encoder.layer3[0].conv2.weight.grad
    g2 = ckpt.encoder.layer3[0].conv2.weight.grad
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-6)


def test_wrong_options_are_refused():
    with pytest.raises(ValueError, match="3D"):
        create_backbone("i3resnet152", spatial_dims=2)
    with pytest.raises(ValueError, match="unknown i3resnet options"):
        _tiny(depth=50)


@pytest.fixture
def merlin_file(tmp_path):
    path = tmp_path / "astra_encoder.pt"
    path.write_bytes(merlin_file_bytes(merlin_state(width=4)))
    return path


def test_bf16_wrapped_merlin_file_loads_completely(merlin_file):
    assert sniff_format(merlin_file) == "merlin"
    model = _tiny()
    report = import_weights(model, merlin_file)
    assert report.format == "merlin"
    assert report.loaded_fraction == 1.0
    assert len(report.loaded) == PUBLISHED_TENSORS
    assert not report.unexpected and not report.mismatched
    assert report.meta["layout"].startswith("Merlin I3ResNet")
    source = torch.load(merlin_file, weights_only=True)["state_dict"]
    loaded = model.state_dict()["encoder.layer3.35.conv2.weight"]
    assert loaded.dtype == torch.float32
    torch.testing.assert_close(loaded, source["layer3.35.conv2.weight"].float())


def test_missing_layer4_fails_the_threshold_and_names_the_layout(tmp_path):
    state = {k: v for k, v in merlin_state(width=4).items() if not k.startswith("layer4.")}
    path = tmp_path / "no_layer4.pt"
    path.write_bytes(merlin_file_bytes(state))
    model = _tiny()
    before = model.encoder.layer1[0].conv1.weight.clone()
    with pytest.raises(WeightImportError) as err:
        import_weights(model, path)
    message = str(err.value)
    assert "Merlin I3ResNet" in message and "[3, 8, 36, 0]" in message
    assert "minimum 90%" in message
    assert err.value.report is not None and err.value.report.loaded_fraction < 0.9
    assert any(k.startswith("encoder.layer4.") for k in err.value.report.missing)
    torch.testing.assert_close(model.encoder.layer1[0].conv1.weight, before)  # untouched


def test_medicalnet_file_is_refused_naming_its_layout(tmp_path):
    medicalnet = create_backbone("resnet50", spatial_dims=3, options={"medicalnet": True})
    state = {
        "module." + k.removeprefix("encoder."): v
        for k, v in medicalnet.state_dict().items()
        if k.startswith("encoder.")
    }
    path = tmp_path / "resnet_50_23dataset.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(WeightImportError, match=r"MedicalNet 3D ResNet.*conv1 7x7x7"):
        import_weights(_tiny(), path)


def test_merlin_weights_into_another_backbone_are_refused(merlin_file):
    model = create_backbone("resnet50", spatial_dims=3)
    with pytest.raises(WeightImportError, match=r"Merlin I3ResNet.*create an i3resnet152"):
        import_weights(model, merlin_file)


def test_last_stage_layer3_is_the_truncated_encoder_of_the_same_file(merlin_file):
    full = create_backbone("i3resnet152", spatial_dims=3, options={"width": 4})
    cut = create_backbone(
        "i3resnet152", spatial_dims=3, options={"width": 4, "last_stage": "layer3"}
    )
    import_weights(full, merlin_file)
    report = import_weights(cut, merlin_file)
    assert report.loaded_fraction == 1.0
    assert any(k.startswith("layer4.") for k in report.unexpected)
    assert cut.feature_dim == 64 and full.feature_dim == 128
    assert len(cut.blocks()) == 4 and not hasattr(cut.encoder, "layer4")
    full.eval()
    cut.eval()
    x = torch.rand(2, 1, 32, 32, 8)
    with torch.no_grad():
        expected = full.forward_stages(x, ("layer3",))["layer3"]
        torch.testing.assert_close(cut.forward_features(x), expected)
    with pytest.raises(ValueError, match="layer4"):
        cut.forward_stages(x, ("layer4",))
    with pytest.raises(ValueError, match="last_stage"):
        create_backbone("i3resnet152", spatial_dims=3, options={"last_stage": "layer2"})
