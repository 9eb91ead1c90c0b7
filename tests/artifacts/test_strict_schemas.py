"""Every schema in data_schemas/ refuses nonsense, and so does its pydantic model.

Real documents come from medtl's own writers (a model package, a learning-curve folder with
its evaluated runs, a prediction stored by ``record_result``, a fitted domain guard, the
histogram baseline, the demo summary). Each is accepted by its committed JSON Schema and its
model; then every required field is dropped in turn, and a list of wrong documents (wrong
types, out-of-range probabilities, thresholds and temperatures, unknown enum values, unknown
keys) must be refused by ``jsonschema`` AND by the model.
"""

from __future__ import annotations

import copy
import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from pydantic import BaseModel, ValidationError

from medtl.artifacts import Artifact, ArtifactError, DocumentModel
from medtl.schemas import FILES, SCHEMAS

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "data_schemas"
Doc = dict[str, Any]


def _validator(stem: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / f"{stem}.schema.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def _model(stem: str) -> Any:
    module, attr = SCHEMAS[stem].split(":")
    obj = getattr(importlib.import_module(module), attr)
    return obj if isinstance(obj, type) and issubclass(obj, BaseModel) else None


def _model_accepts(stem: str, doc: Any) -> bool:
    """Validate as medtl reads the file: ``parse`` for artifacts (upgrading older versions),
    the document rule for other typed files, plain validation for configs."""
    cls = _model(stem)
    assert cls is not None, f"{stem}: no pydantic model"
    try:
        if issubclass(cls, Artifact):
            cls.parse(copy.deepcopy(doc), stem)
        elif issubclass(cls, DocumentModel):
            cls.validate_document(copy.deepcopy(doc))
        else:
            cls.model_validate(copy.deepcopy(doc))
    except (ArtifactError, ValidationError):
        return False
    return True


# ----------------------------------------------------------------------- real documents


def _learning_curve_folder(root: Path) -> Path:
    from tests.evaluation.test_seed_verdict import _curves

    out, _ = _curves(root, [2.5, 0.3, 0.6])
    return out


def _stored_details(package: Path, root: Path) -> Doc:
    """What ``record_result`` stores for a real prediction of a real package."""
    from argon2 import PasswordHasher

    from medtl.inference import Predictor
    from medtl.io import load_scan
    from medtl.io.testing import chest_pixels, radiograph_dataset, to_bytes
    from medtl.review.results import record_result
    from medtl.review.store import ReviewStore

    scan = load_scan(to_bytes(radiograph_dataset(chest_pixels(64))))
    result = Predictor.from_package(package).predict(scan)
    store = ReviewStore.open(
        f"sqlite:///{root / 'review.sqlite'}",
        hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
        pseudonym_key=b"k" * 32,
    )
    try:
        alice = store.accounts.add_user("alice", "correct horse battery staple", "clinician")
        case = store.create_case(alice, scan)
        pred = record_result(store, alice, case.case_id, result, source="pacs", model_ref="x")
        return pred.details
    finally:
        store.close()


def _histogram_baseline(root: Path) -> tuple[Path, Path]:
    """A separable HU patch set, its manifest and the baseline written as the writers do."""
    from medtl.artifacts import HistogramBaseline
    from medtl.data.histogram_baseline import histogram_baseline
    from medtl.data.manifest import Manifest, ManifestRecord
    from medtl.data.patches import write_patch

    rng = np.random.default_rng(0)
    records = []
    for i in range(24):
        label = i % 2
        patch = rng.normal(-700 if label == 0 else 300, 20, size=(8, 8)).astype(np.int16)
        write_patch(root / f"{i}.nii.gz", patch, (1.0, 1.0))
        records.append(
            ManifestRecord(
                image=f"{i}.nii.gz", label=label, patient_id=f"p{i}",
                split="train" if i < 16 else "test",  # type: ignore[arg-type]
            )
        )  # fmt: skip
    manifest = Manifest(name="sep", label_names=["air", "dense"], records=records)
    manifest_path = manifest.save(root)
    result = histogram_baseline(manifest, root)
    return HistogramBaseline.of(result).write(root / HistogramBaseline.FILE), manifest_path


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Doc]:
    """One document per schema stem, written by medtl."""
    import torch

    from medtl.artifacts import Comparison, SampleEfficiencyFile, StudyArms
    from medtl.artifacts.curves import LearningCurves
    from medtl.demo.plans import PLANS
    from medtl.demo.runner import DemoState
    from medtl.demo.summary import build_summary
    from medtl.inference.domain import fit_domain_guard
    from medtl.pacs.testing import tiny_cr_package
    from medtl.training.config import TrainingConfig
    from medtl.transfer.learning_curves import point_dir
    from medtl.transfer.scoring import write_scores

    root = tmp_path_factory.mktemp("real")
    load = lambda p: json.loads(Path(p).read_text(encoding="utf-8"))  # noqa: E731
    docs: dict[str, Doc] = {}

    package = tiny_cr_package(root / "packages")
    docs["model_card"] = load(package / "model.json")
    docs["preprocessing"] = docs["model_card"]["preprocessing"]
    rng = np.random.default_rng(0)
    guard = fit_domain_guard(rng.normal(size=(40, 8)), rng.normal(size=(20, 8)),
                             modality_family="cxr", body_parts=["CHEST"])  # fmt: skip
    docs["domain_guard"] = load(guard.save(root / "guard"))
    torch.set_num_threads(1)
    docs["prediction_details"] = _stored_details(package, root)

    curves = _learning_curve_folder(root / "curves")
    docs["learning_curves"] = load(curves / LearningCurves.FILE)
    docs["sample_efficiency"] = load(curves / SampleEfficiencyFile.FILE)
    docs["comparison"] = load(curves / Comparison.FILE)
    run = point_dir(curves, "full", 1.0, 0)
    docs["run_summary"] = load(run / "summary.json")
    docs["evaluation"] = load(run / "evaluation.json")
    arms = StudyArms(
        points=LearningCurves.read(curves / LearningCurves.FILE).points,
        sample_efficiency=SampleEfficiencyFile.read(curves / SampleEfficiencyFile.FILE),
        verdicts={"full": Comparison.read(curves / Comparison.FILE)},
    )
    docs["study_arms"] = load(arms.write(root / StudyArms.FILE))

    state = DemoState(size="tiny")
    for name in ("mri_to_ct", "cxr_nodule"):
        state.done[name] = {"folder": str(curves), "runs": {"full_f1.0_s0": {}}, "seconds": 1.0}
    build_summary(PLANS["tiny"], state, root)
    docs["demo_summary"] = load(root / "summary.json")

    baseline, manifest = _histogram_baseline(root / "hist")
    docs["histogram_baseline"] = load(baseline)
    docs["manifest"] = load(manifest)
    docs["training_config"] = TrainingConfig(max_epochs=2).resolved()
    scores = {"scores": {"resnet18": {"logme": 0.4, "hscore": 1.2}}, "ranking": {"logme":
              ["resnet18"]}, "kendall_tau": {}}  # fmt: skip
    docs["transferability"] = load(write_scores(scores, root / "transferability.json"))
    return docs


