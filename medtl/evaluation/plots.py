"""Evaluation figures as PNG bytes: ROC, precision-recall, reliability and learning curves.

Figures are built on ``matplotlib.figure.Figure`` with an Agg canvas, never through pyplot,
so nothing global is touched (no ``matplotlib.use``, no pyplot state, safe in threads and
servers). Each function returns PNG bytes, which a report embeds as base64, and writes them to
``path`` as well when one is given. Fonts are sized for reading on screen and in print.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from medtl.evaluation.calibration import reliability_curve
from medtl.evaluation.metrics import check_binary
from medtl.evaluation.operating_points import OperatingPoint
from medtl.evaluation.transfer_analysis import (
    LearningCurvePoint,
    SampleEfficiency,
    sample_efficiency_table,
)

__all__ = [
    "figure_png",
    "plot_learning_curves",
    "plot_pr",
    "plot_reliability",
    "plot_roc",
]

_STYLE = {
    "font.size": 12,
    "axes.titlesize": 14,
    "axes.labelsize": 13,
    "legend.fontsize": 11,
    "xtick.labelsize": 11,
    "ytick.labelsize": 11,
}
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def _new_figure(figsize: tuple[float, float] = (6.4, 5.6)) -> Figure:
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure, path: str | Path | None = None, dpi: int = 120) -> bytes:
    """Render a figure to PNG bytes (and write them to ``path`` if given).

    Args:
        fig: a matplotlib figure.
        path: optional file to write.
        dpi: resolution.

    Returns:
        The PNG file content.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    png = buf.getvalue()
    if path is not None:
        Path(path).write_bytes(png)
    return png


def _as_scores(scores: Mapping[str, ArrayLike] | ArrayLike) -> dict[str, Any]:
    if isinstance(scores, Mapping):
        return dict(scores)
    return {"model": scores}


def _ci_text(ci: Any) -> str:
    if ci is None:
        return ""
    lo, hi = (ci.lower, ci.upper) if hasattr(ci, "lower") else ci
    if math.isnan(lo) or math.isnan(hi):
        return ""
    return f" (95% CI {lo:.3f}-{hi:.3f})"


def plot_roc(
    y_true: ArrayLike,
    scores: Mapping[str, ArrayLike] | ArrayLike,
    *,
    ci: Mapping[str, Any] | None = None,
    operating_points: Mapping[str, Iterable[OperatingPoint]] | None = None,
    title: str = "ROC curve",
    path: str | Path | None = None,
) -> bytes:
    """ROC curve(s) with AUROC (and CI) in the legend and operating points marked.

    Args:
        y_true: 0/1 labels.
        scores: one score array, or ``name -> scores`` for several models on the same cases.
        ci: ``name -> BootstrapCI`` or ``name -> (lower, upper)`` for the legend.
        operating_points: ``name -> operating points`` to mark (unreachable ones are skipped).
        title: figure title.
        path: optional PNG file to write.

    Returns:
        PNG bytes.
    """
    curves = _as_scores(scores)
    ci = ci or {}
    with matplotlib.rc_context(_STYLE):
        fig = _new_figure()
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="Chance")
        for name, s in curves.items():
            y, sc = check_binary(y_true, s)
            fpr, tpr, _ = roc_curve(y, sc)
            auc = roc_auc_score(y, sc)
            (line,) = ax.plot(
                fpr, tpr, lw=2, label=f"{name}: AUROC {auc:.3f}{_ci_text(ci.get(name))}"
            )
            for j, op in enumerate((operating_points or {}).get(name, [])):
                if op.metrics is None:
                    continue
                ax.plot(
                    1 - op.metrics.specificity,
                    op.metrics.sensitivity,
                    marker=_MARKERS[j % len(_MARKERS)],
                    ms=9,
                    color=line.get_color(),
                    mec="black",
                    ls="none",
                    label=f"{name} @ {op.goal}",
                )
        ax.set(
            xlim=(-0.01, 1.01),
            ylim=(-0.01, 1.01),
            xlabel="1 - specificity (false-positive rate)",
            ylabel="Sensitivity (true-positive rate)",
            title=title,
            aspect="equal",
        )
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", framealpha=0.9)
        return figure_png(fig, path)


def plot_pr(
    y_true: ArrayLike,
    scores: Mapping[str, ArrayLike] | ArrayLike,
    *,
    ci: Mapping[str, Any] | None = None,
    title: str = "Precision-recall curve",
    path: str | Path | None = None,
) -> bytes:
    """Precision-recall curve(s) with average precision in the legend and prevalence marked.

    Args:
        y_true: 0/1 labels.
        scores: one score array, or ``name -> scores``.
        ci: ``name -> BootstrapCI`` or ``(lower, upper)`` of the AUPRC, for the legend.
        title: figure title.
        path: optional PNG file to write.

    Returns:
        PNG bytes.
    """
    curves = _as_scores(scores)
    ci = ci or {}
    with matplotlib.rc_context(_STYLE):
        fig = _new_figure()
        ax = fig.add_subplot()
        prevalence = float(np.mean(check_binary(y_true, next(iter(curves.values())))[0]))
        ax.axhline(prevalence, ls="--", color="grey", lw=1, label=f"Prevalence {prevalence:.3f}")
        for name, s in curves.items():
            y, sc = check_binary(y_true, s)
            precision, recall, _ = precision_recall_curve(y, sc)
            ap = average_precision_score(y, sc)
            ax.step(
                recall,
                precision,
                where="post",
                lw=2,
                label=f"{name}: AUPRC {ap:.3f}{_ci_text(ci.get(name))}",
            )
        ax.set(
            xlim=(-0.01, 1.01),
            ylim=(-0.01, 1.01),
            xlabel="Recall (sensitivity)",
            ylabel="Precision (PPV)",
            title=title,
        )
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", framealpha=0.9)
        return figure_png(fig, path)


