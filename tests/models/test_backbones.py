"""Backbone registry and the backbone contract, 2D and 3D, on tiny inputs."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from medtl.models import (
    Backbone,
    BackboneConfig,
    ClassifierHead,
    build_backbone,
    create_backbone,
    describe_backbones,
    list_backbones,
)

torch.set_num_threads(1)

NAMES = [
    "densenet121",
    "efficientnet-b0",
    "resnet10",
    "resnet18",
    "resnet34",
    "resnet50",
    "smallcnn",
]
FEATURE_DIM = {
    "densenet121": 1024,
    "efficientnet-b0": 1280,
    "resnet10": 512,
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "smallcnn": 128,
}
SIZES = {2: (64, 64), 3: (32, 32, 32)}


#: 3D only, contract tested in tests/models/test_i3resnet.py
NAMES_3D_ONLY = ["i3resnet152"]


def test_registry_lists_every_backbone() -> None:
    assert list_backbones() == sorted(NAMES + NAMES_3D_ONLY)
    assert set(describe_backbones()) == set(NAMES + NAMES_3D_ONLY)


def test_unknown_backbone_names_the_choices() -> None:
    with pytest.raises(KeyError, match="resnet18"):
        create_backbone("vgg16", spatial_dims=2)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", NAMES)
def test_contract(name: str, spatial_dims: int) -> None:
    torch.manual_seed(0)
    model = create_backbone(name, spatial_dims=spatial_dims, in_channels=1, num_outputs=3)
    model.eval()
    assert isinstance(model, Backbone)
    batch = 2 if spatial_dims == 2 else 1
    x = torch.randn(batch, 1, *SIZES[spatial_dims])
    modules = dict(model.named_modules())
    # gradcam_layer names a module of the last stage that produces the feature map
    assert model.gradcam_layer in modules
    captured: list[torch.Tensor] = []
    hook = modules[model.gradcam_layer].register_forward_hook(
        lambda _m, _i, out: captured.append(out)
    )
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model(x)
    hook.remove()
    assert len(captured) == 2
    torch.testing.assert_close(captured[0], feats)
    # feature map: (B, C, *spatial) with the documented channel count
    assert feats.ndim == 2 + spatial_dims
    assert feats.shape[:2] == (batch, FEATURE_DIM[name])
    assert logits.shape == (batch, 3)
    # forward == forward_head(forward_features), from a map or from the pooled vector
    pooled = feats.flatten(2).mean(2)
    torch.testing.assert_close(logits, model.forward_head(feats))
    torch.testing.assert_close(logits, model.forward_head(pooled))

    # blocks(): stem first, every non-head parameter exactly once, no head parameter
    blocks = model.blocks()
    assert len(blocks) >= 4
    seen: list[int] = [id(p) for b in blocks for p in b.parameters()]
    assert len(seen) == len(set(seen))
    head_ids = {id(p) for p in model.head.parameters()}
    non_head = {id(p) for p in model.parameters()} - head_ids
    assert set(seen) == non_head
    first_conv_param = dict(model.named_parameters())[model.first_conv]
    assert any(p is first_conv_param for p in blocks[0].parameters())
    assert first_conv_param.shape[1] == 1

    # reset_head changes the output size and keeps the backbone
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("head.")}
    model.reset_head(5, dropout=0.1)
    with torch.no_grad():
        assert model.forward_head(feats).shape == (batch, 5)
    assert model.config.num_outputs == 5
    assert model.config.head.dropout == 0.1
    assert model.head.dropout.p == 0.1
    for k, v in model.state_dict().items():
        if not k.startswith("head."):
            assert torch.equal(v, before[k]), k


def test_reset_head_with_hidden_layer_and_labels() -> None:
    model = create_backbone(
        "smallcnn", spatial_dims=2, num_outputs=2, labels=["no nodule", "nodule"], dropout=0.2
    )
    model.reset_head(4, hidden_dim=16)
    assert model.head.hidden is not None and model.head.hidden.out_features == 16
    assert model.config.head.hidden_dim == 16
    assert model.config.head.dropout == 0.2  # kept when not given
    assert model.config.labels == []  # 2 labels no longer fit 4 outputs
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 4)


def test_pool_features_is_the_mean_of_the_feature_map() -> None:
    model = create_backbone("smallcnn", spatial_dims=3).eval()
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        expected = model.forward_features(x).mean((2, 3, 4))
        torch.testing.assert_close(model.pool_features(x), expected)


def test_head_pools_and_uses_dropout() -> None:
    head = ClassifierHead(8, 2, dropout=0.3)
    assert head.dropout.p == 0.3
    fmap = torch.randn(3, 8, 4, 4)
    head.eval()
    torch.testing.assert_close(head(fmap), head.fc(fmap.mean((2, 3))))
    assert head(fmap, pre_logits=True).shape == (3, 8)


def test_config_round_trip_rebuilds_same_architecture() -> None:
    model = create_backbone(
        "resnet10",
        spatial_dims=3,
        in_channels=2,
        num_outputs=4,
        hidden_dim=32,
        options={"medicalnet": True},
        input_size=[32, 32, 32],
        preprocessing={"modality": "ct", "spatial_dims": 3, "spatial_size": [32, 32, 32]},
        labels=["a", "b", "c", "d"],
        source_domain="MRI brain",
        source_task="segmentation",
    )
    data = model.config.to_dict()
    cfg = BackboneConfig.from_dict(data)
    assert cfg == model.config
    rebuilt = build_backbone(data)
    assert [(k, v.shape) for k, v in rebuilt.state_dict().items()] == [
        (k, v.shape) for k, v in model.state_dict().items()
    ]
    assert rebuilt.geometry == model.geometry


def test_config_validation() -> None:
    with pytest.raises(ValidationError):
        BackboneConfig(name="resnet18", spatial_dims=4)
    with pytest.raises(ValidationError):
        BackboneConfig(name="resnet18", spatial_dims=2, unknown_field=1)
    with pytest.raises(ValueError, match="unknown ResNet options"):
        create_backbone("resnet18", spatial_dims=2, options={"dilation": 2})
    with pytest.raises(ValueError, match="no options"):
        create_backbone("densenet121", spatial_dims=2, options={"x": 1})


def test_resnet_default_geometry_is_torchvision() -> None:
    model = create_backbone("resnet18", spatial_dims=2)
    enc = model.encoder
    assert enc.conv1.kernel_size == (7, 7) and enc.conv1.stride == (2, 2)
    assert not enc.no_max_pool
    assert enc.layer2[0].downsample[0].bias is None  # shortcut B without bias
    # 64 px -> stem /2 -> pool /2 -> layers 2-4 /8 = 2
    assert model.forward_features(torch.randn(1, 1, 64, 64)).shape[-2:] == (2, 2)


@pytest.mark.parametrize(("name", "shortcut"), [("resnet10", "B"), ("resnet18", "A")])
def test_resnet_medicalnet_geometry(name: str, shortcut: str) -> None:
    model = create_backbone(name, spatial_dims=3, options={"medicalnet": True}).eval()
    assert model.geometry["shortcut_type"] == shortcut
    enc = model.encoder
    for layer, dilation in ((enc.layer3, 2), (enc.layer4, 4)):
        for block in layer:
            for conv in (block.conv1, block.conv2):
                assert conv.stride == (1, 1, 1)
                assert conv.dilation == (dilation,) * 3
                assert conv.padding == (dilation,) * 3
    has_down = isinstance(enc.layer3[0].downsample, torch.nn.Sequential)
    assert has_down == (shortcut == "B")
    # 32^3 -> stem /2 -> pool /2 -> layer2 /2 = 4; layer3/4 keep 4 (dilated, stride 1)
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 1, 32, 32, 32))
    assert feats.shape == (1, 512, 4, 4, 4)


def test_resnet_geometry_options() -> None:
    model = create_backbone(
        "resnet10",
        spatial_dims=3,
        options={"conv1_t_size": 3, "conv1_t_stride": 1, "no_max_pool": True, "shortcut_type": "A"},
    )
    assert model.encoder.conv1.kernel_size == (3, 3, 3)
    assert model.encoder.no_max_pool
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 1, 16, 16, 16))
    assert feats.shape == (1, 512, 2, 2, 2)  # only layers 2-4 downsample


def test_smallcnn_widths_option() -> None:
    model = create_backbone("smallcnn", spatial_dims=2, options={"widths": [8, 16]})
    assert model.feature_dim == 16
    assert len(model.blocks()) == 2
    assert model.gradcam_layer == "encoder.1"
    with pytest.raises(ValueError, match="widths"):
        create_backbone("smallcnn", spatial_dims=2, options={"widths": []})


@pytest.mark.parametrize("name", ["smallcnn", "resnet10", "densenet121"])
def test_gradcam_layer_works_with_monai_gradcam(name: str) -> None:
    from monai.visualize import GradCAM

    torch.manual_seed(0)
    model = create_backbone(name, spatial_dims=2, num_outputs=2).eval()
    cam = GradCAM(nn_module=model, target_layers=model.gradcam_layer)
    x = torch.randn(1, 1, 64, 64)
    heat = cam(x, class_idx=1)
    assert heat.shape == (1, 1, 64, 64)
    assert torch.isfinite(heat).all()
    # the hooks saw the feature map and its gradient (a random net's CAM may be all zero)
    acts = cam.nn_module.activations[model.gradcam_layer]
    grads = cam.nn_module.gradients[model.gradcam_layer]
    assert acts.shape[:2] == grads.shape[:2] == (1, model.feature_dim)
    assert float(grads.abs().sum()) > 0


def test_resnet50_medicalnet_geometry_dilates_only_the_3x3_convs() -> None:
    model = create_backbone("resnet50", spatial_dims=3, options={"medicalnet": True}).eval()
    assert model.geometry["shortcut_type"] == "B"
    for layer, dilation in ((model.encoder.layer3, 2), (model.encoder.layer4, 4)):
        for block in layer:
            assert block.conv2.dilation == (dilation,) * 3 and block.conv2.stride == (1, 1, 1)
            assert block.conv1.dilation == block.conv3.dilation == (1, 1, 1)
        assert layer[0].downsample[0].stride == (1, 1, 1)
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 1, 32, 32, 32))
    assert feats.shape == (1, 2048, 4, 4, 4)