#: the stems whose real documents the fixture writes (the others are configs and exports
#: owned elsewhere: refused documents only).
REAL = (
    "model_card", "preprocessing", "domain_guard", "prediction_details", "learning_curves",
    "sample_efficiency", "comparison", "run_summary", "evaluation", "study_arms",
    "demo_summary", "histogram_baseline", "manifest", "training_config", "transferability",
)  # fmt: skip


@pytest.mark.parametrize("stem", REAL)
def test_a_real_document_is_accepted(real: dict[str, Doc], stem: str) -> None:
    doc = real[stem]
    errors = [e.message for e in _validator(stem).iter_errors(doc)]
    assert not errors, f"{stem}: {errors[:3]}"
    assert _model_accepts(stem, doc)


def test_every_typed_file_maps_to_a_schema() -> None:
    assert FILES["histogram_baseline.json"] == "histogram_baseline"
    assert FILES["arms.json"] == "study_arms"
    assert {"demo_summary", "histogram_baseline", "study_arms"} <= set(SCHEMAS)


# ------------------------------------------------------------------ required fields


def _required_cases() -> list[tuple[str, str]]:
    cases = []
    for stem in REAL:
        schema = json.loads((SCHEMA_DIR / f"{stem}.schema.json").read_text(encoding="utf-8"))
        cases += [(stem, key) for key in schema.get("required", [])]
    return cases


@pytest.mark.parametrize(("stem", "key"), _required_cases())
def test_a_missing_required_field_is_refused(real: dict[str, Doc], stem: str, key: str) -> None:
    doc = copy.deepcopy(real[stem])
    del doc[key]
    assert not _validator(stem).is_valid(doc), f"{stem} without {key}: schema accepts it"
    if key == "schema_version":
        return  # a file without a version is an earlier release's: medtl upgrades it
    assert not _model_accepts(stem, doc), f"{stem} without {key}: model accepts it"


