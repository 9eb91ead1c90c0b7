"""The validation report's data model: everything the report shows, as validated JSON.

:class:`ReportData` is filled by :func:`medtl.reports.builder.build_report_data`, rendered by
:mod:`medtl.reports.html` and written as ``report.json``; :func:`report_schema` is its JSON
Schema (exported to ``data_schemas/``). Figures travel inside the JSON as base64 PNG, so
the JSON alone reproduces the report.

Numbers that could not be computed are ``None`` (JSON ``null``), never NaN.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from medtl.artifacts.run import BuiltFrom
from medtl.artifacts.stats import ConfidenceInterval

REPORT_SCHEMA_VERSION = 2

#: HTML ids of the report sections, in document order.
SECTION_IDS: tuple[str, ...] = (
    "summary",
    "intended-use",
    "data",
    "model-card",
    "metrics",
    "operating-points",
    "calibration",
    "subgroups",
    "transfer",
    "failure-cases",
    "checklist",
)

NOT_APPLICABLE_MULTICLASS = "not applicable (multi-class task)"

ChecklistStatus = Literal["reported", "not reported", "unknown", "not applicable"]


def finite(value: Any) -> float | None:
    """``float(value)``, or ``None`` for missing, NaN or infinite values."""
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CI(_Model):
    """An estimate with its confidence interval (``None`` where undefined)."""

    estimate: float | None = None
    lower: float | None = None
    upper: float | None = None
    confidence: float = 0.95

    @field_validator("estimate", "lower", "upper", mode="before")
    @classmethod
    def _finite(cls, value: Any) -> float | None:
        return finite(value)

    @classmethod
    def from_any(cls, value: Any) -> CI | None:
        """From a :class:`~medtl.artifacts.ConfidenceInterval` (or its dict), a number, or
        ``None``."""
        if value is None:
            return None
        if isinstance(value, dict):
            value = ConfidenceInterval.model_validate(value)
        if isinstance(value, ConfidenceInterval):
            return cls(
                estimate=value.estimate,
                lower=value.lower,
                upper=value.upper,
                confidence=value.confidence or 0.95,
            )
        return cls(estimate=value)


class Figure(_Model):
    """A PNG figure embedded in the report."""

    id: str
    caption: str
    png_base64: str = Field(description="PNG file content, base64-encoded.")


class Headline(_Model):
    """One number in the summary box."""

    label: str
    value: str
    flag: Literal["ok", "warning", "danger", "info"] = "info"


class Summary(_Model):
    """The box at the top: headline numbers and warnings."""

    headline: list[Headline] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


class IntendedUse(_Model):
    """Intended use, users and out-of-scope uses."""

    purpose: str
    users: list[str]
    out_of_scope: list[str]
    limitations: list[str] = Field(default_factory=list)


class DataSplit(_Model):
    """Sizes of one split."""

    split: str
    n_images: int
    n_patients: int
    n_positive: int | None = None
    prevalence: float | None = None
    class_counts: dict[str, int] = Field(default_factory=dict)


class DataSection(_Model):
    """What the data are and how they were split and labelled."""

    dataset: str
    task: str
    modality: str
    simulated: bool
    description: str
    generator: str
    sources: list[str]
    label_names: list[str]
    label_provenance: str
    splits: list[DataSplit]
    data_hash: str | None = None
    split_method: str = ""


class Phase(_Model):
    """One training phase of the strategy."""

    name: str
    epochs: int | None = None
    best_epoch: int | None = None
    best_metric: float | None = None
    monitor: str | None = None
    stopped_early: bool | None = None

    @field_validator("best_metric", mode="before")
    @classmethod
    def _finite(cls, value: Any) -> float | None:
        return finite(value)


class ModelSection(_Model):
    """Model card (Mitchell et al. 2019): architecture, domains, training, versions, hashes."""

    name: str
    backbone: str
    architecture: dict[str, Any]
    total_parameters: int | None = None
    trainable_parameters: int | None = None
    source_domain: str | None = None
    source_task: str | None = None
    source_stated_by: str | None = None
    target_domain: str | None = None
    target_task: str | None = None
    strategy: str
    pretrained_weights: str | None = None
    starting_weights: dict[str, Any] | None = None
    preprocessing: dict[str, Any] = Field(default_factory=dict)
    phases: list[Phase] = Field(default_factory=list)
    training: dict[str, Any] = Field(default_factory=dict)
    timings_seconds: dict[str, float] = Field(default_factory=dict)
    hardware: str = ""
    precision: str = ""
    versions: dict[str, str] = Field(default_factory=dict)
    git_commit: str | None = None
    config_hash: str | None = None
    data_hash: str | None = None
    config_warnings: list[str] = Field(default_factory=list)
    figures: list[Figure] = Field(default_factory=list)


class MetricRow(_Model):
    """A test metric with its CI."""

    name: str
    value: CI
    note: str = ""


class MetricsSection(_Model):
    """Discrimination on the test split."""

    binary: bool
    n_images: int
    n_patients: int
    n_positive: int | None = None
    rows: list[MetricRow]
    class_counts: dict[str, int] = Field(default_factory=dict)
    ci_method: str = ""
    figures: list[Figure] = Field(default_factory=list)
    note: str = ""


class OperatingPointRow(_Model):
    """A threshold chosen on the calibration split and its test performance."""

    name: str
    goal: str
    status: str
    threshold: float | None = None
    chosen_on: str
    chosen_sensitivity: float | None = None
    chosen_specificity: float | None = None
    sensitivity: CI | None = None
    specificity: CI | None = None
    ppv: CI | None = None
    npv: CI | None = None
    confusion: dict[str, int] | None = None


class OperatingPointsSection(_Model):
    """Operating-point table (binary tasks)."""

    applicable: bool
    note: str = ""
    rows: list[OperatingPointRow] = Field(default_factory=list)


class CalibrationRow(_Model):
    """A calibration measure before and after calibration, with patient-level bootstrap CIs
    (``change``: after - before, on the same patient resamples) and the finding sentence."""

    measure: str
    before: float | None = None
    after: float | None = None
    change: float | None = None
    before_ci: CI | None = None
    after_ci: CI | None = None
    change_ci: CI | None = None
    finding: str | None = None

    @field_validator("before", "after", "change", mode="before")
    @classmethod
    def _finite(cls, value: Any) -> float | None:
        return finite(value)


class CalibrationSection(_Model):
    """Calibration method, parameters, calibration split size and measures on the test split.

    ``method`` is what was applied; ``requested`` what the experiment asked for; ``warning``
    says why they differ (calibration split too small for the method).
    """

    method: str
    calibrated_on: str
    evaluated_on: str
    requested: str | None = None
    warning: str | None = None
    split_images: int | None = None
    split_patients: int | None = None
    calibrator: dict[str, Any] | None = None
    table: list[CalibrationRow]
    findings: list[str] = Field(default_factory=list)
    method_note: str = ""
    figures: list[Figure] = Field(default_factory=list)


class SubgroupRow(_Model):
    """Performance in a subgroup."""

    group: str
    name: str
    n_positive: int | None = None
    n_images: int | None = None
    auroc: CI | None = None
    sensitivity: CI | None = None


class SubgroupSection(_Model):
    """Subgroups: nodule size, conspicuity, location and recorded attributes."""

    applicable: bool
    note: str = ""
    rows: list[SubgroupRow] = Field(default_factory=list)


class LearningCurveRow(_Model):
    """One (strategy, label fraction) cell of the learning curves, over seeds."""

    strategy: str
    fraction: float
    n_seeds: int
    mean: float | None = None
    lower: float | None = None
    upper: float | None = None
    sd: float | None = None
    min: float | None = None
    max: float | None = None
    scratch_n_seeds: int | None = None
    scratch_mean: float | None = None
    scratch_sd: float | None = None
    scratch_min: float | None = None
    scratch_max: float | None = None
    delta: float | None = None

    @field_validator(
        "mean", "lower", "upper", "sd", "min", "max", "scratch_mean", "scratch_sd",
        "scratch_min", "scratch_max", "delta", mode="before",
    )  # fmt: skip
    @classmethod
    def _finite(cls, value: Any) -> float | None:
        return finite(value)


class TransferSection(_Model):
    """Transfer vs scratch, learning curves, transferability scores and baselines."""

    comparison: dict[str, Any] | None = None
    verdict: str | None = None
    verdict_sentence: str | None = None
    verdict_method: str = ""
    negative_transfer: bool = False
    learning_curve_metric: str = "auroc"
    learning_curves: list[LearningCurveRow] = Field(default_factory=list)
    sample_efficiency: list[str] = Field(default_factory=list)
    transferability: dict[str, dict[str, float | None]] = Field(default_factory=dict)
    baselines: list[dict[str, Any]] = Field(default_factory=list)
    figures: list[Figure] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class FailureCase(_Model):
    """A misclassified (or nearly misclassified) test case with its saliency overlay."""

    kind: Literal["false positive", "false negative", "nearest negative", "nearest positive"]
    index: int
    patient: str
    label: str
    probability: float
    threshold: float
    image: Figure | None = None
    saliency: bool = False


class FailureSection(_Model):
    """Worst errors at the Youden operating point, with saliency."""

    applicable: bool
    note: str = ""
    threshold: float | None = None
    n_false_positive: int = 0
    n_false_negative: int = 0
    saliency_method: str = ""
    cases: list[FailureCase] = Field(default_factory=list)


class ChecklistItem(_Model):
    """One reporting-guideline item and whether the report covers it."""

    guideline: str
    item: str
    topic: str
    status: ChecklistStatus
    section: str | None = None
    detail: str = ""


class ReportData(_Model):
    """Everything a validation report shows (the content of ``report.json``)."""

    schema_version: int = REPORT_SCHEMA_VERSION
    title: str
    run: str
    generated: datetime
    task_type: Literal["binary", "multiclass"]
    summary: Summary
    intended_use: IntendedUse
    data: DataSection
    model: ModelSection
    metrics: MetricsSection
    operating_points: OperatingPointsSection
    calibration: CalibrationSection
    subgroups: SubgroupSection
    transfer: TransferSection
    failures: FailureSection
    checklist: list[ChecklistItem] = Field(default_factory=list)
    built_from: BuiltFrom | None = Field(
        None,
        description="The run's hashes the report was built from (config, data, "
        "starting and trained weights, predictions); a package refuses a report of another run.",
    )

    def figures(self) -> list[Figure]:
        """Every figure of the report, in document order."""
        out = [*self.model.figures, *self.metrics.figures, *self.calibration.figures]
        out += self.transfer.figures
        out += [c.image for c in self.failures.cases if c.image is not None]
        return out


def report_schema() -> dict[str, Any]:
    """JSON Schema of ``report.json`` (:class:`ReportData`).

    Returns:
        The schema as a dict (draft 2020-12, as pydantic writes it).
    """
    schema = ReportData.model_json_schema()
    schema["$id"] = "https://medtl.local/schemas/report.json"
    schema["title"] = "medtl validation report"
    return schema
