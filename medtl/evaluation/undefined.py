"""Warnings about bootstrap replicates on which a statistic was undefined.

A replicate without a predicted negative has no NPV, one with a single class no AUROC; such
replicates are left out of the interval. One warning per metric and call says how many,
naming the metric, instead of one anonymous line per interval computed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medtl.evaluation.bootstrap import BootstrapCI

__all__ = ["display_name", "log_undefined"]

# the bootstrap's own logger: the warning belongs to the bootstrap, wherever it is gathered
logger = logging.getLogger("medtl.evaluation.bootstrap")

#: how a metric is named in messages
_DISPLAY = {"auroc": "AUROC", "auprc": "AUPRC", "ppv": "PPV", "npv": "NPV"}


def display_name(metric: str | Callable[..., float]) -> str:
    """How a metric is named in messages (``npv`` -> ``NPV``, a callable by its name).

    Args:
        metric: a metric name or function.

    Returns:
        The display name.
    """
    name = metric if isinstance(metric, str) else getattr(metric, "__name__", "metric")
    return _DISPLAY.get(name, name)


def log_undefined(cis: Mapping[str, list[BootstrapCI]], where: str = "operating points") -> None:
    """Warn once per metric about replicates on which it was undefined.

    A replicate without a predicted negative has no NPV, one without a positive no AUROC;
    those replicates are left out of the interval, which then describes the others only.

    Args:
        cis: metric name -> the intervals computed for it in one call (several when the
            metric was computed at several thresholds).
        where: what the several intervals of one metric are (for the message).
    """
    for name, group in cis.items():
        short = [ci for ci in group if ci.n_valid < ci.n_resamples]
        if not short:
            continue
        counts = sorted(ci.n_resamples - ci.n_valid for ci in short)
        span = f"{counts[0]}" if counts[0] == counts[-1] else f"{counts[0]}-{counts[-1]}"
        at = f" at {len(short)} of {len(group)} {where}" if len(group) > 1 else ""
        logger.warning(
            "bootstrap: %s undefined on %s of %d replicates%s; its CI uses the rest",
            display_name(name),
            span,
            short[0].n_resamples,
            at,
        )
