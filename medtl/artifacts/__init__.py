"""medtl.artifacts: the typed hand-offs between stages, and their readers and writers.

Every file one stage writes and another reads is a pydantic model here, validated when
written and when read (:class:`ArtifactError` names the file and the field). JSON artifacts
carry a ``schema_version`` and upgrade files of earlier releases on read.

=====================  =====================  ============================================
artifact               file                   written by / read by
=====================  =====================  ============================================
PreprocessingSpec      (in configs, cards)    transfer.presets / data, inference
BackboneConfig         (in summary, card)     models / models, reports
RunSummary             summary.json           transfer.experiment / evaluation, reports
Evaluation             evaluation.json        evaluation.run / reports, transfer, demo
LearningCurves         learning_curves.json   transfer.learning_curves / reports, demo
SampleEfficiencyFile   sample_efficiency.json transfer.learning_curves
Comparison             verdict.json           transfer.learning_curves / reports
predictions.csv        predictions.csv        transfer.experiment / evaluation, reports
PredictionDetails      review store column    app analysis / app case review
ModelCard              model.json             reports.card, models.package / inference
DomainGuardFile        domain_guard.json      inference.domain (checked both ways)
TransferabilityScores  transferability.json   transfer.scoring / reports
HistogramBaseline      histogram_baseline.json data.cli, demo.runner / reports
StudyArms              arms.json              transfer.arms (study summary)
DemoSummary            summary.json (demo)    demo.summary
=====================  =====================  ============================================

Ranges and enums are stated once (:mod:`medtl.artifacts.types`: probabilities and
thresholds in [0, 1], counts >= 0; :mod:`medtl.artifacts.calibration`: a positive
temperature), and a file must carry every field its writer always writes
(:class:`DocumentModel`), so a document with a missing field, a wrong type or an
out-of-range value is refused on reading and by the JSON Schema alike.

This layer imports nothing of medtl but itself (layers: io, artifacts -> data, models ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medtl._lazy import lazy_exports

_EXPORTS = {
    "Artifact": "base",
    "ArtifactError": "base",
    "DocumentModel": "base",
    "finite_or_none": "base",
    "AugmentationSpec": "preprocessing",
    "IntensitySpec": "preprocessing",
    "ModalityFamily": "preprocessing",
    "PreprocessingSpec": "preprocessing",
    "BackboneConfig": "backbone",
    "HeadConfig": "backbone",
    "ConfidenceInterval": "stats",
    "PhaseSummary": "run",
    "RunSummary": "run",
    "Evaluation": "evaluation",
    "CalibrationSplit": "evaluation",
    "OperatingPointResult": "evaluation",
    "SubgroupResult": "evaluation",
    "TestMetrics": "evaluation",
    "CurvePoint": "curves",
    "CurveSummary": "curves",
    "Comparison": "curves",
    "SampleEfficiencyFile": "curves",
    "LearningCurves": "curves",
    "PredictionRow": "predictions",
    "SplitPredictions": "predictions",
    "read_predictions": "predictions",
    "write_predictions": "predictions",
    "PredictionDetails": "details",
    "DomainGuardFile": "guard",
    "TransferabilityScores": "scores",
    "CalibrationParams": "calibration",
    "HistogramBaseline": "baseline",
    "StudyArms": "study",
    "DemoSummary": "demo",
    "CardOperatingPoint": "card",
    "ModelCard": "card",
    "software_versions": "card",
}

__all__ = [
    "Artifact",
    "ArtifactError",
    "AugmentationSpec",
    "BackboneConfig",
    "CalibrationParams",
    "CalibrationSplit",
    "CardOperatingPoint",
    "Comparison",
    "ConfidenceInterval",
    "CurvePoint",
    "CurveSummary",
    "DemoSummary",
    "DocumentModel",
    "DomainGuardFile",
    "Evaluation",
    "HeadConfig",
    "HistogramBaseline",
    "IntensitySpec",
    "LearningCurves",
    "ModalityFamily",
    "ModelCard",
    "OperatingPointResult",
    "PhaseSummary",
    "PredictionDetails",
    "PredictionRow",
    "PreprocessingSpec",
    "RunSummary",
    "SampleEfficiencyFile",
    "SplitPredictions",
    "StudyArms",
    "SubgroupResult",
    "TestMetrics",
    "TransferabilityScores",
    "finite_or_none",
    "read_predictions",
    "software_versions",
    "write_predictions",
]

if TYPE_CHECKING:
    from medtl.artifacts.backbone import BackboneConfig, HeadConfig
    from medtl.artifacts.base import Artifact, ArtifactError, DocumentModel, finite_or_none
    from medtl.artifacts.baseline import HistogramBaseline
    from medtl.artifacts.calibration import CalibrationParams
    from medtl.artifacts.card import CardOperatingPoint, ModelCard, software_versions
    from medtl.artifacts.curves import (
        Comparison,
        CurvePoint,
        CurveSummary,
        LearningCurves,
        SampleEfficiencyFile,
    )
    from medtl.artifacts.demo import DemoSummary
    from medtl.artifacts.details import PredictionDetails
    from medtl.artifacts.evaluation import (
        CalibrationSplit,
        Evaluation,
        OperatingPointResult,
        SubgroupResult,
        TestMetrics,
    )
    from medtl.artifacts.guard import DomainGuardFile
    from medtl.artifacts.predictions import (
        PredictionRow,
        SplitPredictions,
        read_predictions,
        write_predictions,
    )
    from medtl.artifacts.preprocessing import (
        AugmentationSpec,
        IntensitySpec,
        ModalityFamily,
        PreprocessingSpec,
    )
    from medtl.artifacts.run import PhaseSummary, RunSummary
    from medtl.artifacts.scores import TransferabilityScores
    from medtl.artifacts.stats import ConfidenceInterval
    from medtl.artifacts.study import StudyArms

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
