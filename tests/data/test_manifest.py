"""Manifest model: JSON and CSV round trips, validation, JSON Schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from medtl.data.manifest import (
    MANIFEST_FILENAME,
    Manifest,
    ManifestRecord,
    manifest_schema,
    read_csv_rows,
)


def _manifest() -> Manifest:
    return Manifest(
        name="cxr_toy",
        task="nodule",
        label_names=["no_nodule", "nodule"],
        modality="DX",
        created=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        generator="test",
        seed=7,
        simulated=True,
        description="simulated toy",
        records=[
            ManifestRecord(
                image="images/p1/0.dcm",
                label=1,
                patient_id="P0001",
                split="train",
                modality="DX",
                source="sim",
                task="nodule",
                nodule_center_xy=(40.5, 33.0),
                nodule_diameter_mm=12.0,
                nodule_box_xyxy=(30.0, 22.0, 51.0, 44.0),
                conspicuity_cnr=1.75,
                nodule_type="part-solid",
                location="behind_heart",
                attributes={"sex": "F", "seed": 123, "dose": 0.5, "split": "x"},
            ),
            ManifestRecord(
                image="images/p2/0.dcm", label=0, patient_id="P0002", split="test", modality="DX"
            ),
        ],
    )


def test_json_round_trip_keeps_every_field(tmp_path: Path) -> None:
    m = _manifest()
    written = m.save(tmp_path)
    assert written == tmp_path / MANIFEST_FILENAME
    assert Manifest.load(tmp_path) == m
    assert Manifest.load(written) == m
    raw = json.loads(written.read_text())
    assert raw["records"][0]["nodule_box_xyxy"] == [30.0, 22.0, 51.0, 44.0]
    assert "mask" not in raw["records"][1]  # unset optional fields are left out


def test_csv_round_trip_keeps_records(tmp_path: Path) -> None:
    m = _manifest()
    path = m.to_csv(tmp_path / "m.csv")
    rows = read_csv_rows(path)
    assert list(rows[0])[:4] == ["image", "label", "patient_id", "split"]
    assert rows[0]["nodule_x"] == "40.5" and rows[0]["box_x1"] == "51.0"
    assert rows[0]["attr_split"] == "x"  # an attribute named like a column is prefixed
    back = Manifest.from_csv(
        path,
        name=m.name,
        label_names=m.label_names,
        task=m.task,
        modality=m.modality,
        created=m.created,
        generator="test",
        seed=7,
        simulated=True,
        description="simulated toy",
    )
    assert back == m
    assert back.records[0].attributes == {"sex": "F", "seed": 123, "dose": 0.5, "split": "x"}


@pytest.mark.parametrize("image", ["a\\b.png", "", "C:/x.png"])
def test_image_paths_must_be_portable_posix(image: str) -> None:
    with pytest.raises(ValidationError):
        ManifestRecord(image=image, label=0, patient_id="P", split="train")


@pytest.mark.parametrize("image", ["/abs/a.png", "../up.png", "a/../../b.png"])
def test_image_paths_may_leave_the_manifest_folder(image: str) -> None:
    # a manifest written away from its images (data import --out) reaches them so
    assert ManifestRecord(image=image, label=0, patient_id="P", split="train").image == image


def test_invalid_values_are_refused() -> None:
    ok = {"image": "a.png", "label": 0, "patient_id": "P", "split": "train"}
    ManifestRecord(**ok)
    for bad in (
        {"split": "holdout"},
        {"label": -1},
        {"patient_id": ""},
        {"nodule_box_xyxy": (10, 10, 5, 20)},
        {"nodule_type": "ground-glass"},
        {"nodule_diameter_mm": 0},
        {"unknown_field": 1},
    ):
        with pytest.raises(ValidationError):
            ManifestRecord(**{**ok, **bad})
    with pytest.raises(ValidationError, match="out of range"):
        Manifest(name="x", label_names=["a", "b"], records=[ManifestRecord(**{**ok, "label": 2})])


def test_queries() -> None:
    m = _manifest()
    assert m.num_classes == 2
    assert [r.patient_id for r in m.by_split("test")] == ["P0002"]
    assert m.patients() == {"P0001", "P0002"}
    assert m.class_counts() == {"train": {1: 1}, "test": {0: 1}}


def test_schema_validates_saved_manifests_and_rejects_bad_ones(tmp_path: Path) -> None:
    schema = manifest_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    data = json.loads(_manifest().save(tmp_path).read_text())
    jsonschema.validate(data, schema)
    data["records"][0]["split"] = "holdout"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)
    assert schema == Manifest.model_json_schema() | {"$schema": schema["$schema"]}
