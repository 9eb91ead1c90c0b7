"""What users hand in as "weights": Lightning checkpoints, text files, plain pickles.

Every file here is written by the library a user would have used (torch.save,
safetensors, pickle, plain text), never built from medtl's own reader.
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict

import pytest
import torch
from safetensors.torch import save_file

from medtl.models import WeightImportError, create_backbone, import_weights, sniff_format
from medtl.models.checkpoints import sniff_container
from medtl.models.weights import read_checkpoint

torch.set_num_threads(1)


def _resnet18_torchvision_keys() -> dict[str, torch.Tensor]:
    """A 1-channel resnet18 state dict in torchvision layout (conv1.weight, layer1.*, fc.*)."""
    torch.manual_seed(0)
    model = create_backbone("resnet18", spatial_dims=2, in_channels=1, num_outputs=2)
    state = {}
    for key, value in model.state_dict().items():
        bare = key.removeprefix("encoder.")
        state[bare.replace("head.fc.", "fc.")] = value.clone()
    return state


def _assert_loaded(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    dst = model.state_dict()
    for key, value in state.items():
        target = "head.fc." + key[3:] if key.startswith("fc.") else "encoder." + key
        assert torch.equal(dst[target], value), key


@pytest.mark.parametrize("prefix", ["model.", "net.", "backbone.", "model.backbone.", "_orig_mod."])
def test_lightning_checkpoint_with_training_prefix_loads(tmp_path, prefix: str) -> None:
    state = _resnet18_torchvision_keys()
    ckpt = {
        "epoch": 7,
        "global_step": 140,
        "pytorch-lightning_version": "2.2.0",
        "state_dict": {prefix + k: v for k, v in state.items()},
        "hyper_parameters": {"lr": 0.001},
    }
    # a loss weight registered as a buffer is saved beside the network
    ckpt["state_dict"]["criterion.pos_weight"] = torch.tensor([2.0])
    path = tmp_path / "epoch=7-step=140.ckpt"
    torch.save(ckpt, path)
    assert sniff_format(path) == "torchvision"
    model = create_backbone("resnet18", spatial_dims=2, in_channels=1, num_outputs=2)
    report = import_weights(model, path)
    assert report.loaded_fraction == 1.0
    assert report.unexpected == [] and report.mismatched == []
    assert report.meta["checkpoint"]["wrapper"] == "state_dict"
    assert report.meta["checkpoint"]["stripped_prefix"] == prefix
    assert "criterion.pos_weight" in report.meta["checkpoint"]["dropped"]
    _assert_loaded(model, state)


def test_nested_wrapper_and_safetensors_with_prefix(tmp_path) -> None:
    state = _resnet18_torchvision_keys()
    nested = tmp_path / "nested.pt"
    torch.save({"model": {"state_dict": {"net." + k: v for k, v in state.items()}}}, nested)
    model = create_backbone("resnet18", spatial_dims=2, in_channels=1, num_outputs=2)
    assert import_weights(model, nested).loaded_fraction == 1.0
    _, info = read_checkpoint(nested)
    assert info["wrapper"] == "model.state_dict"
    flat = tmp_path / "lightning.safetensors"
    save_file({"model." + k: v.contiguous() for k, v in state.items()}, str(flat))
    model = create_backbone("resnet18", spatial_dims=2, in_channels=1, num_outputs=2)
    assert import_weights(model, flat).loaded_fraction == 1.0
    _assert_loaded(model, state)


def test_unrecognised_layout_shows_the_first_keys(tmp_path) -> None:
    path = tmp_path / "vit.ckpt"
    keys = ["model.patch_embed.proj.weight", "model.cls_token", "model.pos_embed"]
    torch.save({"state_dict": {k: torch.zeros(4) for k in keys}}, path)
    model = create_backbone("resnet18", spatial_dims=2)
    with pytest.raises(WeightImportError) as info:
        import_weights(model, path)
    message = str(info.value)
    assert "vit.ckpt: unrecognised key layout" in message
    assert "model.patch_embed.proj.weight, model.cls_token, model.pos_embed" in message
    with pytest.raises(WeightImportError, match=r"model\.patch_embed\.proj\.weight"):
        sniff_format(path)


def test_text_file_gets_a_plain_message(tmp_path) -> None:
    for name, text in [("notes.txt", "these are not weights\n"), ("w.pth", "0\n"), ("e.pt", "")]:
        path = tmp_path / name
        path.write_text(text)
        model = create_backbone("smallcnn", spatial_dims=2)
        with pytest.raises(WeightImportError) as info:
            import_weights(model, path)
        message = str(info.value)
        assert message.startswith(f"{name}: not a PyTorch checkpoint or safetensors file")
        assert "pop from empty list" not in message and "weights_only" not in message


def test_plain_pickle_is_refused_before_unpickling(tmp_path) -> None:
    ran = tmp_path / "ran"
    path = tmp_path / "weights.pkl"

    class Payload:  # unpickling this would create the file
        def __reduce__(self):
            return (open, (str(ran), "w"))

    with path.open("wb") as fh:
        pickle.dump({"conv1.weight": [[0.1]], "trap": Payload()}, fh, protocol=4)
    plain = tmp_path / "plain.pkl"
    with plain.open("wb") as fh:
        pickle.dump(OrderedDict(w=[1.0, 2.0]), fh, protocol=2)
    for file in (path, plain):
        assert sniff_container(file) == "pickle"
        with pytest.raises(WeightImportError) as info:
            import_weights(create_backbone("smallcnn", spatial_dims=2), file)
        message = str(info.value)
        assert "needs unpickling" in message and "safetensors" in message
        assert "weights_only=False" not in message and "weights_only" not in message
    assert not ran.exists()


def test_torch_archive_with_custom_class_is_refused_without_torch_hint(tmp_path) -> None:
    path = tmp_path / "full_model.pt"
    torch.save({"state_dict": torch.nn.Linear(2, 2)}, path)  # a whole module, pickled
    with pytest.raises(WeightImportError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert "refused" in message and "needs unpickling" in message
    assert "weights_only=False" not in message


def test_other_containers_are_named(tmp_path) -> None:
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("configs/metadata.json", "{}")
    script = tmp_path / "model.ts"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), script)
    legacy = tmp_path / "legacy.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, legacy, _use_new_zipfile_serialization=False)
    assert sniff_container(archive) == "zip"
    assert sniff_container(script) == "torchscript"
    assert sniff_container(legacy) == "torch-legacy"
    assert read_checkpoint(legacy)[0]["conv1.weight"].shape == (1,)
    with pytest.raises(WeightImportError, match="TorchScript archive"):
        read_checkpoint(script)
    with pytest.raises(WeightImportError, match="zip archive without"):
        read_checkpoint(archive)
