"""``evaluation.json``: calibration, test metrics with patient-level CIs, subgroups."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from medtl.artifacts.base import Artifact
from medtl.artifacts.stats import ConfidenceInterval

__all__ = [
    "CalibrationMeasure",
    "CalibrationResult",
    "CalibrationSplit",
    "Evaluation",
    "OperatingPointResult",
    "ReliabilityCurveData",
    "SubgroupResult",
    "TestMetrics",
    "TestScores",
    "ThresholdCounts",
]

_CONFIG = ConfigDict(extra="forbid", ser_json_inf_nan="null")


class ThresholdCounts(BaseModel):
    """Confusion counts and rates at a threshold (:meth:`ThresholdMetrics.to_dict`)."""

    model_config = _CONFIG

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int
    sensitivity: float | None = None
    specificity: float | None = None
    ppv: float | None = None
    npv: float | None = None
    accuracy: float | None = None
    confusion_matrix: list[list[int]] | None = None


class OperatingPointResult(BaseModel):
    """An operating point: chosen on the calibration split, or applied to the test split
    (then ``ci`` holds the bootstrap CIs of its rates)."""

    model_config = _CONFIG

    name: str
    goal: str
    status: str
    threshold: float | None = None
    metrics: ThresholdCounts | None = None
    ci: dict[str, ConfidenceInterval] | None = None


class TestMetrics(BaseModel):
    """Test-split discrimination. Binary: ``auroc``, ``auprc``, ``n_positive``,
    ``operating_points``; multi-class: macro ``auroc``, ``accuracy``, ``class_counts``."""

    model_config = _CONFIG

    n_images: int
    n_patients: int
    auroc: ConfidenceInterval
    n_positive: int | None = None
    auprc: ConfidenceInterval | None = None
    accuracy: ConfidenceInterval | None = None
    thresholds_chosen_on: str | None = None
    operating_points: dict[str, OperatingPointResult] = Field(default_factory=dict)
    class_counts: dict[int, int] | None = None


class CalibrationMeasure(BaseModel):
    """One row of the calibration table (before and after calibration).

    The CIs are patient-level bootstrap intervals on the test split; ``change_ci`` is the
    interval of ``after - before`` computed on the same patient resamples (paired).
    ``finding`` is the sentence a report shows (e.g. "Calibration did not measurably change
    ECE ..." when ``change_ci`` covers 0). Files written before version 2 have no CIs.
    """

    model_config = _CONFIG

    measure: str
    before: float | None = None
    after: float | None = None
    change: float | None = None
    before_ci: ConfidenceInterval | None = None
    after_ci: ConfidenceInterval | None = None
    change_ci: ConfidenceInterval | None = None
    finding: str | None = None


class CalibrationSplit(BaseModel):
    """Size of the split the calibrator was fitted on."""

    model_config = _CONFIG

    split: str
    n_images: int
    n_patients: int
    class_counts: dict[int, int] = Field(default_factory=dict)


class ReliabilityCurveData(BaseModel):
    """A reliability curve; empty bins are ``None``."""

    model_config = _CONFIG

    mean_predicted: list[float | None]
    fraction_positive: list[float | None]
    counts: list[int]
    edges: list[float | None]


class CalibrationResult(BaseModel):
    """Calibration measures on the test split and the curves before/after."""

    model_config = _CONFIG

    table: list[CalibrationMeasure]
    reliability_before: ReliabilityCurveData
    reliability_after: ReliabilityCurveData


class SubgroupResult(BaseModel):
    """A subgroup row: AUROC (patient-level bootstrap CI) and, for positive subgroups,
    sensitivity at the Youden threshold (Wilson CI)."""

    model_config = _CONFIG

    group: str
    name: str
    n_positive: int | None = None
    n_images: int | None = None
    n_patients: int | None = None
    auroc: ConfidenceInterval | None = None
    sensitivity: ConfidenceInterval | None = None


class TestScores(BaseModel):
    """Calibrated test probabilities per image (binary: positive class; else per class)."""

    model_config = _CONFIG

    index: list[int]
    label: list[int]
    patient_id: list[str]
    prob: list[float] | list[list[float]]


class Evaluation(Artifact):
    """``evaluation.json`` (written by :func:`medtl.evaluation.run.evaluate_run`).

    Attributes:
        run: run name.
        strategy: the run's strategy.
        binary: one-logit task.
        label_names: class names.
        calibrated_on: split the calibrator and thresholds were fitted on.
        evaluated_on: split the metrics are measured on.
        n_resamples: bootstrap replicates of every CI.
        seed: bootstrap seed.
        calibration_method: ``temperature``, ``platt``, ``isotonic`` or ``none`` (what was
            applied: ``none`` when the calibration split was too small for the requested
            method, see ``calibration_warning``).
        calibration_requested: the method the experiment asked for (``None`` before
            version 2).
        calibration_split: size of the calibration split (``None`` before version 2).
        calibration_warning: why the requested calibration was not applied (``None`` when
            it was).
        calibrator: the fitted calibrator's ``to_dict()`` (``None`` when uncalibrated).
        calibration: measures and reliability curves.
        operating_points_chosen: thresholds chosen on the calibration split (binary).
        test: test metrics with CIs.
        subgroups: subgroup rows (binary).
        test_scores: per-image calibrated test probabilities.
    """

    SCHEMA_VERSION: ClassVar[int] = 2
    FILE: ClassVar[str] = "evaluation.json"

    schema_version: int = 2
    run: str
    strategy: str
    binary: bool
    label_names: list[str] = Field(default_factory=list)
    calibrated_on: str
    evaluated_on: str = "test"
    n_resamples: int
    seed: int | None = None
    calibration_method: str
    calibration_requested: str | None = None
    calibration_split: CalibrationSplit | None = None
    calibration_warning: str | None = None
    calibrator: dict[str, Any] | None = None
    calibration: CalibrationResult
    operating_points_chosen: dict[str, OperatingPointResult] = Field(default_factory=dict)
    test: TestMetrics
    subgroups: list[SubgroupResult] = Field(default_factory=list)
    test_scores: TestScores

    def operating_point_on_test(self, name: str) -> OperatingPointResult | None:
        """The test-split result of a chosen operating point (``None`` when absent)."""
        return self.test.operating_points.get(name)
