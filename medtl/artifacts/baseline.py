"""``histogram_baseline.json``: the intensity-histogram baseline of a patch dataset.

Written beside ``manifest.json`` by ``medtl data build`` and the demo's data stage
(:func:`medtl.data.histogram_baseline.histogram_baseline`); read by the validation report
as a baseline row.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from medtl.artifacts.base import Artifact
from medtl.artifacts.types import OptionalProbability, Probability

__all__ = ["HistogramBaseline"]


class HistogramBaseline(Artifact):
    """Scores of logistic regression on each patch's intensity histogram.

    Attributes:
        test_accuracy: accuracy on the test split, in [0, 1].
        test_macro_auroc: one-vs-rest macro AUROC on the test split (``None``: undefined,
            e.g. one class only).
        train_accuracy: accuracy on the training split.
        n_train: training samples.
        n_test: test samples.
        bins: number of histogram bins.
        per_class_recall: test recall of each label name.

    Files of earlier releases have no ``schema_version`` and may hold ``NaN`` for an
    undefined AUROC; they read as version 0 with ``None``.
    """

    SCHEMA_VERSION: ClassVar[int] = 1
    FILE: ClassVar[str] = "histogram_baseline.json"
    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = ("per_class_recall",)

    schema_version: int = 1
    test_accuracy: Probability
    test_macro_auroc: OptionalProbability
    train_accuracy: Probability
    n_train: int = Field(ge=1)
    n_test: int = Field(ge=1)
    bins: int = Field(ge=1)
    per_class_recall: dict[str, Probability] = Field(default_factory=dict)

    @classmethod
    def of(cls, result: Any) -> HistogramBaseline:
        """The artifact of a :class:`~medtl.data.histogram_baseline.BaselineResult`."""
        return cls.model_validate(result.as_dict())
