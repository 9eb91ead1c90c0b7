"""Native weights (safetensors, state dict), MONAI state dicts and bundles, safe reading."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from monai.networks.nets import DenseNet121, EfficientNetBN
from safetensors.torch import save_file

from medtl.models import (
    WeightImportError,
    create_backbone,
    import_weights,
    read_checkpoint,
    save_weights,
    sniff_format,
)

torch.set_num_threads(1)


def _equal_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_native_safetensors_round_trip_is_exact(tmp_path) -> None:
    torch.manual_seed(0)
    src = create_backbone("smallcnn", spatial_dims=3, num_outputs=2)
    path = save_weights(src, tmp_path / "w.safetensors")
    assert sniff_format(path) == "native"
    dst = create_backbone("smallcnn", spatial_dims=3, num_outputs=2)
    report = import_weights(dst, path)
    assert report.format == "native"
    assert report.missing == [] and report.unexpected == [] and report.skipped_head == []
    assert report.loaded_fraction == 1.0
    _equal_state(src, dst)


def test_native_torch_state_dict_with_ddp_prefix(tmp_path) -> None:
    torch.manual_seed(1)
    src = create_backbone("resnet10", spatial_dims=2, num_outputs=3)
    path = tmp_path / "ddp.pt"
    torch.save({"model": {f"module.{k}": v for k, v in src.state_dict().items()}, "epoch": 4}, path)
    state, info = read_checkpoint(path)
    assert set(state) == set(src.state_dict())
    assert info["wrapper"] == "model"
    assert info["stripped_prefix"] == "module."
    assert info["dropped"] == ["epoch"]
    dst = create_backbone("resnet10", spatial_dims=2, num_outputs=3)
    report = import_weights(dst, path, format="native")
    assert report.loaded_fraction == 1.0
    _equal_state(src, dst)


def test_native_weights_name_their_architecture(tmp_path) -> None:
    src = create_backbone("smallcnn", spatial_dims=2)
    path = save_weights(src, tmp_path / "w.safetensors")
    _, info = read_checkpoint(path)
    assert '"name":"smallcnn"' in info["metadata"]["medtl_config"]
    with pytest.raises(WeightImportError, match="weights are for a smallcnn backbone"):
        import_weights(create_backbone("resnet10", spatial_dims=2), path)


def test_native_head_mismatch_is_reported_not_loaded(tmp_path) -> None:
    src = create_backbone("smallcnn", spatial_dims=2, num_outputs=5)
    path = save_weights(src, tmp_path / "w.safetensors")
    dst = create_backbone("smallcnn", spatial_dims=2, num_outputs=2)
    report = import_weights(dst, path)
    assert sorted(report.skipped_head) == ["head.fc.bias", "head.fc.weight"]
    assert report.loaded_fraction == 1.0
    no_head = create_backbone("smallcnn", spatial_dims=2, num_outputs=5)
    report = import_weights(no_head, path, load_head=False)
    assert sorted(report.skipped_head) == ["head.fc.bias", "head.fc.weight"]
    assert not torch.equal(no_head.head.fc.weight, src.head.fc.weight)


def test_pickled_objects_are_refused(tmp_path) -> None:
    src = create_backbone("smallcnn", spatial_dims=2)
    path = tmp_path / "full.pth"
    torch.save({"state_dict": src.state_dict(), "args": argparse.Namespace(lr=0.1)}, path)
    model = create_backbone("smallcnn", spatial_dims=2)
    with pytest.raises(WeightImportError, match="never unpickles"):
        import_weights(model, path)


def test_unreadable_files(tmp_path) -> None:
    model = create_backbone("smallcnn", spatial_dims=2)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightImportError, match="not a PyTorch checkpoint or safetensors"):
        import_weights(model, bad)
    with pytest.raises(WeightImportError, match="not found"):
        import_weights(model, tmp_path / "missing.pt")
    empty = tmp_path / "empty.safetensors"
    save_file({"x": torch.zeros(1)}, str(empty))
    with pytest.raises(WeightImportError, match="unrecognised"):
        import_weights(model, empty)
    with pytest.raises(ValueError, match="unknown format"):
        import_weights(model, empty, format="onnx")


def test_monai_densenet_state_dict_gives_identical_outputs(tmp_path) -> None:
    torch.manual_seed(2)
    net = DenseNet121(spatial_dims=2, in_channels=1, out_channels=2).eval()
    path = tmp_path / "densenet2d.pt"
    torch.save(net.state_dict(), path)
    assert sniff_format(path) == "monai"
    model = create_backbone("densenet121", spatial_dims=2, num_outputs=2).eval()
    report = import_weights(model, path)
    assert report.missing == [] and report.unexpected == [] and report.skipped_head == []
    assert torch.equal(model.head.fc.weight, net.class_layers.out.weight)
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x))


def test_monai_efficientnet_state_dict_gives_identical_outputs(tmp_path) -> None:
    torch.manual_seed(3)
    net = EfficientNetBN(
        "efficientnet-b0", pretrained=False, spatial_dims=2, in_channels=1, num_classes=3
    ).eval()
    path = tmp_path / "effnet.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    model = create_backbone("efficientnet-b0", spatial_dims=2, num_outputs=3).eval()
    report = import_weights(model, path)
    assert report.format == "monai"
    assert report.missing == [] and report.unexpected == []
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x))


def _write_bundle(root, net: torch.nn.Module, network_def: dict) -> None:
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    metadata = {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/"
        "0.8.1/meta_schema_20220324.json",
        "version": "0.2.1",
        "monai_version": "1.3.0",
        "name": "CT chest nodule classification",
        "task": "nodule classification",
        "network_data_format": {
            "inputs": {
                "image": {"type": "image", "num_channels": 1, "spatial_shape": [32, 32, 32]}
            },
            "outputs": {"pred": {"type": "probabilities", "num_channels": 2}},
        },
    }
    (root / "configs" / "metadata.json").write_text(json.dumps(metadata))
    (root / "configs" / "inference.json").write_text(json.dumps({"network_def": network_def}))
    torch.save(net.state_dict(), root / "models" / "model.pt")


def test_monai_bundle_folder(tmp_path) -> None:
    torch.manual_seed(4)
    net = DenseNet121(spatial_dims=3, in_channels=1, out_channels=2).eval()
    bundle = tmp_path / "nodule_bundle"
    network_def = {
        "_target_": "DenseNet121",
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": 2,
    }
    _write_bundle(bundle, net, network_def)
    assert sniff_format(bundle) == "monai_bundle"
    model = create_backbone("densenet121", spatial_dims=3, num_outputs=2, weights=bundle).eval()
    report = model.load_report
    assert report.format == "monai_bundle"
    assert report.loaded_fraction == 1.0 and report.warnings == []
    assert report.meta["version"] == "0.2.1"
    assert report.meta["network_def"]["_target_"] == "DenseNet121"
    assert report.meta["weights_file"] == "models/model.pt"
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x))
    # the network definition is checked against the model
    two_channel = create_backbone("densenet121", spatial_dims=3, in_channels=2, num_outputs=2)
    report = import_weights(two_channel, bundle)
    assert any("in_channels=1" in w for w in report.warnings)
    # a bundle with only a TorchScript model is refused (never loaded)
    ts_only = tmp_path / "ts_bundle"
    _write_bundle(ts_only, net, network_def)
    (ts_only / "models" / "model.pt").unlink()
    (ts_only / "models" / "model.ts").write_bytes(b"PK")
    with pytest.raises(WeightImportError, match="TorchScript"):
        import_weights(model, ts_only)


def test_folder_that_is_not_a_bundle(tmp_path) -> None:
    model = create_backbone("smallcnn", spatial_dims=2)
    with pytest.raises(WeightImportError, match="neither a MONAI bundle"):
        import_weights(model, tmp_path)
