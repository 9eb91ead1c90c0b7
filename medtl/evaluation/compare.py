"""Transfer vs scratch on the same test set: the negative-transfer verdict for two runs
(:func:`compare_runs`) or for several training seeds per arm (:func:`compare_seed_runs`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medtl.artifacts.evaluation import Evaluation, TestScores
from medtl.evaluation.transfer_analysis import (
    MIN_PATIENTS_FOR_VERDICT,
    NEGATIVE_TRANSFER,
    NOT_ASSESSABLE,
)


def _scores(run_dir: Path) -> TestScores:
    path = run_dir / Evaluation.FILE
    if not path.is_file():
        from medtl.evaluation.run import evaluate_run

        evaluate_run(run_dir)
    return Evaluation.read(path).test_scores


def multiclass_difference(
    labels: np.ndarray,
    probs_a: np.ndarray,
    probs_b: np.ndarray,
    patient_ids: np.ndarray,
    *,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """Paired patient-level stratified bootstrap of the macro-AUROC difference A - B
    (multi-class)."""
    from medtl.evaluation.bootstrap import macro_auroc_replicates, summarise_replicates
    from medtl.evaluation.metrics import macro_auroc

    patients = np.unique(patient_ids)
    # both arms on the same replicates (same data and seed): a paired difference
    reps = macro_auroc_replicates(
        labels, probs_a, patient_ids, n_resamples, seed
    ) - macro_auroc_replicates(labels, probs_b, patient_ids, n_resamples, seed)
    a, b = macro_auroc(labels, probs_a), macro_auroc(labels, probs_b)
    ci = summarise_replicates(
        a - b, reps, confidence=1 - alpha, n_resamples=n_resamples, name="macro AUROC difference"
    )
    lo, hi = ci.lower, ci.upper
    decided_by = "patient bootstrap (macro AUROC)"
    if patients.size < MIN_PATIENTS_FOR_VERDICT:
        verdict = NOT_ASSESSABLE
        decided_by = f"fewer than {MIN_PATIENTS_FOR_VERDICT} test patients"
    elif lo > 0:
        verdict = "positive transfer"
    elif hi < 0:
        verdict = NEGATIVE_TRANSFER
    else:
        verdict = "no significant difference"
    return {
        "auroc_transfer": a,
        "auroc_scratch": b,
        "delta_auroc": a - b,
        "delong_p_value": None,
        "ci_low": float(lo),
        "ci_high": float(hi),
        "confidence": 1 - alpha,
        "alpha": alpha,
        "verdict": verdict,
        "decided_by": decided_by,
        "n_images": int(labels.size),
        "n_patients": int(patients.size),
        "sentence": (
            f"{verdict.capitalize()}: macro AUROC {a:.3f} (transfer) vs {b:.3f} (scratch), "
            f"difference {a - b:+.3f} ({round(100 * (1 - alpha))}% CI {lo:+.3f} to {hi:+.3f}); "
            f"decided by {decided_by}."
        ),
    }


def compare_runs(
    transfer_run: str | Path,
    scratch_run: str | Path,
    *,
    alpha: float = 0.05,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare two evaluated runs on their common test images.

    Returns:
        The verdict as a dict (see :class:`~medtl.evaluation.transfer_analysis.TransferVerdict`)
        with a ``sentence``; ``verdict == "negative transfer"`` flags negative transfer.

    Raises:
        ValueError: the runs do not share test images.
    """
    a = _scores(Path(transfer_run))
    b = _scores(Path(scratch_run))
    pos_b = {int(i): k for k, i in enumerate(b.index)}
    common = [(k, pos_b[int(i)]) for k, i in enumerate(a.index) if int(i) in pos_b]
    if not common:
        raise ValueError("the two runs share no test images; compare runs of one dataset")
    ka, kb = (np.array(x) for x in zip(*common, strict=True))
    labels = np.asarray(a.label)[ka]
    pid = np.asarray(a.patient_id)[ka]
    pa, pb = np.asarray(a.prob)[ka], np.asarray(b.prob)[kb]
    if pa.ndim == 1:
        from medtl.evaluation.transfer_analysis import transfer_verdict

        verdict = transfer_verdict(
            labels, pa, pb, patient_ids=pid, alpha=alpha, n_resamples=n_resamples, seed=seed
        )
        out = verdict.to_dict()
        out["sentence"] = verdict.sentence()
        return out
    return multiclass_difference(
        labels, pa, pb, pid, n_resamples=n_resamples, alpha=alpha, seed=seed
    )


