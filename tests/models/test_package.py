"""Model package round trip, model card, and the local package registry."""

from __future__ import annotations

import json
import math

import jsonschema
import pytest
import torch
from pydantic import ValidationError

from medtl.artifacts import PreprocessingSpec
from medtl.models import (
    ModelCard,
    PackageError,
    create_backbone,
    import_weights,
    list_packages,
    load_package,
    read_card,
    register_package,
    resolve_package,
    save_package,
)

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDTL_HOME", str(tmp_path / "home"))


def _model(seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    model = create_backbone(
        "smallcnn",
        spatial_dims=2,
        num_outputs=2,
        labels=["no nodule", "nodule"],
        preprocessing={"modality": "cxr", "spatial_size": [32, 32]},
        hidden_dim=8,
        **kwargs,
    )
    # non-default BN statistics, so a round trip that drops buffers would fail
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 1, 32, 32))
    return model.eval()


def _card(**kwargs) -> ModelCard:
    fields = {
        "name": "cxr-nodule",
        "version": "1.0.0",
        "calibration": {"method": "temperature", "temperature": 1.7, "n_classes": 2},
        "operating_points": [
            {"name": "youden", "threshold": 0.42, "sensitivity": 0.9, "specificity": 0.8}
        ],
        "source_domain": "CXR",
        "target_domain": "CXR",
        "target_task": "nodule yes/no",
        "strategy": "staged",
        "data_hash": "sha256:abc",
        "config_hash": "sha256:def",
        "metrics": {"auroc": 0.91, "auroc_ci": [0.88, 0.94]},
        "intended_use": "research only",
        "limitations": ["trained on simulated nodules"],
        "training": {"epochs": 3, "seed": 0},
    }
    fields.update(kwargs)
    return ModelCard(**fields)


def test_package_round_trip_is_exact(tmp_path) -> None:
    model = _model()
    out = save_package(model, _card(), tmp_path / "pkg", report_html="<html>report</html>")
    assert sorted(p.name for p in out.iterdir()) == [
        "model.json",
        "report.html",
        "weights.safetensors",
    ]
    loaded, card = load_package(out)
    assert not loaded.training
    src, dst = model.state_dict(), loaded.state_dict()
    assert list(src) == list(dst)
    for key in src:
        assert torch.equal(src[key], dst[key]), key
    x = torch.randn(3, 1, 48, 48)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert card.architecture == model.config
    assert card.labels == ["no nodule", "nodule"]  # filled from the model config
    assert card.preprocessing == PreprocessingSpec(modality="cxr", spatial_size=[32, 32])
    assert card.operating_points[0].threshold == 0.42
    assert card.calibration == {"method": "temperature", "temperature": 1.7, "n_classes": 2}
    assert set(card.versions) == {"medtl", "torch", "monai"}
    assert card.versions["torch"] == torch.__version__
    assert len(card.weights_sha256 or "") == 64
    assert card.ref == "cxr-nodule@1.0.0"
    assert (out / "report.html").read_text() == "<html>report</html>"
    # the card on disk is plain JSON that the exported schema accepts
    data = json.loads((out / "model.json").read_text())
    jsonschema.validate(data, ModelCard.model_json_schema(mode="serialization"))
    assert data["architecture"]["name"] == "smallcnn"
    # a package folder is also a native weight source for import_weights
    fresh = _model(seed=5)
    report = import_weights(fresh, out)
    assert report.format == "native" and report.loaded_fraction == 1.0
    assert torch.equal(fresh.encoder[0][0].weight, model.encoder[0][0].weight)
    json.dumps(report.to_dict())


def test_save_refuses_to_overwrite_and_load_detects_tampering(tmp_path) -> None:
    model = _model()
    out = save_package(model, _card(), tmp_path / "pkg")
    with pytest.raises(FileExistsError):
        save_package(model, _card(), out)
    save_package(_model(seed=1), _card(), out, overwrite=True)
    weights = out / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(PackageError, match="checksum"):
        load_package(out)


def test_load_is_strict_about_architecture(tmp_path) -> None:
    out = save_package(_model(), _card(), tmp_path / "pkg")
    card = json.loads((out / "model.json").read_text())
    card["architecture"]["options"] = {"widths": [8, 8, 8, 8]}
    card["weights_sha256"] = None
    (out / "model.json").write_text(json.dumps(card))
    with pytest.raises(PackageError, match="do not fit"):
        load_package(out)


def test_card_accepts_evaluation_operating_points_and_rejects_bad_names() -> None:
    op = {
        "name": "sensitivity_0.90",
        "goal": "sensitivity >= 0.90",
        "status": "reached",
        "threshold": 0.3,
        "metrics": {"sensitivity": 0.92, "specificity": 0.71, "ppv": math.nan},
    }
    card = _card(operating_points=[op])
    assert card.operating_points[0].sensitivity == 0.92
    assert card.operating_points[0].specificity == 0.71
    unreachable = {"name": "ppv_0.80", "goal": "ppv >= 0.80", "threshold": None, "metrics": None}
    assert _card(operating_points=[unreachable]).operating_points[0].threshold is None
    with pytest.raises(ValidationError):
        _card(name="../escape")
    with pytest.raises(ValidationError):
        _card(unknown="x")
    with pytest.raises(ValidationError, match="newer"):
        _card(schema_version=99)


def test_registry_register_list_resolve(tmp_path) -> None:
    assert list_packages() == []
    p1 = save_package(_model(), _card(version="1.0.0"), tmp_path / "a")
    p2 = save_package(_model(seed=1), _card(version="1.10.0"), tmp_path / "b")
    p3 = save_package(_model(seed=2), _card(version="1.2.0"), tmp_path / "c")
    assert register_package(p1) == "cxr-nodule@1.0.0"
    assert register_package(p2) == "cxr-nodule@1.10.0"
    assert register_package(p3) == "cxr-nodule@1.2.0"
    with pytest.raises(FileExistsError):
        register_package(p1)
    home = tmp_path / "home" / "models"
    infos = list_packages()
    assert [i.ref for i in infos] == ["cxr-nodule@1.0.0", "cxr-nodule@1.2.0", "cxr-nodule@1.10.0"]
    assert all(i.path.parent.parent == home for i in infos)
    assert infos[0].backbone == "smallcnn"
    # name -> latest version (numeric ordering), name@version -> that one, folder -> itself
    assert resolve_package("cxr-nodule") == home / "cxr-nodule" / "1.10.0"
    assert resolve_package("cxr-nodule@1.2.0") == home / "cxr-nodule" / "1.2.0"
    assert resolve_package(p1) == p1
    model, card = load_package("cxr-nodule@1.0.0")
    assert card.version == "1.0.0"
    assert model.config.labels == ["no nodule", "nodule"]
    assert read_card(p1).weights_sha256 == card.weights_sha256
    with pytest.raises(PackageError, match="no model package"):
        resolve_package("other-model")
    with pytest.raises(PackageError, match="neither"):
        resolve_package("bad/../name")
    # re-registering with overwrite replaces the entry
    p4 = save_package(_model(seed=3), _card(version="1.0.0"), tmp_path / "d")
    register_package(p4, overwrite=True)
    assert read_card(home / "cxr-nodule" / "1.0.0").weights_sha256 == read_card(p4).weights_sha256


def test_register_rejects_incomplete_package(tmp_path) -> None:
    out = save_package(_model(), _card(), tmp_path / "pkg")
    (out / "weights.safetensors").unlink()
    with pytest.raises(PackageError, match="missing"):
        register_package(out)
    with pytest.raises(PackageError, match="not a model package"):
        register_package(tmp_path)
