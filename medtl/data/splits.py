"""Patient-grouped, label-stratified split assignment and split checks.

Every sample of one patient lands in the same split (no patient leaks between training and
testing) while each split keeps roughly the dataset's label proportions. The algorithm is a
deterministic greedy one (in the spirit of scikit-learn's ``StratifiedGroupKFold``, which
only produces equal folds, not named splits with arbitrary fractions): patients are visited
largest first (ties broken by a seeded shuffle) and each goes to the split whose label counts
fall furthest short of their targets.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from medtl.data.manifest import SPLITS, Manifest

DEFAULT_FRACTIONS: dict[str, float] = {
    "train": 0.6,
    "val": 0.1,
    "calibration": 0.1,
    "test": 0.2,
}

#: The calibration split should hold at least this share of the non-test patients: a
#: calibrator fitted on a handful of patients follows their noise (and the ECE measured after
#: it cannot be told from the ECE before). :func:`with_calibration_share` enforces it.
MIN_CALIBRATION_SHARE = 0.15


def with_calibration_share(
    fractions: Mapping[str, float], share: float = MIN_CALIBRATION_SHARE
) -> dict[str, float]:
    """Split fractions whose calibration split holds at least ``share`` of the non-test data.

    The calibration split is drawn like the others (patient-grouped, label-stratified, from
    the same pool of patients as test), so only its size needs care. What it lacks is taken
    from ``train``.

    Args:
        fractions: ``{split: fraction}`` (normalised to sum 1).
        share: minimum calibration share of the non-test fractions, in [0, 1).

    Returns:
        Normalised fractions with ``calibration >= share * (1 - test)``.

    Example:
        >>> with_calibration_share({"train": 0.7, "val": 0.1, "calibration": 0.05, "test": 0.15})
        {'train': 0.6225, 'val': 0.1, 'calibration': 0.1275, 'test': 0.15}
    """
    if not 0.0 <= share < 1.0:
        raise ValueError(f"share must lie in [0, 1), got {share}")
    fr = _normalise(fractions)
    need = share * (1.0 - fr.get("test", 0.0)) - fr.get("calibration", 0.0)
    if need <= 0:
        return fr
    if fr.get("train", 0.0) - need <= 0:
        raise ValueError(f"no training data left after a calibration share of {share}")
    fr["train"] -= need
    fr["calibration"] = fr.get("calibration", 0.0) + need
    return {k: round(fr[k], 10) for k in SPLITS if k in fr}


class SplitLeakError(ValueError):
    """A patient appears in more than one split."""


def _normalise(fractions: Mapping[str, float]) -> dict[str, float]:
    unknown = set(fractions) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split names {sorted(unknown)}; use {list(SPLITS)}")
    if any(v < 0 for v in fractions.values()):
        raise ValueError(f"split fractions must be >= 0: {dict(fractions)}")
    total = float(sum(fractions.values()))
    if total <= 0:
        raise ValueError("split fractions sum to 0")
    return {k: float(fractions[k]) / total for k in SPLITS if fractions.get(k, 0) > 0}


def assign_splits(
    patient_ids: Sequence[str],
    labels: Sequence[int],
    fractions: Mapping[str, float] | None = None,
    seed: int = 0,
) -> list[str]:
    """Assign a split to every sample, grouped by patient and stratified by label.

    Args:
        patient_ids: patient of each sample.
        labels: label of each sample (same length).
        fractions: ``{split: fraction}`` (normalised to sum 1); default
            :data:`DEFAULT_FRACTIONS`.
        seed: tie-breaking seed; the result is a pure function of the inputs and seed.

    Returns:
        The split name of each sample, in input order.

    Example:
        >>> assign_splits(["a", "a", "b", "c", "d", "e"], [0, 1, 0, 1, 0, 1],
        ...               {"train": 0.5, "test": 0.5})  # doctest: +SKIP
    """
    if len(patient_ids) != len(labels):
        raise ValueError("patient_ids and labels differ in length")
    fr = _normalise(fractions or DEFAULT_FRACTIONS)
    names = list(fr)
    classes = sorted(set(int(v) for v in labels))
    col = {c: i for i, c in enumerate(classes)}
    per_patient: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(classes)))
    for pid, lab in zip(patient_ids, labels, strict=True):
        per_patient[pid][col[int(lab)]] += 1
    patients = sorted(per_patient)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(patients))
    # largest patients first; the seeded permutation breaks ties
    visit = sorted(order, key=lambda i: -per_patient[patients[i]].sum())
    totals = np.sum([per_patient[p] for p in patients], axis=0)
    target = np.array([fr[n] for n in names])[:, None] * totals[None, :]
    current = np.zeros_like(target)
    n_patients = np.zeros(len(names), dtype=int)
    n_left = len(patients)
    chosen: dict[str, str] = {}
    for idx in visit:
        pid = patients[idx]
        counts = per_patient[pid]
        # guarantee every requested split gets a patient while enough patients remain
        empty = [i for i in range(len(names)) if n_patients[i] == 0]
        candidates = empty if empty and n_left <= len(empty) else list(range(len(names)))
        best, best_cost = candidates[0], np.inf
        for s in candidates:
            trial = current.copy()
            trial[s] += counts
            # relative shortfall/excess against targets, per split and class
            cost = float(np.sum((trial - target) ** 2 / np.maximum(target, 1.0)))
            if cost < best_cost - 1e-12:
                best, best_cost = s, cost
        current[best] += counts
        n_patients[best] += 1
        n_left -= 1
        chosen[pid] = names[best]
    return [chosen[p] for p in patient_ids]


def apply_splits(
    manifest: Manifest, fractions: Mapping[str, float] | None = None, seed: int = 0
) -> Manifest:
    """Return a copy of ``manifest`` with splits re-assigned by :func:`assign_splits`."""
    splits = assign_splits(
        [r.patient_id for r in manifest.records], [r.label for r in manifest.records],
        fractions, seed,
    )  # fmt: skip
    records = [
        r.model_copy(update={"split": s}) for r, s in zip(manifest.records, splits, strict=True)
    ]
    return manifest.model_copy(update={"records": records})


@dataclass
class SplitReport:
    """What :func:`check_splits` found.

    Attributes:
        leaks: ``{patient_id: [splits]}`` for patients in more than one split.
        counts: ``{split: {label: n}}``.
        patients: ``{split: number of patients}``.
        missing_classes: ``{split: [labels absent from that split]}``.
    """

    leaks: dict[str, list[str]] = field(default_factory=dict)
    counts: dict[str, dict[int, int]] = field(default_factory=dict)
    patients: dict[str, int] = field(default_factory=dict)
    missing_classes: dict[str, list[int]] = field(default_factory=dict)

    @property
    def calibration_share(self) -> float | None:
        """Calibration patients over non-test patients (``None`` without a calibration
        split); compare with :data:`MIN_CALIBRATION_SHARE`."""
        if not self.patients.get("calibration"):
            return None
        non_test = sum(n for s, n in self.patients.items() if s != "test")
        return self.patients["calibration"] / non_test if non_test else None

    @property
    def ok(self) -> bool:
        """True when no patient is in two splits."""
        return not self.leaks

    def problems(self) -> list[str]:
        """One line per problem (leaks first, then splits lacking a class)."""
        lines = [
            f"patient {pid} is in several splits: {', '.join(s)}" for pid, s in self.leaks.items()
        ]
        lines += [
            f"split {s} has no sample of label(s) {miss}"
            for s, miss in self.missing_classes.items()
        ]
        return lines


def check_splits(manifest: Manifest, *, raise_on_leak: bool = True) -> SplitReport:
    """Check a manifest's splits.

    Args:
        manifest: the dataset.
        raise_on_leak: raise :class:`SplitLeakError` when a patient is in two splits.

    Returns:
        The :class:`SplitReport`.

    Raises:
        SplitLeakError: listing (up to 10 of) the leaking patients.
    """
    seen: dict[str, set[str]] = defaultdict(set)
    for r in manifest.records:
        seen[r.patient_id].add(r.split)
    leaks = {p: sorted(s, key=SPLITS.index) for p, s in sorted(seen.items()) if len(s) > 1}
    counts = manifest.class_counts()
    all_labels = sorted({r.label for r in manifest.records})
    missing = {s: [c for c in all_labels if c not in counts[s]] for s in counts}
    report = SplitReport(
        leaks=leaks,
        counts=counts,
        patients={s: len(manifest.patients(s)) for s in counts},
        missing_classes={s: m for s, m in missing.items() if m},
    )
    if leaks and raise_on_leak:
        shown = list(leaks.items())[:10]
        detail = "; ".join(f"{p}: {', '.join(s)}" for p, s in shown)
        raise SplitLeakError(
            f"{len(leaks)} patient(s) appear in more than one split ({detail}). Samples of one "
            "patient must share a split; re-assign with medtl.data.splits.apply_splits."
        )
    return report


def split_summary(manifest: Manifest) -> dict[str, Counter[int]]:
    """Return ``{split: Counter(label)}`` (convenience for reports)."""
    out: dict[str, Counter[int]] = {}
    for r in manifest.records:
        out.setdefault(r.split, Counter())[r.label] += 1
    return out


__all__ = [
    "DEFAULT_FRACTIONS",
    "MIN_CALIBRATION_SHARE",
    "SplitLeakError",
    "SplitReport",
    "apply_splits",
    "assign_splits",
    "check_splits",
    "split_summary",
    "with_calibration_share",
]
