"""A missing package's error says what makes it: fetch, a pretraining config, or the list."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medtl.models import ModelCard, create_backbone, save_package
from medtl.models.builders import how_to_build
from medtl.models.package import PackageError, register_package, resolve_package

ROOT = Path(__file__).resolve().parents[2]


def test_foundation_and_checkout_configs(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MEDTL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(ROOT)
    assert how_to_build("astra-ct") == "fetch it with `medtl models fetch astra-ct`"
    assert how_to_build("cxr-source") == "build it with `medtl pretrain configs/pretrain_cxr.yaml`"
    assert how_to_build("mri-source") == "build it with `medtl pretrain configs/pretrain_mri.yaml`"


def test_a_users_config_folder_and_the_demo_configs(monkeypatch, tmp_path) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("MEDTL_HOME", str(home))
    mine = tmp_path / "project" / "configs"
    mine.mkdir(parents=True)
    (mine / "src.yaml").write_text(yaml.safe_dump({"name": "my-src", "backbone": "resnet18"}))
    # an experiment that *uses* my-src is not what builds it
    (mine / "exp.yaml").write_text(yaml.safe_dump({"name": "my-src", "model": {"weights": "x"}}))
    demo = home / "demo" / "tiny" / "configs"
    demo.mkdir(parents=True)
    (demo / "pretrain_cxr.yaml").write_text(
        yaml.safe_dump({"name": "cxr-source-tiny", "backbone": "smallcnn", "stages": ["lesion"]})
    )
    monkeypatch.chdir(tmp_path / "project")
    assert how_to_build("my-src") == "build it with `medtl pretrain configs/src.yaml`"
    assert (
        how_to_build("cxr-source-tiny")
        == f"build it with `medtl pretrain {demo}/pretrain_cxr.yaml`"
    )


def test_otherwise_the_registered_packages_are_listed(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MEDTL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert how_to_build("nodule-v2").startswith("none is registered yet; make one with")
    model = create_backbone("smallcnn", spatial_dims=2)
    register_package(save_package(model, ModelCard(name="nodule", version="1.0.0"), tmp_path / "p"))
    with pytest.raises(PackageError) as info:
        resolve_package("nodule-v2")
    assert "registered: nodule; make one with `medtl package RUN`" in str(info.value)
    with pytest.raises(
        PackageError, match=r"no version 2\.0\.0 of model package 'nodule' \(have: 1\.0\.0\)"
    ):
        resolve_package("nodule@2.0.0")
