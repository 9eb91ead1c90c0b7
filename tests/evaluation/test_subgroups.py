"""Subgroup CIs resample patients, not images, with the caller's n_resamples and seed."""

from __future__ import annotations

import numpy as np

from medtl.data.manifest import ManifestRecord
from medtl.evaluation.bootstrap import bootstrap_ci
from medtl.evaluation.run import subgroup_results


def _clustered(n_patients: int = 12, per_patient: int = 40, seed: int = 0):
    """Few patients, many near-identical images each: a patient-level score effect dominates.

    Resampling images treats 40 copies of one patient as 40 independent cases, so its
    interval is far narrower than the patient-level one, which sees only 12 patients.
    """
    rng = np.random.default_rng(seed)
    records, y, p, pid = [], [], [], []
    for k in range(n_patients):
        label = k % 2
        effect = rng.normal(0.6 if label else 0.4, 0.15)  # overlapping patients
        for j in range(per_patient):
            records.append(
                ManifestRecord(
                    image=f"img/{k}_{j}.png",
                    label=label,
                    patient_id=f"P{k:02d}",
                    split="test",
                    nodule_diameter_mm=6.0 if label else None,
                    attributes={"site": "A" if k < n_patients // 2 else "B"},
                )
            )
            y.append(label)
            p.append(float(np.clip(effect + rng.normal(0, 0.005), 0, 1)))
            pid.append(f"P{k:02d}")
    return records, np.array(y), np.array(p), np.array(pid)


def _width(ci: dict) -> float:
    return ci["upper"] - ci["lower"]


def test_subgroup_ci_is_the_patient_level_interval() -> None:
    records, y, p, pid = _clustered()
    rows = subgroup_results(records, y, p, pid, 0.5, n_resamples=400, seed=3)
    size = next(r for r in rows if r["group"] == "nodule size")
    site = next(r for r in rows if r["group"] == "site" and r["name"] == "A")
    for row in (size, site):
        idx = (
            np.arange(y.size)
            if row is size
            else np.flatnonzero([r.attributes["site"] == "A" for r in records])
        )
        patient = bootstrap_ci(y[idx], p[idx], patient_ids=pid[idx], n_resamples=400, seed=3)
        image = bootstrap_ci(y[idx], p[idx], n_resamples=400, seed=3)
        # the data make the two kinds of resampling clearly different...
        assert _width(patient.to_dict()) > 3 * _width(image.to_dict())
        # ...and the subgroup row carries exactly the patient-level interval
        assert row["auroc"] == patient.to_dict()
        assert row["auroc"]["n_resamples"] == 400
        assert row["n_patients"] == np.unique(pid[idx]).size
    assert size["n_patients"] == 12  # 6 positive patients against all 6 negative ones


def test_subgroup_ci_follows_seed_and_n_resamples() -> None:
    records, y, p, pid = _clustered(seed=1)
    a = subgroup_results(records, y, p, pid, None, n_resamples=200, seed=0)
    b = subgroup_results(records, y, p, pid, None, n_resamples=200, seed=0)
    c = subgroup_results(records, y, p, pid, None, n_resamples=200, seed=9)
    d = subgroup_results(records, y, p, pid, None, n_resamples=50, seed=0)
    assert a == b
    assert [r["auroc"] for r in a] != [r["auroc"] for r in c]
    assert all(r["auroc"]["n_resamples"] == 50 for r in d if "auroc" in r)


def test_index_replicates_equal_weight_replicates_and_keep_multiclass_strata() -> None:
    """resample_indices draws the very replicates of resample_weights (binary), and for
    multi-class data keeps each class's patient count (stratified by patient label)."""
    from medtl.evaluation.bootstrap import resample_indices, resample_weights

    rng = np.random.default_rng(4)
    pid = np.repeat(np.arange(30), rng.integers(1, 4, 30))
    y = (pid % 3 == 0).astype(int)
    weights = np.concatenate(list(resample_weights(y, patient_ids=pid, n_resamples=20, seed=2)))
    for w, idx in zip(
        weights, resample_indices(y, patient_ids=pid, n_resamples=20, seed=2), strict=True
    ):
        assert np.array_equal(np.bincount(idx, minlength=y.size), w)
    labels = pid % 3  # three classes, one label per patient
    first_image = np.unique(pid, return_index=True)[1]  # one image stands for its patient
    for idx in resample_indices(labels, patient_ids=pid, n_resamples=10, seed=0):
        copies = np.bincount(idx, minlength=y.size)[first_image]  # draws of each patient
        per_class = np.bincount(labels[first_image], weights=copies)
        assert per_class.tolist() == [10, 10, 10]


def test_confidence_interval_artifact_matches_bootstrap_ci() -> None:
    from medtl.artifacts import ConfidenceInterval

    _, y, p, pid = _clustered(n_patients=6, per_patient=3)
    ci = bootstrap_ci(y, p, patient_ids=pid, n_resamples=30)
    assert set(ConfidenceInterval.model_fields) == set(ci.to_dict())
    assert ConfidenceInterval.model_validate(ci.to_dict()).lower == ci.lower
