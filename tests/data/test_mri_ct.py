"""MRI source and CT target builds (tiny): determinism, labels, spatial and patient splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medtl.data.ct_target import CT_COUNTS, CT_LABELS, assign_slabs, slab_layout
from medtl.data.histogram_baseline import histogram_baseline, histogram_features
from medtl.data.manifest import SPLITS, Manifest
from medtl.data.mri_source import MRI_COUNTS, MRI_LABELS, build_mri_volumes
from medtl.data.patches import SIZE_SPECS, read_patch, write_patch
from medtl.data.splits import check_splits


def _centre(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(s // 2 for s in shape)


@pytest.mark.parametrize("fixture", ["tiny_ct2", "tiny_ct3"])
def test_ct_labels_match_the_mask_at_patch_centres(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    root: Path = request.getfixturevalue(fixture)
    m = Manifest.load(root)
    ndim = 2 if fixture.endswith("2") else 3
    spec = SIZE_SPECS["tiny"]
    assert m.label_names == CT_LABELS and m.modality == "CT" and m.simulated
    n = len(CT_LABELS)
    expected = {s: dict.fromkeys(range(n), CT_COUNTS["tiny"].per_class(s, n)) for s in SPLITS}
    assert m.class_counts() == expected
    for r in m.records:
        img, spacing = read_patch(root / r.image)
        mask, _ = read_patch(root / r.mask)
        assert img.shape == spec.patch_shape(ndim) == mask.shape
        assert img.dtype == np.int16
        assert spacing == pytest.approx(spec.spacing[-ndim:])
        assert int(mask[_centre(mask.shape)]) == r.label + 1
        assert r.attributes["ndim"] == ndim
    # HU are real CT values: lung-lobe centres are aerated lung
    lung = [read_patch(root / r.image)[0] for r in m.records]
    assert np.mean([b[_centre(b.shape)] for b in lung]) < -500


@pytest.mark.parametrize("fixture", ["tiny_ct2", "tiny_ct3"])
def test_ct_split_is_spatial_and_patient_grouped(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    m = Manifest.load(request.getfixturevalue(fixture))
    assert check_splits(m).ok
    slabs_of: dict[str, set[int]] = {s: set() for s in SPLITS}
    slices_of: dict[str, set[int]] = {s: set() for s in SPLITS}
    for r in m.records:
        a = r.attributes
        assert a["slab_z0"] <= a["patch_z0"] < a["patch_z1"] <= a["slab_z1"]  # inside the slab
        slabs_of[r.split].add(int(a["slab"]))
        slices_of[r.split].update(range(int(a["patch_z0"]), int(a["patch_z1"])))
    for s in ("val", "calibration", "test"):
        assert not slabs_of[s] & slabs_of["train"]
        assert not slices_of[s] & slices_of["train"], f"{s} patch voxels seen in training"
    # slabs are separated by a gap of 2 slices: no train slice within 2 slices of a test one
    near_test = {z + d for z in slices_of["test"] for d in (-2, -1, 0, 1, 2)}
    assert not near_test & slices_of["train"]


def test_slab_layout_and_assignment() -> None:
    assert slab_layout(30, 6, gap=1) == [(0, 6), (7, 13), (14, 20), (21, 27)]
    assert slab_layout(20, 4) == [(0, 4), (6, 10), (12, 16)]
    counts = np.array([[5, 0], [0, 5], [5, 5], [5, 5], [1, 1], [3, 3]], dtype=float)
    splits = assign_slabs(counts, seed=0)
    assert sorted(set(splits)) == sorted(SPLITS)
    assert splits == assign_slabs(counts, seed=0)
    with pytest.raises(ValueError, match="slabs"):
        assign_slabs(counts[:3], seed=0)


def test_ct_slab_assignment_depends_on_the_seed(fetched_sources: dict[str, Path]) -> None:
    # (byte-identical rebuilds for one seed: tests/data/test_import.py::test_cli_build_demo_ct_tiny)
    # another seed gives other slab assignments (and so other patches)
    from medtl.data.ct_target import _slab_class_counts, load_ct

    _, classes = load_ct(str(fetched_sources["ct_chest"]), "tiny")
    spec = SIZE_SPECS["tiny"]
    counts = _slab_class_counts(classes, slab_layout(classes.shape[0], 4), spec.patch3d)
    assert len({tuple(assign_slabs(counts, seed)) for seed in range(4)}) > 1


def _majority(mask: np.ndarray, ndim: int) -> int:
    c = _centre(mask.shape)
    if ndim == 2:
        region = mask[c[0] - 1 : c[0] + 2, c[1] - 1 : c[1] + 2]
    else:
        zs = slice(c[0] - 1, c[0] + 2) if mask.shape[0] >= 3 else slice(c[0], c[0] + 1)
        region = mask[zs, c[1] - 1 : c[1] + 2, c[2] - 1 : c[2] + 2]
    return int(np.argmax(np.bincount(region.ravel(), minlength=len(MRI_LABELS))))


@pytest.mark.parametrize("fixture", ["tiny_mri2", "tiny_mri3"])
def test_mri_labels_are_the_dominant_centre_tissue(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    root: Path = request.getfixturevalue(fixture)
    m = Manifest.load(root)
    ndim = 2 if fixture.endswith("2") else 3
    counts = MRI_COUNTS["tiny"]
    per_class = counts.per_class_2d if ndim == 2 else counts.per_class_3d
    assert m.label_names == MRI_LABELS and m.modality == "MR" and m.simulated
    assert len(m.records) == counts.subjects * per_class * len(MRI_LABELS)
    assert len(m.patients()) == counts.subjects
    report = check_splits(m)
    assert report.ok and set(report.counts) == set(SPLITS)
    for r in m.records:
        img, _ = read_patch(root / r.image)
        mask, _ = read_patch(root / r.mask)
        assert img.shape == SIZE_SPECS["tiny"].patch_shape(ndim)
        assert _majority(mask, ndim) == r.label
    # tissue contrast of a T1: white matter brighter than grey matter, grey than CSF
    means = {}
    for lab in range(4):
        vals = [read_patch(root / r.image)[0] for r in m.records if r.label == lab]
        means[lab] = np.mean([v[_centre(v.shape)] for v in vals])
    assert means[3] > means[2] > means[1] > means[0]


def test_mri_subjects_differ_and_volumes_share_their_splits(
    tiny_mri2: Path, fetched_sources: dict[str, Path], tmp_path: Path
) -> None:
    vols = build_mri_volumes(
        tmp_path / "v", "tiny", 0, source_dir=fetched_sources["mri_mni152"], progress=False
    )
    patches = Manifest.load(tiny_mri2)
    split_of = {r.patient_id: r.split for r in patches.records}
    assert {r.patient_id: r.split for r in vols.records} == split_of
    a, _ = read_patch(tmp_path / "v" / vols.records[0].image)
    b, _ = read_patch(tmp_path / "v" / vols.records[1].image)
    assert a.shape == b.shape and a.ndim == 3
    assert float(np.abs(a - b).mean()) > 1.0  # virtual subjects are different images
    assert vols.label_names == ["unlabelled"]


def test_histogram_features_and_baseline_on_separable_data(tmp_path: Path) -> None:
    feats = histogram_features(
        [np.array([-1000.0, 40.0, 45.0, 2000.0])], np.array([-2000, 0, 50, 3000.0])
    )
    np.testing.assert_allclose(feats, [[0.25, 0.5, 0.25]])
    from medtl.data.manifest import ManifestRecord

    rng = np.random.default_rng(0)
    records = []
    for i in range(40):
        label = i % 2
        patch = rng.normal(-700 if label == 0 else 300, 20, size=(8, 8)).astype(np.int16)
        write_patch(tmp_path / f"{i}.nii.gz", patch, (1.0, 1.0))
        split = "train" if i < 28 else "test"
        records.append(
            ManifestRecord(image=f"{i}.nii.gz", label=label, patient_id=f"p{i}", split=split)
        )
    m = Manifest(name="sep", label_names=["air", "dense"], records=records)
    result = histogram_baseline(m, tmp_path)
    assert result.test_accuracy == 1.0 and result.test_macro_auroc == 1.0
    assert result.n_train == 28 and result.n_test == 12


def test_histogram_baseline_runs_on_the_ct_set(tiny_ct2: Path) -> None:
    result = histogram_baseline(Manifest.load(tiny_ct2), tiny_ct2)
    assert result.n_test == len(CT_LABELS) * CT_COUNTS["tiny"].per_class("test", len(CT_LABELS))
    assert set(result.per_class_recall) == set(CT_LABELS)
    assert 0.0 <= result.test_accuracy <= 1.0


def test_mri_virtual_subjects_are_deterministic_by_seed(
    tiny_mri2: Path, fetched_sources: dict[str, Path]
) -> None:
    from medtl.data.mri_source import load_template, make_subject

    t1, probs = load_template(str(fetched_sources["mri_mni152"]), "tiny")
    a, b = make_subject(t1, probs, 3, seed=0), make_subject(t1, probs, 3, seed=0)
    np.testing.assert_array_equal(a.t1, b.t1)
    np.testing.assert_array_equal(a.tissue, b.tissue)
    c = make_subject(t1, probs, 3, seed=1)
    assert not np.array_equal(a.t1, c.t1)
    # the built patches of subject 3 come from exactly this subject
    m = Manifest.load(tiny_mri2)
    rec = next(r for r in m.records if r.patient_id == a.subject_id)
    z, y, x = (int(v) for v in str(rec.attributes["centre_zyx"]).split(","))
    img, _ = read_patch(tiny_mri2 / rec.image)
    h, w = img.shape
    expected = a.t1[z, y - h // 2 : y - h // 2 + h, x - w // 2 : x - w // 2 + w]
    np.testing.assert_allclose(img, expected, atol=0.02 * float(np.abs(expected).max()) + 1e-3)