#: Methods text of a verdict from one training seed per arm.
SINGLE_SEED_METHOD = (
    "One training seed per arm: the verdict compares these two trained models on the same "
    "test images, by the paired patient-level stratified bootstrap of the AUROC difference "
    "(DeLong's test when every patient has one image). It does not include training-seed "
    "variance: another seed of either arm may give another difference."
)


def compare_seed_runs(
    transfer_runs: Sequence[str | Path],
    scratch_runs: Sequence[str | Path],
    *,
    seeds_transfer: Sequence[int] | None = None,
    seeds_scratch: Sequence[int] | None = None,
    alpha: float = 0.05,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Transfer vs scratch over training seeds (the learning curves' verdict).

    With one run per arm this is :func:`compare_runs` (plus the seed fields); with more, the
    seed-and-patient bootstrap of :func:`medtl.evaluation.seed_verdict.seed_patient_verdict`
    on the test images common to every run.

    Args:
        transfer_runs: evaluated run folders of the transfer arm, one per training seed.
        scratch_runs: the same for scratch.
        seeds_transfer: the training seeds of ``transfer_runs`` (for the record).
        seeds_scratch: the training seeds of ``scratch_runs``.
        alpha: significance level.
        n_resamples: bootstrap replicates.
        seed: bootstrap seed.

    Returns:
        The fields of :class:`~medtl.artifacts.Comparison`.

    Raises:
        ValueError: no run in an arm, or the runs share no test images.
    """
    from medtl.evaluation.seed_verdict import seed_patient_verdict

    if not transfer_runs or not scratch_runs:
        raise ValueError("each arm needs at least one run")
    st = list(seeds_transfer) if seeds_transfer is not None else list(range(len(transfer_runs)))
    ss = list(seeds_scratch) if seeds_scratch is not None else list(range(len(scratch_runs)))
    if len(transfer_runs) == 1 and len(scratch_runs) == 1:
        out = compare_runs(
            transfer_runs[0], scratch_runs[0], alpha=alpha, n_resamples=n_resamples, seed=seed
        )
        return {
            **out,
            "n_seeds_transfer": 1,
            "n_seeds_scratch": 1,
            "seeds_transfer": st,
            "seeds_scratch": ss,
            "per_seed_transfer": [out["auroc_transfer"]],
            "per_seed_scratch": [out["auroc_scratch"]],
            "method": SINGLE_SEED_METHOD,
        }
    scores = [_scores(Path(r)) for r in (*transfer_runs, *scratch_runs)]
    common = set.intersection(*({int(i) for i in s.index} for s in scores))
    if not common:
        raise ValueError("the runs share no test images; compare runs of one dataset")
    order = sorted(common)
    first = scores[0]
    pos = {int(i): k for k, i in enumerate(first.index)}
    keep = np.array([pos[i] for i in order])
    labels = np.asarray(first.label)[keep]
    pid = np.asarray(first.patient_id)[keep]
    probs = []
    for s in scores:
        where = {int(i): k for k, i in enumerate(s.index)}
        probs.append(np.asarray(s.prob, dtype=float)[[where[i] for i in order]])
    n = len(transfer_runs)
    return seed_patient_verdict(
        labels,
        probs[:n],
        probs[n:],
        pid,
        seeds_transfer=st,
        seeds_scratch=ss,
        alpha=alpha,
        n_resamples=n_resamples,
        seed=seed,
    )
