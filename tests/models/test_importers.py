"""Weight import from hand-built checkpoints in each source's exact key layout.

The layouts are written from the source projects' definitions (torchvision ResNet and
DenseNet, MedicalNet's 3D ResNet, torchxrayvision's DenseNet), not generated from our
own modules; parameter counts check them against the published model sizes.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medtl.models import WeightImportError, create_backbone, import_weights, sniff_format

torch.set_num_threads(1)

TORCHVISION_RESNET18_PARAMS = 11_689_512
TORCHVISION_DENSENET121_PARAMS = 7_978_856


def _bn(shapes: dict[str, tuple[int, ...]], prefix: str, c: int) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{prefix}.{name}"] = (c,)
    shapes[f"{prefix}.num_batches_tracked"] = ()


def resnet_shapes(
    layers: list[int],
    block: str,
    shortcut: str,
    spatial_dims: int,
    in_channels: int,
    num_classes: int | None,
) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a torchvision/MedicalNet ResNet state dict."""

    def k(n: int) -> tuple[int, ...]:
        return (n,) * spatial_dims

    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, in_channels, *k(7))}
    _bn(shapes, "bn1", 64)
    inplanes = 64
    for li, (planes, n) in enumerate(zip([64, 128, 256, 512], layers, strict=True), start=1):
        out = planes * (4 if block == "bottleneck" else 1)
        for b in range(n):
            p = f"layer{li}.{b}"
            if block == "basic":
                shapes[f"{p}.conv1.weight"] = (planes, inplanes, *k(3))
                _bn(shapes, f"{p}.bn1", planes)
                shapes[f"{p}.conv2.weight"] = (planes, planes, *k(3))
                _bn(shapes, f"{p}.bn2", planes)
            else:
                shapes[f"{p}.conv1.weight"] = (planes, inplanes, *k(1))
                _bn(shapes, f"{p}.bn1", planes)
                shapes[f"{p}.conv2.weight"] = (planes, planes, *k(3))
                _bn(shapes, f"{p}.bn2", planes)
                shapes[f"{p}.conv3.weight"] = (out, planes, *k(1))
                _bn(shapes, f"{p}.bn3", out)
            needs_shortcut = b == 0 and (li > 1 or inplanes != out)
            if needs_shortcut and shortcut == "B":
                shapes[f"{p}.downsample.0.weight"] = (out, inplanes, *k(1))
                _bn(shapes, f"{p}.downsample.1", out)
            inplanes = out
    if num_classes:
        shapes["fc.weight"] = (num_classes, inplanes)
        shapes["fc.bias"] = (num_classes,)
    return shapes


