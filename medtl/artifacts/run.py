"""``summary.json``: what a fine-tuning run hands to evaluation, reports and packages.

Also the provenance a run records (:class:`StartingWeights`, :class:`SourceDescription`,
:class:`RunEnvironment`), the identity of a run folder written before training
(:class:`RunInputs`, ``run_inputs.json``: what a folder guard compares), and what a derived
file was built from (:class:`BuiltFrom`, in ``evaluation.json``, ``report.json`` and the
model card), with :func:`run_built_from` and :func:`built_from_differences` to check it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from medtl.artifacts.backbone import BackboneConfig, empty_as_none
from medtl.artifacts.base import Artifact, DocumentModel
from medtl.artifacts.types import Count, Flag

__all__ = [
    "BuiltFrom",
    "PhaseSummary",
    "ProvenanceMismatch",
    "RunEnvironment",
    "RunInputs",
    "RunSummary",
    "SourceDescription",
    "SourceOrigin",
    "StartingWeights",
    "built_from_differences",
    "check_run_folder",
    "file_sha256",
    "require_same_source",
    "run_built_from",
]

_SHA256 = r"^[0-9a-f]{64}$"
#: who stated a run's source domain and task
SourceOrigin = Literal["weights card", "experiment config", "not stated", "no starting weights"]


class StartingWeights(DocumentModel):
    """The weights a run started from, as imported.

    Attributes:
        file: the file read (its name only: local folders stay out of cards).
        package: ``name@version`` when the weights were a model package (registered or a
            folder), else ``None``.
        sha256: SHA-256 of the weights file (of every file, for a folder without
            ``weights.safetensors``).
        format: the import format used (``native``, ``torchvision``, ``medicalnet``, ...).
        layout: the detected key layout (e.g. ``2D ResNet (basic blocks [2, 2, 2, 2], ...)``).
        loaded_fraction: fraction of backbone parameter elements that loaded.
        load_report: the import's one-paragraph report.
        has_card: the weights carry a model card (a package's ``model.json`` or medtl's
            backbone config in the safetensors header).
    """

    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = ("package", "layout", "has_card")

    file: str = Field(min_length=1)
    package: str | None = None
    sha256: str = Field(pattern=_SHA256)
    format: str = Field(min_length=1)
    layout: str | None = None
    loaded_fraction: float = Field(ge=0.0, le=1.0)
    load_report: str = ""
    has_card: Flag = False


class SourceDescription(DocumentModel):
    """The source domain and task of a run's starting weights, and who stated them.

    Attributes:
        domain: e.g. ``"MRI brain T1"`` (``None``: not stated, or no starting weights).
        task: e.g. ``"brain tissue classification"``.
        stated_by: ``"weights card"`` (the weights' own model card), ``"experiment config"``
            (the config's free text: the weights carry no card that states it),
            ``"not stated"`` (neither does) or ``"no starting weights"`` (trained from
            scratch: no source).
    """

    domain: str | None = None
    task: str | None = None
    stated_by: SourceOrigin


class RunEnvironment(DocumentModel):
    """Where and with what a run was computed.

    Attributes:
        versions: package versions (python, medtl, torch, monai, numpy, pydicom, ...).
        platform: operating system and machine.
        git_commit: commit of the medtl checkout the run used (``None`` outside a checkout).
        git_dirty: that checkout had uncommitted changes to tracked files.
        device: the device the model ran on (``cpu``, ``cuda:0``, ``mps``).
        device_name: the accelerator's name (``None`` on CPU).
        precision: ``fp32``, ``bf16 autocast`` or ``fp16 autocast``.
        threads: intra-op CPU threads (``torch.get_num_threads()``).
        cpu_capability: the CPU kernels torch dispatched to
            (``torch.backends.cpu.get_cpu_capability()``, e.g. ``AVX2``, ``AVX512``).
        world_size: processes that trained together (DDP).
    """

    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = ("git_commit", "git_dirty", "device_name")

    versions: dict[str, str] = Field(default_factory=dict)
    platform: str = ""
    git_commit: str | None = None
    git_dirty: bool | None = None
    device: str = Field(min_length=1)
    device_name: str | None = None
    precision: str = Field(min_length=1)
    threads: int = Field(ge=1)
    cpu_capability: str | None = None
    world_size: int = Field(1, ge=1)


class RunInputs(Artifact):
    """``run_inputs.json``: the identity of a run folder, written before training starts.

    A folder guard (:mod:`medtl.transfer.run_folder`) compares it with a new run's before
    anything is written, so results of two configs are never mixed in one folder.

    Attributes:
        name: the experiment name.
        config_hash: short hash of the resolved experiment config.
        data_hash: short hash of the dataset manifest.
        weights_sha256: SHA-256 of the starting weights (``None``: none are loaded).
    """

    SCHEMA_VERSION: ClassVar[int] = 1
    FILE: ClassVar[str] = "run_inputs.json"
    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = ("weights_sha256",)

    schema_version: int = 1
    name: str = Field(min_length=1)
    config_hash: str = Field(min_length=1)
    data_hash: str = Field(min_length=1)
    weights_sha256: str | None = Field(None, pattern=_SHA256)


class BuiltFrom(DocumentModel):
    """What a derived file (evaluation, report, model package) was built from.

    Attributes:
        run: the run name.
        config_hash: the run's config hash.
        data_hash: the run's data hash.
        weights_sha256: SHA-256 of the run's starting weights (``None``: none).
        model_sha256: SHA-256 of the run's trained weights, ``model.safetensors``
            (``None``: the run has no network weights, e.g. a feature-head study point).
        predictions_sha256: SHA-256 of the run's ``predictions.csv``.
    """

    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = (
        "config_hash",
        "data_hash",
        "weights_sha256",
        "model_sha256",
    )

    run: str = Field(min_length=1)
    config_hash: str | None = None
    data_hash: str | None = None
    weights_sha256: str | None = Field(None, pattern=_SHA256)
    model_sha256: str | None = Field(None, pattern=_SHA256)
    predictions_sha256: str = Field(pattern=_SHA256)


class PhaseSummary(DocumentModel):
    """One training phase of a strategy (e.g. head, then fine-tune)."""

    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = (
        "best_epoch",
        "best_metric",
        "monitor",
        "stopped_early",
    )

    run_dir: str | None = None
    epochs: Count
    best_epoch: Count | None = None
    best_metric: float | None = None
    monitor: str | None = None
    stopped_early: Flag = False


class RunSummary(Artifact):
    """``summary.json`` of a run folder (written by :func:`medtl.transfer.run_experiment`).

    Attributes:
        name: experiment name.
        strategy: transfer strategy run.
        num_outputs: logits of the head (1 = binary).
        label_names: class names.
        label_fraction: fraction of training patients kept.
        train_images: training images used.
        train_patients: training patients used.
        data_seconds: time spent building datasets.
        train_seconds: training time.
        total_seconds: wall time of the run.
        best_val_metric: best monitored validation metric (``None`` when never finite).
        phases: the strategy's phases.
        trainable_parameters: parameters trained in the last phase.
        total_parameters: all parameters.
        model_config: the backbone config (what rebuilds the network).
        weights_load_report: how the starting weights were imported (empty for scratch).
        config_hash: short hash of the resolved experiment config.
        data_hash: short hash of the dataset manifest.
        starting_weights: the starting weights' file, hash, layout and load report
            (``None``: none were loaded).
        source: the source domain and task, and who stated them.
        environment: versions, commit, device, precision, threads, CPU capability.
        config_warnings: settings of the config that could not apply, and why.

    Runs written before provenance was recorded lack the last four (``None`` / empty).
    """

    SCHEMA_VERSION: ClassVar[int] = 1
    FILE: ClassVar[str] = "summary.json"
    REQUIRED_IN_FILE: ClassVar[tuple[str, ...]] = (
        "label_names",
        "label_fraction",
        "best_val_metric",
        "phases",
        "trainable_parameters",
        "total_parameters",
        "model_config_",
        "weights_load_report",
        "config_hash",
        "data_hash",
    )

    schema_version: int = 1
    name: str = Field(min_length=1)
    strategy: str = Field(min_length=1)
    num_outputs: int = Field(gt=0)
    label_names: list[str] = Field(default_factory=list)
    label_fraction: float = Field(1.0, gt=0.0, le=1.0)
    train_images: Count
    train_patients: Count
    data_seconds: float = Field(ge=0.0)
    train_seconds: float = Field(ge=0.0)
    total_seconds: float = Field(ge=0.0)
    best_val_metric: float | None = None
    phases: list[PhaseSummary] = Field(default_factory=list)
    trainable_parameters: Count | None = None
    total_parameters: Count | None = None
    model_config_: BackboneConfig | None = Field(None, alias="model_config")
    weights_load_report: dict[str, Any] = Field(default_factory=dict)
    config_hash: str | None = None
    data_hash: str | None = None
    starting_weights: StartingWeights | None = None
    source: SourceDescription | None = None
    environment: RunEnvironment | None = None
    config_warnings: list[str] = Field(default_factory=list)

    model_config = Artifact.model_config | {"populate_by_name": True, "serialize_by_alias": True}

    @classmethod
    def upgrade(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        # Version 0 could write an unknown backbone preprocessing as {}; it is None now.
        backbone = data.get("model_config")
        if isinstance(backbone, dict) and "preprocessing" in backbone:
            data["model_config"] = {
                **backbone,
                "preprocessing": empty_as_none(backbone["preprocessing"]),
            }
        return data

    @property
    def backbone(self) -> BackboneConfig | None:
        """The backbone config (``model_config`` in the file)."""
        return self.model_config_

    @property
    def weights_sha256(self) -> str | None:
        """SHA-256 of the starting weights (``None``: none loaded, or not recorded)."""
        return self.starting_weights.sha256 if self.starting_weights is not None else None


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file, read in 1 MiB chunks.

    Args:
        path: the file.

    Returns:
        64 hex digits.
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def run_built_from(run_dir: str | Path, summary: RunSummary | None = None) -> BuiltFrom:
    """What a run folder holds now: its hashes, as derived files record them.

    Args:
        run_dir: the run folder (``summary.json`` and ``predictions.csv`` present).
        summary: the run's summary when already read.

    Returns:
        The run's :class:`BuiltFrom`.

    Raises:
        ArtifactError: ``summary.json`` is missing or invalid.
        FileNotFoundError: no ``predictions.csv``.
    """
    run = Path(run_dir)
    summary = summary if summary is not None else RunSummary.read(run / RunSummary.FILE)
    model = run / "model.safetensors"
    return BuiltFrom(
        run=summary.name,
        config_hash=summary.config_hash,
        data_hash=summary.data_hash,
        weights_sha256=summary.weights_sha256,
        model_sha256=file_sha256(model) if model.is_file() else None,
        predictions_sha256=file_sha256(run / "predictions.csv"),
    )


_LABELS = {
    "run": "run",
    "config_hash": "config hash",
    "data_hash": "data hash",
    "weights_sha256": "starting weights sha256",
    "model_sha256": "trained weights sha256",
    "predictions_sha256": "predictions sha256",
}


def _short(value: str | None) -> str:
    if value is None:
        return "none"
    return value[:12] if len(value) == 64 else value


def built_from_differences(recorded: BuiltFrom, current: BuiltFrom) -> list[str]:
    """The fields in which a derived file's record differs from the run as it is now.

    Args:
        recorded: what the derived file says it was built from.
        current: :func:`run_built_from` of the run folder now.

    Returns:
        e.g. ``["config hash 1a2b3c4d5e6f7a8b -> 9c8d7e6f5a4b3c2d", "trained weights sha256
        0f1e2d3c4b5a -> ..."]``; empty when they match.
    """
    out = []
    for key, label in _LABELS.items():
        old, new = getattr(recorded, key), getattr(current, key)
        if old != new:
            out.append(f"{label} {_short(old)} -> {_short(new)}")
    return out


class ProvenanceMismatch(ValueError):
    """A derived file was built from other results than its run folder holds now, or the
    folder's own files come from two runs."""


def require_same_source(
    recorded: BuiltFrom | None, current: BuiltFrom, what: str, fix: str
) -> None:
    """Refuse a derived file built from other results than the run folder holds now.

    Args:
        recorded: what the file says it was built from (``None``: not recorded; accepted).
        current: :func:`run_built_from` of the folder now.
        what: the file, for the message (e.g. ``"runs/a/report.html"``).
        fix: the next step, for the message (e.g. ``"rebuild it with medtl report runs/a"``).

    Raises:
        ProvenanceMismatch: they differ (the message names each differing hash).
    """
    if recorded is None:
        return
    diffs = built_from_differences(recorded, current)
    if diffs:
        raise ProvenanceMismatch(
            f"{what} was built from other results than the run folder holds now "
            f"({'; '.join(diffs)}): {fix}"
        )


def check_run_folder(run_dir: str | Path, summary: RunSummary) -> None:
    """Refuse a run folder whose ``summary.json`` is not of the run it last started.

    ``run_inputs.json`` is written when a run starts and ``summary.json`` when it ends: a
    run of another config killed in a folder leaves the previous run's summary, predictions
    and weights beside its own identity.

    Args:
        run_dir: the run folder.
        summary: its ``summary.json``.

    Raises:
        ProvenanceMismatch: the two disagree.
    """
    path = Path(run_dir) / RunInputs.FILE
    if not path.is_file():
        return  # written before identities were recorded
    inputs = RunInputs.read(path)
    pairs = [
        ("config hash", summary.config_hash, inputs.config_hash),
        ("data hash", summary.data_hash, inputs.data_hash),
    ]
    if summary.starting_weights is not None:
        pairs.append(("starting weights sha256", summary.weights_sha256, inputs.weights_sha256))
    diffs = [f"{label} {_short(a)} vs {_short(b)}" for label, a, b in pairs if a != b]
    if diffs:
        raise ProvenanceMismatch(
            f"{run_dir} mixes two runs: its summary.json is of another run than the one started "
            f"there last ({'; '.join(diffs)}; summary vs run_inputs.json). Finish that run "
            "(medtl finetune ... --resume) or train again with --overwrite"
        )
