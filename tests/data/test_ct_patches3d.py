"""3D CT structure patches on the merlin grid: geometry, slab split, virtual patients."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medtl.data.ct_patches3d import FOUNDATION_PATCH, MERLIN_SPACING, build_ct_patches3d
from medtl.data.manifest import Manifest


@pytest.fixture(scope="module")
def tiny_merlin(tmp_path_factory, fetched_sources: dict[str, Path]) -> Path:
    out = tmp_path_factory.mktemp("ctf")
    build_ct_patches3d(out, "tiny", 0, label_set="density",
                       source_dir=fetched_sources["ct_chest"], progress=False)  # fmt: skip
    return out


def test_patches_are_ras_at_merlin_spacing_and_the_preset_keeps_them(tiny_merlin):
    import torch

    from medtl.data.scan_input import scan_to_input
    from medtl.io import load_scan
    from medtl.models.foundation import merlin_preprocessing

    manifest = Manifest.load(tiny_merlin)
    record = manifest.records[0]
    img = nib.load(str(tiny_merlin / record.image))
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    np.testing.assert_allclose(img.header.get_zooms()[:3], MERLIN_SPACING)
    assert img.shape == FOUNDATION_PATCH["tiny"]
    # the merlin preset's orientation and spacing are identities on these patches
    spec = merlin_preprocessing().model_copy(update={"spatial_size": list(img.shape)})
    x = scan_to_input(load_scan(tiny_merlin / record.image), spec)
    hu = np.asarray(img.dataobj, dtype=np.float32)
    expected = np.clip((hu + 1000.0) / 2000.0, 0.0, 1.0)
    torch.testing.assert_close(x[0], torch.from_numpy(expected), atol=1e-5, rtol=0)
    # the centre voxel carries the label
    mask = np.asarray(nib.load(str(tiny_merlin / record.mask)).dataobj)
    cx, cy, cz = (s // 2 for s in mask.shape)
    assert mask[cx, cy, cz] == record.label + 1


def test_split_is_by_slab_and_patient(tiny_merlin):
    manifest = Manifest.load(tiny_merlin)
    slab_split: dict[int, set[str]] = {}
    patient_split: dict[str, set[str]] = {}
    for r in manifest.records:
        slab_split.setdefault(r.attributes["slab"], set()).add(r.split)
        patient_split.setdefault(r.patient_id, set()).add(r.split)
        assert r.attributes["slab_z0"] <= r.attributes["patch_z0"]
        assert r.attributes["patch_z1"] <= r.attributes["slab_z1"]
    assert all(len(s) == 1 for s in slab_split.values())
    assert all(len(s) == 1 for s in patient_split.values())
    for split in ("train", "val", "calibration", "test"):
        labels = {r.label for r in manifest.records if r.split == split}
        assert labels == set(range(len(manifest.label_names))), split


def test_build_is_deterministic(tiny_merlin, tmp_path, fetched_sources):
    again = build_ct_patches3d(tmp_path, "tiny", 0, label_set="density",
                               source_dir=fetched_sources["ct_chest"], progress=False)  # fmt: skip
    first = Manifest.load(tiny_merlin)
    assert [r.image for r in again.records] == [r.image for r in first.records]
    a = np.asarray(nib.load(str(tmp_path / again.records[5].image)).dataobj)
    b = np.asarray(nib.load(str(tiny_merlin / first.records[5].image)).dataobj)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("label_set", ["anatomy", "density"])
def test_demo_geometry_puts_every_class_in_every_split(fetched_sources, label_set):
    from medtl.data.ct_patches3d import _slab_counts, load_ct_merlin
    from medtl.data.ct_target import assign_slabs, label_set_classes, slab_layout

    _, classes, _ = load_ct_merlin(str(fetched_sources["ct_chest"]), label_set)
    px, py, pz = FOUNDATION_PATCH["demo"]
    zxy = np.moveaxis(classes, 2, 0)
    slabs = slab_layout(zxy.shape[0], pz + 2)
    n = len(label_set_classes(label_set))
    counts = _slab_counts(zxy, slabs, (pz, px, py), n)
    split = np.array(assign_slabs(counts, 0))
    for name in ("train", "val", "calibration", "test"):
        assert (counts[split == name].sum(axis=0) > 0).all(), (label_set, name)


def test_cli_builds_the_merlin_patches_only_when_named(sources_home, tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from medtl.data.cli import DEMO_PARTS, app

    assert "ct-merlin" not in DEMO_PARTS  # not built by a plain build-demo
    monkeypatch.setenv("MEDTL_HOME", str(sources_home))
    args = ["build-demo", "--size", "tiny", "--ct-labels", "density", "--out", str(tmp_path)]
    result = CliRunner().invoke(app, [*args, "--only", "ct-merlin"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert list(summary["datasets"]) == ["ct_structure_3d_merlin"]
    manifest = Manifest.load(tmp_path / "ct_structure_3d_merlin")
    assert len(manifest.records) == summary["datasets"]["ct_structure_3d_merlin"] > 0
    image = nib.load(str(tmp_path / "ct_structure_3d_merlin" / manifest.records[0].image))
    assert image.shape == FOUNDATION_PATCH["tiny"]