def densenet121_shapes(
    in_channels: int, num_classes: int, old_keys: bool = False
) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a torchvision DenseNet-121 state dict (old ``norm.1`` keys optional)."""
    shapes: dict[str, tuple[int, ...]] = {"features.conv0.weight": (64, in_channels, 7, 7)}
    _bn(shapes, "features.norm0", 64)
    c = 64
    for bi, n in enumerate((6, 12, 24, 16), start=1):
        for li in range(1, n + 1):
            p = f"features.denseblock{bi}.denselayer{li}"
            sep = "." if old_keys else ""
            _bn(shapes, f"{p}.norm{sep}1", c)
            shapes[f"{p}.conv{sep}1.weight"] = (128, c, 1, 1)
            _bn(shapes, f"{p}.norm{sep}2", 128)
            shapes[f"{p}.conv{sep}2.weight"] = (32, 128, 3, 3)
            c += 32
        if bi < 4:
            _bn(shapes, f"features.transition{bi}.norm", c)
            shapes[f"features.transition{bi}.conv.weight"] = (c // 2, c, 1, 1)
            c //= 2
    _bn(shapes, "features.norm5", c)
    shapes["classifier.weight"] = (num_classes, c)
    shapes["classifier.bias"] = (num_classes,)
    return shapes


def make_state(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.1
    return state


def n_params(state: dict[str, torch.Tensor]) -> int:
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return sum(v.numel() for k, v in state.items() if not k.endswith(buffers))


def ref_basic_resnet(
    state: dict[str, torch.Tensor],
    x: torch.Tensor,
    layers: list[int],
    strides: list[int],
    dilations: list[int],
) -> torch.Tensor:
    """Functional forward of a basic-block ResNet up to layer4 (torchvision/MedicalNet)."""
    conv = F.conv3d if x.ndim == 5 else F.conv2d
    pool = F.max_pool3d if x.ndim == 5 else F.max_pool2d

    def bn(t: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(
            t,
            state[f"{p}.running_mean"],
            state[f"{p}.running_var"],
            state[f"{p}.weight"],
            state[f"{p}.bias"],
            False,
            0.0,
            1e-5,
        )

    x = F.relu(bn(conv(x, state["conv1.weight"], stride=2, padding=3), "bn1"))
    x = pool(x, 3, 2, 1)
    for li, (n, stride, dil) in enumerate(zip(layers, strides, dilations, strict=True), start=1):
        for b in range(n):
            p = f"layer{li}.{b}"
            s = stride if b == 0 else 1
            out = F.relu(
                bn(
                    conv(x, state[f"{p}.conv1.weight"], stride=s, padding=dil, dilation=dil),
                    f"{p}.bn1",
                )
            )
            out = bn(conv(out, state[f"{p}.conv2.weight"], padding=dil, dilation=dil), f"{p}.bn2")
            if f"{p}.downsample.0.weight" in state:
                res = bn(conv(x, state[f"{p}.downsample.0.weight"], stride=s), f"{p}.downsample.1")
            elif b == 0 and (s != 1 or out.shape[1] != x.shape[1]):  # shortcut A
                res = x[(slice(None), slice(None)) + (slice(None, None, s),) * (x.ndim - 2)]
                pad = torch.zeros(res.shape[0], out.shape[1] - res.shape[1], *res.shape[2:])
                res = torch.cat([res, pad], 1)
            else:
                res = x
            x = F.relu(out + res)
    return x


# ----------------------------------------------------------------------- torchvision ResNet


@pytest.fixture(scope="module")
def tv_resnet18() -> dict[str, torch.Tensor]:
    state = make_state(resnet_shapes([2, 2, 2, 2], "basic", "B", 2, 3, 1000), seed=1)
    assert n_params(state) == TORCHVISION_RESNET18_PARAMS
    assert len([k for k in state if not k.endswith("num_batches_tracked")]) == 102
    return state


def test_torchvision_resnet18_rgb_model_loads_every_tensor_and_matches_reference(
    tmp_path, tv_resnet18
) -> None:
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(tv_resnet18, path)
    assert sniff_format(path) == "torchvision"
    model = create_backbone("resnet18", spatial_dims=2, in_channels=3, num_outputs=1000)
    report = import_weights(model, path)
    assert report.format == "torchvision"
    assert report.loaded_fraction == 1.0
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    assert report.skipped_head == []  # 1000 classes fit the head
    dst = model.state_dict()
    for key, value in tv_resnet18.items():
        target = "head." + key if key.startswith("fc.") else "encoder." + key
        assert torch.equal(dst[target], value), key
    assert torch.equal(
        model.encoder.layer3[0].downsample[0].weight, tv_resnet18["layer3.0.downsample.0.weight"]
    )
    assert torch.equal(model.head.fc.weight, tv_resnet18["fc.weight"])
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ours = model.forward_features(x)
    ref = ref_basic_resnet(tv_resnet18, x, [2, 2, 2, 2], [1, 2, 2, 2], [1, 1, 1, 1])
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def test_torchvision_resnet18_to_grey_sums_rgb_and_skips_head(tmp_path, tv_resnet18) -> None:
    path = tmp_path / "r18.pth"
    torch.save(tv_resnet18, path)
    model = create_backbone("resnet18", spatial_dims=2, in_channels=1, num_outputs=2)
    head_before = model.head.fc.weight.clone()
    report = import_weights(model, path, format="timm")
    grey = tv_resnet18["conv1.weight"].sum(dim=1, keepdim=True)
    torch.testing.assert_close(model.encoder.conv1.weight, grey)
    assert "encoder.conv1.weight" in report.adapted
    assert "sum" in report.adapted["encoder.conv1.weight"]
    assert sorted(report.skipped_head) == ["fc.bias", "fc.weight"]
    assert torch.equal(model.head.fc.weight, head_before)
    assert report.missing == ["head.fc.weight", "head.fc.bias"]
    assert report.loaded_fraction == 1.0
    # a grey image gives the same stem response as the RGB model on the grey image x3
    rgb = create_backbone("resnet18", spatial_dims=2, in_channels=3)
    import_weights(rgb, path)
    grey_img = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            model.encoder.conv1(grey_img),
            rgb.encoder.conv1(grey_img.repeat(1, 3, 1, 1)),
            rtol=1e-4,
            atol=1e-5,
        )


def test_torchvision_resnet18_inflated_to_3d(tmp_path, tv_resnet18) -> None:
    path = tmp_path / "r18.pth"
    torch.save(tv_resnet18, path)
    model = create_backbone("resnet18", spatial_dims=3, in_channels=1, num_outputs=2)
    with pytest.raises(WeightImportError, match="inflate=True"):
        import_weights(model, path)
    report = import_weights(model, path, inflate=True)
    assert report.loaded_fraction == 1.0
    w = tv_resnet18["conv1.weight"].sum(1, keepdim=True)
    expected = w.unsqueeze(2).repeat(1, 1, 7, 1, 1) / 7
    torch.testing.assert_close(model.encoder.conv1.weight, expected)
    src = tv_resnet18["layer2.1.conv2.weight"]
    torch.testing.assert_close(
        model.encoder.layer2[1].conv2.weight, src.unsqueeze(2).repeat(1, 1, 3, 1, 1) / 3
    )
    down = model.encoder.layer4[0].downsample[0].weight
    torch.testing.assert_close(down, tv_resnet18["layer4.0.downsample.0.weight"].unsqueeze(2))
    assert torch.equal(
        model.encoder.layer4[1].bn2.running_var, tv_resnet18["layer4.1.bn2.running_var"]
    )
    assert "inflated" in report.adapted["encoder.layer1.0.conv1.weight"]
    # an inflated kernel on a depth-constant volume equals the 2D response (interior slices)
    conv2d = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False)
    conv2d.weight.data = src[:64, :64].clone() if src.shape[1] >= 64 else src
    img = torch.randn(1, src.shape[1], 8, 8)
    vol = img.unsqueeze(2).repeat(1, 1, 5, 1, 1)
    out3 = F.conv3d(vol, model.encoder.layer2[1].conv2.weight, padding=1)
    torch.testing.assert_close(out3[:, :, 2], F.conv2d(img, src, padding=1), rtol=1e-4, atol=1e-5)


def test_threshold_failure_leaves_model_unchanged(tmp_path, tv_resnet18) -> None:
    partial = {k: v for k, v in tv_resnet18.items() if not k.startswith(("layer4.", "layer3."))}
    path = tmp_path / "partial.pth"
    torch.save(partial, path)
    model = create_backbone("resnet18", spatial_dims=2, in_channels=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightImportError, match="of the backbone parameters loaded") as info:
        import_weights(model, path)
    report = info.value.report
    assert report is not None and 0.0 < report.loaded_fraction < 0.9
    assert "encoder.layer4.1.conv2.weight" in report.missing
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    # the threshold is configurable
    report = import_weights(model, path, min_loaded=0.05)
    fraction = report.backbone_params_loaded / report.backbone_params_total
    assert report.loaded_fraction == pytest.approx(fraction)
    assert torch.equal(model.encoder.layer2[0].conv1.weight, tv_resnet18["layer2.0.conv1.weight"])


def test_wrong_family_and_unknown_layout_fail(tmp_path, tv_resnet18) -> None:
    path = tmp_path / "r18.pth"
    torch.save(tv_resnet18, path)
    dense = create_backbone("smallcnn", spatial_dims=2)
    with pytest.raises(WeightImportError, match="resnet but the model is a smallcnn"):
        import_weights(dense, path, format="torchvision")
    odd = tmp_path / "odd.pth"
    torch.save({"backbone.stem.weight": torch.zeros(3)}, odd)
    with pytest.raises(WeightImportError, match="unrecognised"):
        import_weights(dense, odd)


# ---------------------------------------------------------------------- torchvision DenseNet


@pytest.mark.parametrize("old_keys", [False, True])
def test_torchvision_densenet121_keys_land(tmp_path, old_keys: bool) -> None:
    state = make_state(densenet121_shapes(3, 1000, old_keys=old_keys), seed=2)
    assert n_params(state) == TORCHVISION_DENSENET121_PARAMS
    path = tmp_path / "densenet121-a639ec97.pth"
    torch.save(state, path)
    model = create_backbone("densenet121", spatial_dims=2, in_channels=1, num_outputs=2)
    report = import_weights(model, path)
    assert report.format == "torchvision"
    assert report.loaded_fraction == 1.0
    assert report.unexpected == [] and report.mismatched == []
    assert sorted(report.skipped_head) == ["classifier.bias", "classifier.weight"]
    dst = model.state_dict()
    for key, value in state.items():
        if key.startswith("classifier."):
            continue
        target = "encoder." + key
        if ".denselayer" in key:  # torchvision norm1 / old norm.1 -> MONAI layers.norm1
            head, _, tail = key.rpartition(".denselayer")
            layer, rest = tail.split(".", 1)
            rest = rest.replace("norm.", "norm").replace("conv.", "conv")
            target = f"encoder.{head}.denselayer{layer}.layers.{rest}"
        if key == "features.conv0.weight":
            torch.testing.assert_close(dst[target], value.sum(1, keepdim=True))
        else:
            assert torch.equal(dst[target], value), key
    sep = "." if old_keys else ""
    f = model.encoder.features
    assert torch.equal(
        f.denseblock3.denselayer24.layers.conv2.weight,
        state[f"features.denseblock3.denselayer24.conv{sep}2.weight"],
    )
    assert torch.equal(f.transition2.conv.weight, state["features.transition2.conv.weight"])
    assert torch.equal(f.norm5.running_mean, state["features.norm5.running_mean"])


def test_torchxrayvision_densenet(tmp_path) -> None:
    state = make_state(densenet121_shapes(1, 18), seed=3)
    state["op_threshs"] = torch.rand(18)
    path = tmp_path / "nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-tw-lr001.pt"
    torch.save(state, path)
    assert sniff_format(path) == "torchxrayvision"
    model = create_backbone("densenet121", spatial_dims=2, in_channels=1, num_outputs=18)
    report = import_weights(model, path)
    assert report.format == "torchxrayvision"
    assert report.ignored == ["op_threshs"]
    assert report.unexpected == [] and report.missing == [] and report.adapted == {}
    assert torch.equal(model.head.fc.weight, state["classifier.weight"])
    assert torch.equal(model.encoder.features.conv0.weight, state["features.conv0.weight"])
    assert "1024" in report.meta["preprocessing"]["note"]
    # a 1-output nodule model keeps its own head
    nodule = create_backbone("densenet121", spatial_dims=2, in_channels=1, num_outputs=1)
    report = import_weights(nodule, path, format="torchxrayvision")
    assert sorted(report.skipped_head) == ["classifier.bias", "classifier.weight"]
    assert report.loaded_fraction == 1.0


# --------------------------------------------------------------------------------- MedicalNet


def medicalnet_checkpoint(depth_layers: list[int], shortcut: str, seg_head: bool) -> dict:
    state = make_state(resnet_shapes(depth_layers, "basic", shortcut, 3, 1, None), seed=4)
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    if seg_head:  # MedicalNet's conv_seg: ConvTranspose3d, BN, ReLU, Conv3d, BN, ReLU, Conv3d
        state["conv_seg.0.weight"] = torch.randn(512, 32, 2, 2, 2)
        state["conv_seg.0.bias"] = torch.randn(32)
        for name in ("weight", "bias", "running_mean", "running_var"):
            state[f"conv_seg.1.{name}"] = torch.rand(32)
        state["conv_seg.3.weight"] = torch.randn(32, 32, 3, 3, 3)
        state["conv_seg.6.weight"] = torch.randn(2, 32, 1, 1, 1)
    return {"state_dict": {f"module.{k}": v for k, v in state.items()}}


@pytest.mark.parametrize(
    ("name", "layers", "shortcut"),
    [("resnet10", [1, 1, 1, 1], "B"), ("resnet18", [2, 2, 2, 2], "A")],
)
def test_medicalnet_resnet_matches_reference(tmp_path, name, layers, shortcut) -> None:
    ckpt = medicalnet_checkpoint(layers, shortcut, seg_head=True)
    path = tmp_path / f"{name}.pth"
    torch.save(ckpt, path)
    assert sniff_format(path) == "medicalnet"
    model = create_backbone(
        name, spatial_dims=3, in_channels=1, num_outputs=2, options={"medicalnet": True}
    )
    report = import_weights(model, path)
    assert report.format == "medicalnet"
    assert report.loaded_fraction == 1.0
    assert report.unexpected == [] and report.mismatched == [] and report.warnings == []
    assert all(k.startswith("conv_seg.") for k in report.ignored) and len(report.ignored) == 8
    state = {k.removeprefix("module."): v for k, v in ckpt["state_dict"].items()}
    dst = model.state_dict()
    for key, value in state.items():
        if not key.startswith("conv_seg."):
            assert torch.equal(dst["encoder." + key], value), key
    model.eval()
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        ours = model.forward_features(x)
    ref = ref_basic_resnet(state, x, layers, [1, 2, 1, 1], [1, 1, 2, 4])
    assert ours.shape == (1, 512, 4, 4, 4)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def test_medicalnet_geometry_and_structure_checks(tmp_path) -> None:
    path = tmp_path / "resnet_10_23dataset.pth"
    torch.save(medicalnet_checkpoint([1, 1, 1, 1], "B", seg_head=False), path)
    plain = create_backbone("resnet10", spatial_dims=3)
    report = import_weights(plain, path, format="medicalnet")
    assert any("dilation" in w for w in report.warnings)
    assert report.loaded_fraction == 1.0
    wrong_shortcut = create_backbone("resnet10", spatial_dims=3, options={"shortcut_type": "A"})
    with pytest.raises(WeightImportError, match="shortcut type B"):
        import_weights(wrong_shortcut, path)
    wrong_depth = create_backbone("resnet18", spatial_dims=3, options={"medicalnet": True})
    with pytest.raises(WeightImportError, match="ResNet-10"):
        import_weights(wrong_depth, path)
    flat = create_backbone("resnet10", spatial_dims=2)
    with pytest.raises(WeightImportError, match="3D"):
        import_weights(flat, path)
    # 2-channel input (e.g. CT + mask) is adapted from MedicalNet's 1 channel
    two = create_backbone("resnet10", spatial_dims=3, in_channels=2, options={"medicalnet": True})
    report = import_weights(two, path)
    w = torch.load(path, weights_only=True)["state_dict"]["module.conv1.weight"]
    torch.testing.assert_close(two.encoder.conv1.weight, w.repeat(1, 2, 1, 1, 1) / 2)


# ------------------------------------------------------------ EfficientNet-PyTorch (lukemelas)

EFFICIENTNET_B0_PARAMS = 5_288_548
# (repeats, kernel, expand ratio, in, out) of EfficientNet-B0's seven stages
B0_STAGES = [(1, 3, 1, 32, 16), (2, 3, 6, 16, 24), (2, 5, 6, 24, 40), (3, 3, 6, 40, 80),
             (3, 5, 6, 80, 112), (4, 5, 6, 112, 192), (1, 3, 6, 192, 320)]  # fmt: skip


def efficientnet_pytorch_b0_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of lukemelas EfficientNet-PyTorch efficientnet-b0 (flat ``_blocks.<n>``)."""
    shapes: dict[str, tuple[int, ...]] = {"_conv_stem.weight": (32, 3, 3, 3)}
    _bn(shapes, "_bn0", 32)
    n = 0
    for repeats, k, e, c_in, c_out in B0_STAGES:
        for r in range(repeats):
            cin = c_in if r == 0 else c_out
            hidden = cin * e
            p = f"_blocks.{n}"
            if e != 1:
                shapes[f"{p}._expand_conv.weight"] = (hidden, cin, 1, 1)
                _bn(shapes, f"{p}._bn0", hidden)
            shapes[f"{p}._depthwise_conv.weight"] = (hidden, 1, k, k)
            _bn(shapes, f"{p}._bn1", hidden)
            squeezed = max(1, int(cin * 0.25))
            shapes[f"{p}._se_reduce.weight"] = (squeezed, hidden, 1, 1)
            shapes[f"{p}._se_reduce.bias"] = (squeezed,)
            shapes[f"{p}._se_expand.weight"] = (hidden, squeezed, 1, 1)
            shapes[f"{p}._se_expand.bias"] = (hidden,)
            shapes[f"{p}._project_conv.weight"] = (c_out, hidden, 1, 1)
            _bn(shapes, f"{p}._bn2", c_out)
            n += 1
    shapes["_conv_head.weight"] = (1280, 320, 1, 1)
    _bn(shapes, "_bn1", 1280)
    shapes["_fc.weight"] = (1000, 1280)
    shapes["_fc.bias"] = (1000,)
    return shapes


