"""Report figures not covered by :mod:`medtl.evaluation.plots`: training curves and overlays.

Like the evaluation plots, figures are drawn on ``matplotlib.figure.Figure`` with an Agg
canvas (never pyplot) and returned as PNG bytes; :func:`as_figure` wraps them for the report.
"""

from __future__ import annotations

import base64
import csv
import math
from pathlib import Path

import numpy as np

from medtl.reports.schema import Figure

__all__ = ["as_figure", "overlay_png", "plot_training_curves", "read_metrics_csv"]


def as_figure(fig_id: str, caption: str, png: bytes) -> Figure:
    """Wrap PNG bytes as a report :class:`~medtl.reports.schema.Figure` (base64)."""
    return Figure(id=fig_id, caption=caption, png_base64=base64.b64encode(png).decode("ascii"))


def read_metrics_csv(path: str | Path) -> list[dict[str, float]]:
    """Rows of a phase's ``metrics.csv`` (one per epoch) as floats; blanks become NaN."""
    rows: list[dict[str, float]] = []
    with Path(path).open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            parsed: dict[str, float] = {}
            for key, value in row.items():
                try:
                    parsed[key] = float(value) if value not in (None, "") else math.nan
                except ValueError:
                    continue
            rows.append(parsed)
    return rows


def plot_training_curves(
    phases: list[tuple[str, list[dict[str, float]]]], monitor: str | None = None
) -> bytes:
    """Loss (train, validation) and the monitored validation metric per epoch, all phases.

    Phases are drawn one after the other on a shared epoch axis, separated by dotted lines.

    Args:
        phases: ``(phase name, metrics.csv rows)`` in training order.
        monitor: validation metric to draw on the right axis (e.g. ``"auroc"``).

    Returns:
        PNG bytes.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    from medtl.evaluation.plots import _STYLE, figure_png

    with matplotlib.rc_context(_STYLE):
        fig = MplFigure(figsize=(7.2, 4.2), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax2 = ax.twinx() if monitor else None
        offset = 0
        for k, (name, rows) in enumerate(phases):
            if not rows:
                continue
            epochs = np.arange(1, len(rows) + 1) + offset
            for key, style in (("train_loss", "-"), ("val_loss", "--")):
                values = np.array([r.get(key, math.nan) for r in rows])
                if np.isfinite(values).any():
                    ax.plot(
                        epochs,
                        values,
                        ls=style,
                        marker="o",
                        ms=4,
                        color=f"C{0 if key == 'train_loss' else 1}",
                        label=key.replace("_", " ") if k == 0 else None,
                    )
            if ax2 is not None:
                values = np.array([r.get(monitor or "", math.nan) for r in rows])
                if np.isfinite(values).any():
                    ax2.plot(
                        epochs,
                        values,
                        marker="s",
                        ms=4,
                        color="C2",
                        label=f"val {monitor}" if k == 0 else None,
                    )
            if offset:
                ax.axvline(offset + 0.5, color="grey", ls=":", lw=1)
            ax.annotate(
                name,
                (offset + 1, 1.0),
                xycoords=("data", "axes fraction"),
                va="top",
                fontsize=10,
                color="dimgrey",
            )
            offset += len(rows)
        ax.set(xlabel="Epoch", ylabel="Loss", title="Training curves")
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if ax2 is not None:
            ax2.set_ylabel(f"Validation {monitor}")
            h2, l2 = ax2.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
        if handles:
            ax.legend(handles, labels, loc="center right", framealpha=0.9)
        return figure_png(fig)


def overlay_png(
    grey: np.ndarray,
    heat: np.ndarray | None,
    title: str,
    *,
    alpha: float = 0.4,
) -> bytes:
    """A windowed image with an optional heat map overlaid with transparency.

    Args:
        grey: 2D uint8 (or [0, 1] float) windowed image.
        heat: 2D heat map in [0, 1] on the same grid, or ``None`` (image only).
        title: caption drawn above the image.
        alpha: opacity of the heat map.

    Returns:
        PNG bytes.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    from medtl.evaluation.plots import figure_png

    with matplotlib.rc_context({"font.size": 10, "axes.titlesize": 10}):
        fig = MplFigure(figsize=(3.2, 3.5), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.imshow(grey, cmap="gray", vmin=0, vmax=255 if grey.dtype == np.uint8 else 1)
        if heat is not None:
            # Leave the weakest 10% of the map transparent so the anatomy stays readable.
            shown = np.ma.masked_less(np.asarray(heat, dtype=np.float32), 0.1)
            ax.imshow(shown, cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
        ax.set_title(title)
        ax.set_axis_off()
        return figure_png(fig, dpi=100)