@pytest.mark.parametrize(
    "stem",
    ["model_card", "preprocessing", "domain_guard", "prediction_details", "learning_curves",
     "transferability", "histogram_baseline", "study_arms", "demo_summary", "run_summary",
     "evaluation", "comparison", "sample_efficiency"],
)  # fmt: skip
def test_an_empty_document_is_refused(stem: str) -> None:
    assert not _validator(stem).is_valid({})
    assert not _model_accepts(stem, {})


# --------------------------------------------------------------------- wrong documents


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    """A mutation setting ``path`` (dots; digits index lists) to ``value``."""

    def apply(doc: Doc) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = value

    return apply


WRONG: list[tuple[str, str, Any]] = [
    # the model card: calibration, operating points, names, hashes
    ("model_card", "calibration.temperature", "hot"),
    ("model_card", "calibration.temperature", 0.0),
    ("model_card", "calibration.temperature", -1.5),
    ("model_card", "calibration.method", "magic"),
    ("model_card", "calibration", {"temperature": 1.5}),
    ("model_card", "calibration", {"method": "platt", "a": 1.0}),
    ("model_card", "calibration", {"method": "isotonic", "x": [0.0, 1.0], "y": [0.2, 1.7]}),
    ("model_card", "calibration.surprise", 1),
    ("model_card", "operating_points.0.threshold", 7),
    ("model_card", "operating_points.0.threshold", -0.1),
    ("model_card", "operating_points.0.threshold", "high"),
    ("model_card", "operating_points.0.sensitivity", 1.5),
    ("model_card", "operating_points.0.status", "maybe"),
    ("model_card", "name", "no spaces allowed"),
    ("model_card", "weights_sha256", "not-a-hash"),
    ("model_card", "labels", "nodule"),
    ("model_card", "preprocessing", {}),
    ("model_card", "preprocessing.spatial_dims", 4),
    ("model_card", "architecture.num_outputs", 0),
    ("model_card", "favourite_colour", "blue"),
    # preprocessing
    ("preprocessing", "modality", "xray"),
    ("preprocessing", "spatial_dims", 4),
    ("preprocessing", "spatial_size", [0, 64]),
    ("preprocessing", "spatial_size", [64]),
    ("preprocessing", "intensity.kind", "clip"),
    ("preprocessing", "intensity.lower", "low"),
    ("preprocessing", "in_channels", 0),
    ("preprocessing", "fit", "stretch"),
    ("preprocessing", "target_spacing", [0.0, 1.0]),
    # the domain guard
    ("domain_guard", "quantile", 1.5),
    ("domain_guard", "spatial_dims", 4),
    ("domain_guard", "modalities", "CR"),
    ("domain_guard", "modalities", ["chest x-ray"]),
    ("domain_guard", "threshold", -1.0),
    ("domain_guard", "threshold_source", "guess"),
    ("domain_guard", "shrinkage", 2.0),
    ("domain_guard", "n_train", 0),
    ("domain_guard", "format_version", 99),
    ("domain_guard", "spacing_range_mm", [0.1]),
    # prediction details
    ("prediction_details", "domain", "maybe"),
    ("prediction_details", "domain", None),
    ("prediction_details", "expected_sensitivity", 1.2),
    ("prediction_details", "expected_specificity", -0.2),
    ("prediction_details", "calibrated", "yes"),
    ("prediction_details", "heat_peak", [-1, 2]),
    ("prediction_details", "labels", "nodule"),
    ("prediction_details", "source", "fax"),
    ("prediction_details", "reviewed_by", "alice"),
    # learning curves, sample efficiency, verdicts
    ("learning_curves", "points", []),
    ("learning_curves", "points.0.fraction", 0.0),
    ("learning_curves", "points.0.fraction", 1.5),
    ("learning_curves", "points.0.auroc", 1.2),
    ("learning_curves", "points.0.seed", -1),
    ("learning_curves", "points.0.n_train", -5),
    ("learning_curves", "summary.0.n_seeds", 0),
    ("learning_curves", "summary.0.sd", -0.1),
    ("sample_efficiency", "rows.0.fraction", 2.0),
    ("sample_efficiency", "rows.0.n_seeds", 0),
    ("sample_efficiency", "metric", ""),
    ("comparison", "verdict", "great transfer"),
    ("comparison", "alpha", 0.0),
    ("comparison", "confidence", 1.5),
    ("comparison", "delong_p_value", 2.0),
    ("comparison", "auroc_transfer", 1.3),
    ("comparison", "n_images", -1),
    ("comparison", "per_seed_transfer", [0.5, 1.5]),
    # run summary and evaluation
    ("run_summary", "num_outputs", 0),
    ("run_summary", "label_fraction", 0.0),
    ("run_summary", "train_images", -1),
    ("run_summary", "total_seconds", -3.0),
    ("run_summary", "train_patients", "fifty"),
    ("evaluation", "calibration_method", "magic"),
    ("evaluation", "calibrator", {"method": "temperature", "temperature": "hot", "n_classes": 2}),
    ("evaluation", "calibrator", {"method": "temperature", "temperature": -1.0, "n_classes": 2}),
    ("evaluation", "test_scores.prob.0", 1.5),
    ("evaluation", "n_resamples", -1),
    ("evaluation", "test.operating_points.youden.threshold", 7),
    ("evaluation", "test.operating_points.youden.status", "maybe"),
    ("evaluation", "test.operating_points.youden.metrics.sensitivity", 1.1),
    ("evaluation", "test.operating_points.youden.metrics.tp", -1),
    ("evaluation", "test.auroc.confidence", 95),
    ("evaluation", "calibration.reliability_before.counts.0", -2),
    # transferability
    ("transferability", "scores", {}),
    ("transferability", "scores", {"resnet18": {"logme": "good"}}),
    ("transferability", "kendall_tau", {"logme": {"tau": 2.0, "p_value": 0.1, "n": 3}}),
    ("transferability", "kendall_tau", {"logme": {"tau": 0.2, "p_value": -0.1, "n": 3}}),
    # new files: histogram baseline, study arms, demo summary
    ("histogram_baseline", "test_accuracy", 1.5),
    ("histogram_baseline", "test_macro_auroc", -0.1),
    ("histogram_baseline", "n_test", 0),
    ("histogram_baseline", "per_class_recall", {"air": 2.0}),
    ("histogram_baseline", "bins", "many"),
    ("study_arms", "points", []),
    ("study_arms", "verdicts.full.verdict", "great transfer"),
    ("study_arms", "sample_efficiency.rows.0.fraction", 0.0),
    ("demo_summary", "size", "huge"),
    ("demo_summary", "rows", []),
    ("demo_summary", "total_seconds", -1.0),
    ("demo_summary", "rows.0.ece_before", 2.0),
    ("demo_summary", "rows.0.verdict", "great transfer"),
    ("demo_summary", "rows.0.calibration_method", "magic"),
    ("demo_summary", "rows.0.arms.transfer.n_seeds", 0),
    # configs: types, ranges and enums (every field of a config section has a default)
    ("training_config", "lr", 0.0),
    ("training_config", "batch_size", 0),
    ("training_config", "max_epochs", "ten"),
    ("training_config", "optimizer", "adamx"),
    ("training_config", "amp", "fp8"),
    ("training_config", "min_lr_ratio", 1.5),
    ("training_config", "epochs", 3),
    ("manifest", "records.0.label", -1),
    ("manifest", "records.0.split", "holdout"),
    ("manifest", "name", ""),
]


