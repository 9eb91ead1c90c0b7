"""medtl.evaluation: metrics, CIs, DeLong, calibration, transferability, transfer analysis.

Submodules (import them directly for the full API):

- ``metrics``: AUROC, AUPRC, threshold metrics, Wilson intervals;
- ``operating_points``: Youden, sensitivity/specificity 0.90, PPV 0.80;
- ``bootstrap``: patient-level stratified bootstrap CIs;
- ``delong``: DeLong's test for correlated AUROCs (Sun & Xu fast algorithm);
- ``calibration``: temperature/Platt/isotonic calibrators, ECE, MCE, Brier, NLL;
- ``transferability``: LogME, H-score, LEEP, NCE, backbone ranking;
- ``calibration_evidence``: calibration split minimums, calibration measures with
  patient-level CIs and the paired CI of their change;
- ``transfer_analysis``: learning curves and the transfer-vs-scratch verdict;
- ``seed_verdict``, ``compare``: the verdict over training seeds and test patients
  (hierarchical bootstrap), and over run folders;
- ``plots``: PNG figures (matplotlib, no pyplot).

The function ``operating_points`` is not re-exported here because the package attribute
of that name is the submodule; use ``medtl.evaluation.operating_points.operating_points``.
The names below are re-exported lazily, so ``import medtl.evaluation`` stays cheap and does
not pull in scikit-learn or matplotlib until a name is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medtl._lazy import lazy_exports

_EXPORTS = {
    "auroc": "metrics",
    "auprc": "metrics",
    "threshold_metrics": "metrics",
    "macro_auroc": "metrics",
    "wilson_interval": "metrics",
    "ThresholdMetrics": "metrics",
    "OperatingPoint": "operating_points",
    "BootstrapCI": "bootstrap",
    "bootstrap_ci": "bootstrap",
    "bootstrap_difference": "bootstrap",
    "bootstrap_threshold_metrics": "bootstrap",
    "DeLongResult": "delong",
    "delong_test": "delong",
    "TemperatureScaler": "calibration",
    "PlattScaler": "calibration",
    "IsotonicCalibrator": "calibration",
    "calibrator_from_dict": "calibration",
    "make_calibrator": "calibration",
    "expected_calibration_error": "calibration",
    "maximum_calibration_error": "calibration",
    "brier_score": "calibration",
    "negative_log_likelihood": "calibration",
    "reliability_curve": "calibration",
    "calibration_table": "calibration",
    "CALIBRATION_MINIMUMS": "calibration_evidence",
    "calibration_split_problem": "calibration_evidence",
    "calibration_table_ci": "calibration_evidence",
    "seed_patient_verdict": "seed_verdict",
    "compare_runs": "compare",
    "compare_seed_runs": "compare",
    "logme": "transferability",
    "h_score": "transferability",
    "leep": "transferability",
    "nce": "transferability",
    "rank_backbones": "transferability",
    "kendall_tau": "transferability",
    "LearningCurvePoint": "transfer_analysis",
    "sample_efficiency_table": "transfer_analysis",
    "TransferVerdict": "transfer_analysis",
    "transfer_verdict": "transfer_analysis",
}

__all__ = [
    "CALIBRATION_MINIMUMS",
    "BootstrapCI",
    "DeLongResult",
    "IsotonicCalibrator",
    "LearningCurvePoint",
    "OperatingPoint",
    "PlattScaler",
    "TemperatureScaler",
    "ThresholdMetrics",
    "TransferVerdict",
    "auprc",
    "auroc",
    "bootstrap_ci",
    "bootstrap_difference",
    "bootstrap_threshold_metrics",
    "brier_score",
    "calibration_split_problem",
    "calibration_table",
    "calibration_table_ci",
    "calibrator_from_dict",
    "compare_runs",
    "compare_seed_runs",
    "delong_test",
    "expected_calibration_error",
    "h_score",
    "kendall_tau",
    "leep",
    "logme",
    "macro_auroc",
    "make_calibrator",
    "maximum_calibration_error",
    "nce",
    "negative_log_likelihood",
    "rank_backbones",
    "reliability_curve",
    "sample_efficiency_table",
    "seed_patient_verdict",
    "threshold_metrics",
    "transfer_verdict",
    "wilson_interval",
]

if TYPE_CHECKING:
    from medtl.evaluation.bootstrap import (
        BootstrapCI,
        bootstrap_ci,
        bootstrap_difference,
        bootstrap_threshold_metrics,
    )
    from medtl.evaluation.calibration import (
        IsotonicCalibrator,
        PlattScaler,
        TemperatureScaler,
        brier_score,
        calibration_table,
        calibrator_from_dict,
        expected_calibration_error,
        make_calibrator,
        maximum_calibration_error,
        negative_log_likelihood,
        reliability_curve,
    )
    from medtl.evaluation.calibration_evidence import (
        CALIBRATION_MINIMUMS,
        calibration_split_problem,
        calibration_table_ci,
    )
    from medtl.evaluation.compare import compare_runs, compare_seed_runs
    from medtl.evaluation.delong import DeLongResult, delong_test
    from medtl.evaluation.metrics import (
        ThresholdMetrics,
        auprc,
        auroc,
        macro_auroc,
        threshold_metrics,
        wilson_interval,
    )
    from medtl.evaluation.operating_points import OperatingPoint
    from medtl.evaluation.seed_verdict import seed_patient_verdict
    from medtl.evaluation.transfer_analysis import (
        LearningCurvePoint,
        TransferVerdict,
        sample_efficiency_table,
        transfer_verdict,
    )
    from medtl.evaluation.transferability import (
        h_score,
        kendall_tau,
        leep,
        logme,
        nce,
        rank_backbones,
    )


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
