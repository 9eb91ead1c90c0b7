"""Transfer vs scratch: learning curves, sample efficiency and the negative-transfer verdict.

Pure functions on results (no training, no files), used by reports and the CLI.

- :class:`LearningCurvePoint` is one fine-tuning run: a strategy (``"scratch"`` is the
  baseline; anything else is a transfer strategy such as ``"full"`` or ``"frozen_base"``),
  the fraction of training labels used, the seed and the test metrics.
- :func:`sample_efficiency_table` summarises runs per strategy and fraction (mean and a
  t-interval over seeds) and writes sentences such as "transfer (full) with 10% of labels
  reaches 94.4% of the AUROC of scratch with 100% of labels".
- :func:`transfer_verdict` compares transfer and scratch on the same test set: delta AUROC,
  DeLong p-value, paired patient-level bootstrap CI of the difference, and a verdict in
  {"positive transfer", "no significant difference", "negative transfer"}.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import t as student_t

from medtl.evaluation.bootstrap import bootstrap_difference
from medtl.evaluation.delong import delong_test
from medtl.evaluation.metrics import check_binary

__all__ = [
    "NEGATIVE_TRANSFER",
    "NO_DIFFERENCE",
    "POSITIVE_TRANSFER",
    "LearningCurvePoint",
    "SampleEfficiency",
    "TransferVerdict",
    "mean_ci",
    "sample_efficiency_table",
    "spread",
    "transfer_verdict",
]

POSITIVE_TRANSFER = "positive transfer"
NO_DIFFERENCE = "no significant difference"
NEGATIVE_TRANSFER = "negative transfer"
NOT_ASSESSABLE = "not assessable"
#: Fewer test patients than this and no verdict is given: the patient bootstrap cannot
#: estimate the variance (with one patient every replicate is the same data).
MIN_PATIENTS_FOR_VERDICT = 10


@dataclass(frozen=True)
class LearningCurvePoint:
    """Test result of one run trained on a fraction of the training labels.

    Attributes:
        strategy: ``"scratch"`` for the baseline, otherwise the transfer strategy name.
        fraction: fraction of training labels used, in (0, 1].
        seed: random seed of the run (subset draw and initialisation).
        auroc: test AUROC.
        auprc: test AUPRC, if measured.
        n_train: number of training images used, if known.
        extra: any further metrics (name -> value).
    """

    strategy: str
    fraction: float
    seed: int
    auroc: float
    auprc: float | None = None
    n_train: int | None = None
    extra: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"fraction must lie in (0, 1], got {self.fraction}")

    def value(self, metric: str) -> float:
        """The named metric (``auroc``, ``auprc`` or a key of ``extra``); NaN if absent."""
        if metric in ("auroc", "auprc"):
            v = getattr(self, metric)
            return math.nan if v is None else float(v)
        return float(self.extra.get(metric, math.nan))


def mean_ci(values: ArrayLike, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval of the mean (over seeds).

    Args:
        values: one value per seed; NaNs are ignored.
        confidence: two-sided level.

    Returns:
        ``(mean, lower, upper)``; the bounds are NaN with fewer than two values.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (math.nan, math.nan, math.nan)
    m = float(v.mean())
    if v.size < 2:
        return (m, math.nan, math.nan)
    half = float(
        student_t.ppf(0.5 + confidence / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    )
    return (m, m - half, m + half)


def spread(values: ArrayLike) -> tuple[float, float, float]:
    """Sample SD (NaN with fewer than two values), minimum and maximum over seeds.

    Args:
        values: one value per seed; NaNs are ignored.

    Returns:
        ``(sd, min, max)``.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (math.nan, math.nan, math.nan)
    sd = float(v.std(ddof=1)) if v.size > 1 else math.nan
    return (sd, float(v.min()), float(v.max()))


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.4g}%"


