"""Patient-grouped, label-stratified splits and split checks."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from medtl.data.manifest import Manifest, ManifestRecord
from medtl.data.splits import (
    SplitLeakError,
    apply_splits,
    assign_splits,
    check_splits,
)


def _data(n_patients: int = 120, seed: int = 3) -> tuple[list[str], list[int]]:
    rng = np.random.default_rng(seed)
    pids, labels = [], []
    for p in range(n_patients):
        for _ in range(int(rng.integers(1, 5))):
            pids.append(f"P{p:03d}")
            labels.append(int(rng.random() < 0.3))
    return pids, labels


def test_patients_never_span_splits_and_fractions_hold() -> None:
    pids, labels = _data()
    splits = assign_splits(pids, labels, seed=0)
    by_patient = defaultdict(set)
    for p, s in zip(pids, splits, strict=True):
        by_patient[p].add(s)
    assert all(len(s) == 1 for s in by_patient.values())
    share = Counter(splits)
    n = len(pids)
    assert share["train"] / n == pytest.approx(0.6, abs=0.05)
    assert share["test"] / n == pytest.approx(0.2, abs=0.05)
    assert share["val"] / n == pytest.approx(0.1, abs=0.04)
    assert share["calibration"] / n == pytest.approx(0.1, abs=0.04)
    # stratified: every split's positive rate is near the overall rate
    overall = sum(labels) / n
    for split in ("train", "val", "calibration", "test"):
        lab = [y for y, s in zip(labels, splits, strict=True) if s == split]
        assert sum(lab) / len(lab) == pytest.approx(overall, abs=0.06)


def test_deterministic_for_a_seed() -> None:
    pids, labels = _data()
    assert assign_splits(pids, labels, seed=5) == assign_splits(pids, labels, seed=5)
    assert assign_splits(pids, labels, seed=5) != assign_splits(pids, labels, seed=6)


def test_few_patients_still_fill_every_split() -> None:
    assert sorted(assign_splits(["a", "b", "c", "d"], [0, 1, 0, 1])) == [
        "calibration", "test", "train", "val",
    ]  # fmt: skip


def test_custom_fractions_and_bad_fractions() -> None:
    pids, labels = _data(60)
    splits = assign_splits(pids, labels, {"train": 0.5, "test": 0.5})
    assert set(splits) == {"train", "test"}
    with pytest.raises(ValueError, match="unknown split"):
        assign_splits(pids, labels, {"training": 1.0})
    with pytest.raises(ValueError, match="length"):
        assign_splits(pids, labels[:-1])


def _manifest(rows: list[tuple[str, int, str]]) -> Manifest:
    return Manifest(
        name="t",
        label_names=["neg", "pos"],
        records=[
            ManifestRecord(image=f"{i}.png", label=lab, patient_id=p, split=s)  # type: ignore[arg-type]
            for i, (p, lab, s) in enumerate(rows)
        ],
    )


def test_check_splits_raises_on_a_leak_and_reports_missing_classes() -> None:
    leaky = _manifest([("A", 0, "train"), ("A", 1, "test"), ("B", 1, "train"), ("C", 0, "val")])
    with pytest.raises(SplitLeakError, match="A: train, test"):
        check_splits(leaky)
    report = check_splits(leaky, raise_on_leak=False)
    assert report.leaks == {"A": ["train", "test"]}
    assert not report.ok
    assert report.missing_classes == {"test": [0], "val": [1]}
    assert report.patients == {"train": 2, "val": 1, "test": 1}
    assert report.problems()[0].startswith("patient A is in several splits")


def test_apply_splits_fixes_a_leak() -> None:
    leaky = _manifest([("A", 0, "train"), ("A", 1, "test"), ("B", 1, "train"), ("C", 0, "val")])
    fixed = apply_splits(leaky, {"train": 0.5, "test": 0.5})
    assert check_splits(fixed).ok
    assert [r.image for r in fixed.records] == [r.image for r in leaky.records]