@pytest.mark.parametrize(("stem", "path", "value"), WRONG)
def test_a_wrong_document_is_refused(
    real: dict[str, Doc], stem: str, path: str, value: Any
) -> None:
    doc = copy.deepcopy(real[stem])
    _set(path, value)(doc)
    assert not _validator(stem).is_valid(doc), f"{stem}.{path} = {value!r}: schema accepts it"
    assert not _model_accepts(stem, doc), f"{stem}.{path} = {value!r}: model accepts it"


@pytest.mark.parametrize(
    ("stem", "doc"),
    [
        ("experiment_config", {"name": "x"}),
        ("experiment_config", {"name": "x", "data": {"dataset": "d"}, "calibration": "magic"}),
        ("experiment_config", {"name": "x", "data": {"dataset": "d"},
                               "training": {"lr": -1.0}}),
        ("pretrain_config", {"data": {}}),
        ("study_config", {"name": "x"}),
        ("review_import", {"case_id": "c", "reader": "r", "verdict": "maybe"}),
        ("review_export", {"review_id": 1}),
        ("report", {"title": "t"}),
    ],
)  # fmt: skip
def test_configs_and_exports_refuse_wrong_documents(stem: str, doc: Doc) -> None:
    assert not _validator(stem).is_valid(doc)
    if _model(stem) is not None:
        assert not _model_accepts(stem, doc)
