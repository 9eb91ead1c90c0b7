"""Calibration splits large enough to fit a calibrator: >= 15 % of the non-test patients."""

from __future__ import annotations

from collections import Counter

import pytest

from medtl.data.cxr import SIZES, SPLIT_FRACTIONS
from medtl.data.manifest import Manifest, ManifestRecord
from medtl.data.splits import (
    MIN_CALIBRATION_SHARE,
    assign_splits,
    check_splits,
    with_calibration_share,
)


@pytest.mark.parametrize("size", ["demo", "full"])
def test_cxr_demo_builder_gives_calibration_15_percent_of_non_test_patients(size) -> None:
    """The CXR builder's fractions on its own patient structure (twin pairs per patient)."""
    spec = SIZES[size]
    per_patient = 2 * spec.pairs_per_patient
    pids = [f"cxr-{i:03d}" for i in range(spec.patients) for _ in range(per_patient)]
    labels = [j % 2 for _ in range(spec.patients) for j in range(per_patient)]
    splits = assign_splits(pids, labels, SPLIT_FRACTIONS, seed=0)
    patients = Counter(s for _, s in dict(zip(pids, splits, strict=True)).items())
    non_test = spec.patients - patients["test"]
    assert patients["calibration"] >= MIN_CALIBRATION_SHARE * non_test
    assert patients["test"] >= 10  # the transfer verdict needs them
    records = [
        ManifestRecord(image=f"{p}_{k}.dcm", label=y, patient_id=p, split=s)
        for k, (p, y, s) in enumerate(zip(pids, labels, splits, strict=True))
    ]
    report = check_splits(Manifest(name="cxr", records=records))
    assert report.calibration_share is not None
    assert report.calibration_share >= MIN_CALIBRATION_SHARE


def test_with_calibration_share_takes_from_train_only() -> None:
    old = {"train": 0.7, "val": 0.1, "calibration": 0.05, "test": 0.15}
    new = with_calibration_share(old)
    assert new["calibration"] == pytest.approx(0.15 * 0.85)
    assert (new["val"], new["test"]) == (0.1, 0.15)
    assert sum(new.values()) == pytest.approx(1.0)
    # already large enough: unchanged (normalised)
    assert with_calibration_share({"train": 6, "val": 1, "calibration": 2, "test": 1}) == {
        "train": 0.6,
        "val": 0.1,
        "calibration": 0.2,
        "test": 0.1,
    }
    with pytest.raises(ValueError):
        with_calibration_share({"train": 0.01, "val": 0.5, "test": 0.49}, share=0.5)
