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