def test_efficientnet_pytorch_b0_flat_blocks(tmp_path) -> None:
    state = make_state(efficientnet_pytorch_b0_shapes(), seed=5)
    assert n_params(state) == EFFICIENTNET_B0_PARAMS
    path = tmp_path / "efficientnet-b0-355c32eb.pth"
    torch.save(state, path)
    assert sniff_format(path) == "efficientnet_pytorch"
    model = create_backbone("efficientnet-b0", spatial_dims=2, in_channels=1, num_outputs=2)
    report = import_weights(model, path)
    assert report.loaded_fraction == 1.0
    assert report.unexpected == [] and report.mismatched == []
    e = model.encoder
    # global block 9 is the second block of stage 4 (blocks 0 | 1-2 | 3-4 | 5-7 | 8-10 ...)
    assert torch.equal(
        e._blocks[4][1]._depthwise_conv.weight, state["_blocks.9._depthwise_conv.weight"]
    )
    assert torch.equal(
        e._blocks[6][0]._project_conv.weight, state["_blocks.15._project_conv.weight"]
    )
    assert torch.equal(e._blocks[0][0]._se_expand.bias, state["_blocks.0._se_expand.bias"])
    assert torch.equal(e._bn1.running_var, state["_bn1.running_var"])
    torch.testing.assert_close(e._conv_stem.weight, state["_conv_stem.weight"].sum(1, keepdim=True))
