"""No transfer verdict from too few test patients (the bootstrap cannot see the variance)."""

from __future__ import annotations

import numpy as np

from medtl.evaluation.compare import multiclass_difference
from medtl.evaluation.transfer_analysis import NOT_ASSESSABLE, transfer_verdict


def test_one_patient_gives_no_verdict() -> None:
    y = np.array([0, 1, 0, 1, 0, 1])
    good = np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.7])
    bad = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.3])
    v = transfer_verdict(y, bad, good, patient_ids=np.zeros(6, int), n_resamples=50)
    assert v.verdict == NOT_ASSESSABLE and not v.is_negative
    rng = np.random.default_rng(0)
    yy = np.tile([0, 1], 40)
    scratch = yy + rng.normal(0, 0.6, yy.size)  # informative
    transfer = rng.normal(0, 1, yy.size)  # chance
    many = transfer_verdict(yy, transfer, scratch, patient_ids=np.arange(80), n_resamples=300)
    assert many.verdict == "negative transfer"


def test_multiclass_small_sample_not_assessable() -> None:
    labels = np.array([0, 1, 2, 0, 1, 2])
    probs = np.eye(3)[labels] * 0.8 + 0.2 / 3
    out = multiclass_difference(labels, probs, probs[::-1], np.zeros(6, int), n_resamples=20)
    assert out["verdict"] == NOT_ASSESSABLE
