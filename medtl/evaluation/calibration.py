"""Post-hoc calibration estimators and calibration measures.

Estimators follow scikit-learn: ``__init__`` stores parameters, ``fit(logits, labels)``
returns ``self``, fitted attributes end in ``_``, and ``transform(logits)`` returns
probabilities. **Fit them on the calibration split, never on the test split**: these
functions take arrays and cannot tell which split they see. Each estimator serialises to a
small JSON-ready dict (``to_dict`` / ``from_dict``; :func:`calibrator_from_dict` dispatches),
which the model card stores.

- :class:`TemperatureScaler` (Guo et al. 2017): ``p = sigmoid(z / T)`` for binary logits
  ``(n,)``, ``softmax(z / T)`` for multi-class logits ``(n, k)``.
- :class:`PlattScaler` (Platt 1999): ``p = sigmoid(a z + b)``, binary only.
- :class:`IsotonicCalibrator` (Zadrozny & Elkan 2002): monotone step map, binary only.

Measures (binary ``probs`` are positive-class probabilities, shape ``(n,)``, and each bin
compares the mean probability with the fraction of positives, the torchmetrics/netcal binary
convention; multi-class ``probs`` of shape ``(n, k)`` use the top-label confidence and
accuracy): :func:`expected_calibration_error` (``strategy="uniform"`` equal-width bins, or
``"quantile"`` equal-mass bins, the adaptive ECE), :func:`maximum_calibration_error`,
:func:`brier_score`, :func:`negative_log_likelihood`, :func:`reliability_curve` and
:func:`calibration_table`.

Binning follows scikit-learn's ``calibration_curve`` (and Guo et al. 2017): bins are
``(e_i, e_{i+1}]`` with the first bin closed at its left edge; quantile edges are the
percentiles of the confidences.

The estimators live in :mod:`medtl.evaluation.calibrators` and the measures in
:mod:`medtl.evaluation.calibration_measures`; this module is the public entry point.
"""

from __future__ import annotations

from medtl.evaluation.calibration_measures import (
    ReliabilityCurve,
    Strategy,
    brier_score,
    calibration_table,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
    reliability_curve,
)
from medtl.evaluation.calibrators import (
    CALIBRATION_METHODS,
    IsotonicCalibrator,
    PlattScaler,
    TemperatureScaler,
    calibrator_from_dict,
    make_calibrator,
)

__all__ = [
    "CALIBRATION_METHODS",
    "IsotonicCalibrator",
    "PlattScaler",
    "ReliabilityCurve",
    "Strategy",
    "TemperatureScaler",
    "brier_score",
    "calibration_table",
    "calibrator_from_dict",
    "expected_calibration_error",
    "make_calibrator",
    "maximum_calibration_error",
    "negative_log_likelihood",
    "reliability_curve",
]