@dataclass(frozen=True)
class SampleEfficiency:
    """Learning-curve summary.

    Attributes:
        metric: the metric summarised (e.g. ``"auroc"``).
        rows: one dict per (transfer strategy, fraction) with ``strategy``, ``fraction``,
            ``n_seeds``, ``transfer_mean``, ``transfer_ci_low``, ``transfer_ci_high``,
            ``scratch_n_seeds``, ``scratch_mean``, ``scratch_ci_low``, ``scratch_ci_high``,
            ``delta`` (transfer - scratch at the same fraction), ``relative_to_full_scratch``
            (transfer mean / scratch mean at the largest scratch fraction), and the spread
            over seeds: ``transfer_sd``, ``transfer_min``, ``transfer_max``, ``scratch_sd``,
            ``scratch_min``, ``scratch_max``.
        curves: ``strategy -> [(fraction, mean, lower, upper), ...]`` sorted by fraction, for
            every strategy including scratch (what the learning-curve plot draws).
        sentences: plain-language findings for a report.
    """

    metric: str
    rows: list[dict[str, Any]]
    curves: dict[str, list[tuple[float, float, float, float]]]
    sentences: list[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; curves become lists of ``{fraction, mean, lower, upper}``."""
        return {
            "metric": self.metric,
            "rows": [dict(r) for r in self.rows],
            "curves": {
                s: [dict(zip(("fraction", "mean", "lower", "upper"), c, strict=True)) for c in cv]
                for s, cv in self.curves.items()
            },
            "sentences": list(self.sentences),
        }


def sample_efficiency_table(
    points: Iterable[LearningCurvePoint],
    *,
    metric: str = "auroc",
    scratch_strategy: str = "scratch",
    confidence: float = 0.95,
) -> SampleEfficiency:
    """Per-fraction mean and CI of transfer and scratch, and sample-efficiency sentences.

    Args:
        points: learning-curve runs (several seeds per strategy and fraction).
        metric: which metric to summarise.
        scratch_strategy: name of the baseline strategy.
        confidence: level of the t-intervals over seeds.

    Returns:
        A :class:`SampleEfficiency`.
    """
    groups: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for p in points:
        groups[p.strategy][float(p.fraction)].append(p.value(metric))
    if not groups:
        raise ValueError("no learning-curve points")
    curves = {
        s: [(f, *mean_ci(vals, confidence)) for f, vals in sorted(by_f.items())]
        for s, by_f in sorted(groups.items())
    }
    scratch = {
        f: (m, lo, hi, len(groups[scratch_strategy][f]))
        for f, m, lo, hi in curves.get(scratch_strategy, [])
    }
    full_f = max(scratch) if scratch else math.nan
    full_mean = scratch[full_f][0] if scratch else math.nan
    nan4 = (math.nan, math.nan, math.nan, 0)
    rows: list[dict[str, Any]] = []
    sentences: list[str] = []
    name = metric.upper() if metric in ("auroc", "auprc") else metric
    for strategy, curve in curves.items():
        if strategy == scratch_strategy:
            continue
        for f, m, lo, hi in curve:
            sm, slo, shi, sn = scratch.get(f, nan4)
            rel = m / full_mean if full_mean and not math.isnan(full_mean) else math.nan
            t_sd, t_min, t_max = spread(groups[strategy][f])
            s_sd, s_min, s_max = spread(groups[scratch_strategy].get(f, []))
            rows.append(
                {
                    "strategy": strategy,
                    "fraction": f,
                    "n_seeds": len(groups[strategy][f]),
                    "transfer_mean": m,
                    "transfer_ci_low": lo,
                    "transfer_ci_high": hi,
                    "scratch_n_seeds": sn,
                    "scratch_mean": sm,
                    "scratch_ci_low": slo,
                    "scratch_ci_high": shi,
                    "delta": m - sm,
                    "relative_to_full_scratch": rel,
                    "transfer_sd": t_sd,
                    "transfer_min": t_min,
                    "transfer_max": t_max,
                    "scratch_sd": s_sd,
                    "scratch_min": s_min,
                    "scratch_max": s_max,
                }
            )
            if not math.isnan(rel) and f < full_f:
                sentences.append(
                    f"Transfer ({strategy}) with {_pct(f)} of labels reaches {100 * rel:.1f}% of "
                    f"the {name} of scratch with {_pct(full_f)} of labels "
                    f"({m:.3f} vs {full_mean:.3f})."
                )
        if scratch:
            matching = [f for f, m, _lo, _hi in curve if m >= full_mean]
            if matching:
                sentences.append(
                    f"Transfer ({strategy}) matches or exceeds scratch with {_pct(full_f)} of "
                    f"labels from {_pct(min(matching))} of labels."
                )
            else:
                sentences.append(
                    f"Transfer ({strategy}) does not reach the {name} of scratch with "
                    f"{_pct(full_f)} of labels at any fraction tried."
                )
    return SampleEfficiency(metric=metric, rows=rows, curves=curves, sentences=sentences)


@dataclass(frozen=True)
class TransferVerdict:
    """Transfer vs scratch on the same test cases.

    Attributes:
        auroc_transfer: AUROC of the transfer model.
        auroc_scratch: AUROC of the scratch model.
        delta_auroc: ``auroc_transfer - auroc_scratch``.
        delong_p_value: two-sided DeLong p-value (assumes independent images).
        ci_low: lower bound of the paired patient-level bootstrap CI of the delta.
        ci_high: upper bound of that CI.
        confidence: level of the CI (``1 - alpha``).
        alpha: significance level.
        verdict: ``"positive transfer"``, ``"no significant difference"`` or
            ``"negative transfer"`` (transfer significantly worse).
        decided_by: ``"delong"`` (one image per patient) or ``"patient bootstrap"`` (several
            images per patient, where DeLong's independence assumption fails).
        n_images: test images.
        n_patients: test patients.
    """

    auroc_transfer: float
    auroc_scratch: float
    delta_auroc: float
    delong_p_value: float
    ci_low: float
    ci_high: float
    confidence: float
    alpha: float
    verdict: str
    decided_by: str
    n_images: int
    n_patients: int

    @property
    def is_negative(self) -> bool:
        """True when transfer is significantly worse than scratch."""
        return self.verdict == NEGATIVE_TRANSFER

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    def sentence(self) -> str:
        """One-line summary for a report or the CLI."""
        pct = round(100 * self.confidence)
        return (
            f"{self.verdict.capitalize()}: AUROC {self.auroc_transfer:.3f} (transfer) vs "
            f"{self.auroc_scratch:.3f} (scratch), difference {self.delta_auroc:+.3f} "
            f"({pct}% CI {self.ci_low:+.3f} to {self.ci_high:+.3f}), DeLong p = "
            f"{self.delong_p_value:.3g}; decided by {self.decided_by} at alpha {self.alpha:g}."
        )


def transfer_verdict(
    y: ArrayLike,
    p_transfer: ArrayLike,
    p_scratch: ArrayLike,
    patient_ids: ArrayLike | None = None,
    alpha: float = 0.05,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
) -> TransferVerdict:
    """Is transfer better, worse, or not distinguishable from scratch on this test set?

    Decision rule: with one image per patient (or no ``patient_ids``), the difference is
    significant when DeLong's p < ``alpha``. With several images per patient, DeLong's
    variance is too small (images of a patient are correlated), so significance is decided
    by the paired patient-level bootstrap: the ``1 - alpha`` CI of the difference excludes 0.
    Both numbers are always reported.

    Args:
        y: 0/1 test labels per image.
        p_transfer: transfer-model scores per image.
        p_scratch: scratch-model scores per image (same images, same order).
        patient_ids: patient per image, or ``None``.
        alpha: significance level.
        n_resamples: bootstrap replicates.
        seed: bootstrap seed.

    Returns:
        A :class:`TransferVerdict`; ``medtl evaluate --fail-on-negative-transfer`` fails when
        ``verdict.is_negative``.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must lie in (0, 1)")
    yy, st = check_binary(y, p_transfer)
    _, ss = check_binary(y, p_scratch)
    dl = delong_test(yy, st, ss)
    boot = bootstrap_difference(
        yy,
        st,
        ss,
        patient_ids=patient_ids,
        n_resamples=n_resamples,
        confidence=1 - alpha,
        seed=seed,
    )
    n_patients = yy.size if patient_ids is None else int(np.unique(np.asarray(patient_ids)).size)
    clustered = n_patients < yy.size
    if clustered:
        significant = boot.lower > 0 or boot.upper < 0
        decided_by = "patient bootstrap"
    else:
        significant = dl.p_value < alpha
        decided_by = "delong"
    if n_patients < MIN_PATIENTS_FOR_VERDICT:
        verdict = NOT_ASSESSABLE
        decided_by = f"fewer than {MIN_PATIENTS_FOR_VERDICT} test patients"
    elif not significant or dl.delta == 0:
        verdict = NO_DIFFERENCE
    else:
        verdict = POSITIVE_TRANSFER if dl.delta > 0 else NEGATIVE_TRANSFER
    return TransferVerdict(
        auroc_transfer=dl.auc_a,
        auroc_scratch=dl.auc_b,
        delta_auroc=dl.delta,
        delong_p_value=dl.p_value,
        ci_low=boot.lower,
        ci_high=boot.upper,
        confidence=1 - alpha,
        alpha=alpha,
        verdict=verdict,
        decided_by=decided_by,
        n_images=int(yy.size),
        n_patients=n_patients,
    )