def plot_reliability(
    labels: ArrayLike,
    before_probs: ArrayLike,
    after_probs: ArrayLike | None = None,
    *,
    n_bins: int = 15,
    title: str = "Reliability diagram",
    path: str | Path | None = None,
) -> bytes:
    """Reliability diagram before/after calibration with a bin-count histogram underneath.

    The legend gives each curve's ECE over the same equal-width bins.

    Args:
        labels: integer labels (0/1 for binary).
        before_probs: uncalibrated probabilities (``(n,)`` positive class or ``(n, k)``).
        after_probs: calibrated probabilities on the same cases, optional.
        n_bins: number of equal-width bins.
        title: figure title.
        path: optional PNG file to write.

    Returns:
        PNG bytes.
    """
    series = [("Before calibration", before_probs)]
    if after_probs is not None:
        series.append(("After calibration", after_probs))
    multiclass = np.asarray(before_probs).ndim == 2
    with matplotlib.rc_context(_STYLE):
        fig = _new_figure((6.4, 7.2))
        ax, hx = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="Perfect calibration")
        width = 1.0 / n_bins / (len(series) + 0.5)
        for i, (name, probs) in enumerate(series):
            rc = reliability_curve(probs, labels, n_bins=n_bins)
            ok = rc.counts > 0
            ece = float(np.sum(rc.counts[ok] * rc.gaps[ok]) / rc.counts.sum())
            ax.plot(
                rc.mean_predicted[ok],
                rc.fraction_positive[ok],
                marker="o",
                lw=2,
                label=f"{name} (ECE {ece:.3f})",
            )
            left = rc.edges[:-1] + (i + 0.25) * width
            hx.bar(left, rc.counts, width=width, align="edge", label=name)
        ax.set(
            xlim=(0, 1),
            ylim=(-0.01, 1.01),
            ylabel="Accuracy" if multiclass else "Observed fraction positive",
            title=title,
        )
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", framealpha=0.9)
        hx.set(
            xlabel="Confidence (top-label probability)" if multiclass else "Predicted probability",
            ylabel="Cases per bin",
        )
        hx.grid(alpha=0.3)
        return figure_png(fig, path)


def plot_learning_curves(
    results: SampleEfficiency | Iterable[LearningCurvePoint],
    *,
    metric: str = "auroc",
    scratch_strategy: str = "scratch",
    title: str = "Learning curves: transfer vs scratch",
    path: str | Path | None = None,
) -> bytes:
    """Metric vs fraction of training labels per strategy, with CI bands over seeds.

    Args:
        results: a :class:`SampleEfficiency` or the raw learning-curve points.
        metric: metric to plot when ``results`` are raw points.
        scratch_strategy: baseline name (drawn dashed).
        title: figure title.
        path: optional PNG file to write.

    Returns:
        PNG bytes.
    """
    if not isinstance(results, SampleEfficiency):
        results = sample_efficiency_table(
            list(results), metric=metric, scratch_strategy=scratch_strategy
        )
    label = results.metric.upper() if results.metric in ("auroc", "auprc") else results.metric
    with matplotlib.rc_context(_STYLE):
        fig = _new_figure((7.2, 5.2))
        ax = fig.add_subplot()
        fractions: set[float] = set()
        for strategy, curve in results.curves.items():
            f = np.array([c[0] for c in curve]) * 100
            m, lo, hi = (np.array([c[k] for c in curve]) for k in (1, 2, 3))
            fractions.update(f.tolist())
            dashed = strategy == scratch_strategy
            (line,) = ax.plot(
                f, m, marker="o", lw=2, ls="--" if dashed else "-", label=strategy.replace("_", " ")
            )
            band = np.isfinite(lo) & np.isfinite(hi)
            if results.metric in ("auroc", "auprc"):  # a t-interval of 2-3 seeds can pass 1
                lo, hi = np.clip(lo, 0.0, 1.0), np.clip(hi, 0.0, 1.0)
            if band.any():
                ax.fill_between(f[band], lo[band], hi[band], color=line.get_color(), alpha=0.2)
        ticks = sorted(fractions)
        if ticks and max(ticks) / min(ticks) >= 10:
            ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{t:g}%" for t in ticks])
        ax.minorticks_off()
        ax.set(xlabel="Training labels used", ylabel=f"Test {label} (mean, 95% CI)", title=title)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", framealpha=0.9)
        return figure_png(fig, path)
