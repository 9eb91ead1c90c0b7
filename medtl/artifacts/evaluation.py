"""``evaluation.json``: calibration, test metrics with patient-level CIs, subgroups."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from medtl.artifacts.base import Artifact, DocumentModel
from medtl.artifacts.calibration import CalibrationParams
from medtl.artifacts.run import BuiltFrom
from medtl.artifacts.stats import ConfidenceInterval
from medtl.artifacts.types import Count, Flag, OptionalCount, OptionalProbability, Probability

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

#: a calibration method by name (``none``: not calibrated).
CalibrationMethod = Literal["temperature", "platt", "isotonic", "none"]
#: whether an operating point's goal was met on the split it was chosen on.
GoalStatus = Literal["reached", "not reachable"]


class ThresholdCounts(DocumentModel):
    """Confusion counts and rates at a threshold (:meth:`ThresholdMetrics.to_dict`)."""

    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = (
        "sensitivity",
        "specificity",
        "ppv",
        "npv",
        "accuracy",
    )

    threshold: Probability
    tp: Count
    fp: Count
    tn: Count
    fn: Count
    sensitivity: OptionalProbability = None
    specificity: OptionalProbability = None
    ppv: OptionalProbability = None
    npv: OptionalProbability = None
    accuracy: OptionalProbability = None
    confusion_matrix: list[list[Count]] | None = None


class OperatingPointResult(DocumentModel):
    """An operating point: chosen on the calibration split, or applied to the test split
    (then ``ci`` holds the bootstrap CIs of its rates)."""

    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = ("threshold", "metrics")

    name: str = Field(min_length=1)
    goal: str
    status: GoalStatus
    threshold: OptionalProbability = None
    metrics: ThresholdCounts | None = None
    ci: dict[str, ConfidenceInterval] | None = None


class TestMetrics(DocumentModel):
    """Test-split discrimination. Binary: ``auroc``, ``auprc``, ``n_positive``,
    ``operating_points``; multi-class: macro ``auroc``, ``accuracy``, ``class_counts``."""

    n_images: Count
    n_patients: Count
    auroc: ConfidenceInterval
    n_positive: OptionalCount = None
    auprc: ConfidenceInterval | None = None
    accuracy: ConfidenceInterval | None = None
    thresholds_chosen_on: str | None = None
    operating_points: dict[str, OperatingPointResult] = Field(default_factory=dict)
    class_counts: dict[int, Count] | None = None


class CalibrationMeasure(DocumentModel):
    """One row of the calibration table (before and after calibration).

    The CIs are patient-level bootstrap intervals on the test split; ``change_ci`` is the
    interval of ``after - before`` computed on the same patient resamples (paired).
    ``finding`` is the sentence a report shows (e.g. "Calibration did not measurably change
    ECE ..." when ``change_ci`` covers 0). Files written before version 2 have no CIs.
    """

    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = ("before", "after", "change")

    measure: str = Field(min_length=1)
    before: float | None = None
    after: float | None = None
    change: float | None = None
    before_ci: ConfidenceInterval | None = None
    after_ci: ConfidenceInterval | None = None
    change_ci: ConfidenceInterval | None = None
    finding: str | None = None


class CalibrationSplit(DocumentModel):
    """Size of the split the calibrator was fitted on."""

    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = ("class_counts",)

    split: str = Field(min_length=1)
    n_images: Count
    n_patients: Count
    class_counts: dict[int, Count] = Field(default_factory=dict)


class ReliabilityCurveData(DocumentModel):
    """A reliability curve on [0, 1]; empty bins are ``None``."""

    mean_predicted: list[OptionalProbability]
    fraction_positive: list[OptionalProbability]
    counts: list[Count]
    edges: list[OptionalProbability]


class CalibrationResult(DocumentModel):
    """Calibration measures on the test split and the curves before/after."""

    table: list[CalibrationMeasure]
    reliability_before: ReliabilityCurveData
    reliability_after: ReliabilityCurveData


class SubgroupResult(DocumentModel):
    """A subgroup row: AUROC (patient-level bootstrap CI) and, for positive subgroups,
    sensitivity at the Youden threshold (Wilson CI)."""

    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = ("auroc",)

    group: str
    name: str
    n_positive: OptionalCount = None
    n_images: OptionalCount = None
    n_patients: OptionalCount = None
    auroc: ConfidenceInterval | None = None
    sensitivity: ConfidenceInterval | None = None


class TestScores(DocumentModel):
    """Calibrated test probabilities per image (binary: positive class; else per class)."""

    index: list[Count]
    label: list[Count]
    patient_id: list[str]
    prob: list[Probability] | list[Annotated[list[Probability], Field(min_length=2)]]


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
        built_from: the run's hashes when it was evaluated (config, data, starting and
            trained weights, predictions); ``None`` in files written before it was recorded.
    """

    SCHEMA_VERSION: ClassVar[int] = 2
    FILE: ClassVar[str] = "evaluation.json"
    # operating points and subgroups are binary-only: multi-class files may lack them
    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = ("label_names", "evaluated_on", "calibrator")

    schema_version: int = 2
    run: str = Field(min_length=1)
    strategy: str = Field(min_length=1)
    binary: Flag
    label_names: list[str] = Field(default_factory=list)
    calibrated_on: str = Field(min_length=1)
    evaluated_on: str = Field("test", min_length=1)
    n_resamples: Count
    seed: int | None = Field(None, ge=0)
    calibration_method: CalibrationMethod
    calibration_requested: CalibrationMethod | None = None
    calibration_split: CalibrationSplit | None = None
    calibration_warning: str | None = None
    calibrator: CalibrationParams | None = None
    calibration: CalibrationResult
    operating_points_chosen: dict[str, OperatingPointResult] = Field(default_factory=dict)
    test: TestMetrics
    subgroups: list[SubgroupResult] = Field(default_factory=list)
    test_scores: TestScores
    built_from: BuiltFrom | None = None

    def operating_point_on_test(self, name: str) -> OperatingPointResult | None:
        """The test-split result of a chosen operating point (``None`` when absent)."""
        return self.test.operating_points.get(name)
