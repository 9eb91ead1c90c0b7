"""Every example config in configs/ validates against its schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtl.transfer.experiment import load_config
from medtl.transfer.pretrain import load_pretrain_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_example_config_validates(path: Path, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MEDTL_HOME", str(tmp_path))
    if path.name.startswith("pretrain_"):
        cfg = load_pretrain_config(path)
        assert cfg.stages
    elif "\narms:" in path.read_text(encoding="utf-8"):  # a multi-arm study (ct_foundation)
        from medtl.transfer.arms import arm_config, load_arms_config

        study = load_arms_config(path)
        cfg = arm_config(study, study.baseline)
    else:
        cfg = load_config(path)
        assert cfg.strategy.total_epochs >= 2
    assert str(cfg.data.dataset).startswith(str(tmp_path))  # $MEDTL_HOME expanded


def test_study_yaml_validates_against_its_json_schema() -> None:
    import json

    import jsonschema
    import yaml

    schema_path = CONFIGS.parent / "data_schemas" / "study_config.schema.json"
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    study = yaml.safe_load((CONFIGS / "ct_foundation.yaml").read_text(encoding="utf-8"))
    jsonschema.validate(study, schema)
    bad = dict(study, arms={**study["arms"], "astra_layer3": {"kind": "feature"}})
    with pytest.raises(jsonschema.ValidationError, match="feature"):
        jsonschema.validate(bad, schema)


def test_tiny_variants_exist_for_each_experiment() -> None:
    names = {p.stem for p in CONFIGS.glob("*.yaml")}
    for name in ("cxr_nodule", "mri_to_ct"):
        assert {name, f"{name}_tiny"} <= names
