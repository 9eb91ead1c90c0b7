"""Manifests -> datasets: decode with ``load_scan``, preprocess once (cached), augment after.

Every sample is a dict ``{"image": tensor (C, *spatial), "label": int, "index": int}``;
``index`` is the record's position in the manifest, so predictions can be joined back to
patients, nodule sizes and other attributes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medtl.data.manifest import Manifest, ManifestRecord, require_images, resolve_image

logger = logging.getLogger(__name__)


class LoadAndPreprocess:
    """Deterministic stage: path -> ``load_scan`` -> channel-first -> preprocessing.

    Picklable (DataLoader workers, disk cache keys) and described by its ``repr``.
    """

    def __init__(self, preprocessing: Any, spec_json: str) -> None:
        self.preprocessing = preprocessing
        self.spec_json = spec_json

    def __repr__(self) -> str:
        return f"LoadAndPreprocess({self.spec_json})"

    def _geometry(self) -> Any:
        """The spec when it reorients/resamples with the affine (the merlin preset), else None."""
        if not hasattr(self, "_geometry_spec"):
            from medtl.artifacts.preprocessing import PreprocessingSpec
            from medtl.data.scan_input import needs_geometry

            spec = PreprocessingSpec.model_validate_json(self.spec_json)
            self._geometry_spec = spec if needs_geometry(spec) else None
        return self._geometry_spec

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        from medtl.io import load_scan

        scan = load_scan(item["image"])
        array: Any = scan.array[None].astype(np.float32)
        geometry = self._geometry()
        if geometry is not None:
            from medtl.data.scan_input import spatial_resample

            array = spatial_resample(scan, geometry)
        image = self.preprocessing(array)
        return {"image": image, "label": item["label"], "index": item["index"]}


class Augment:
    """Random stage: applies an augmentation transform to ``item["image"]``."""

    def __init__(self, transform: Any) -> None:
        self.transform = transform

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        import torch

        out = dict(item)
        out["image"] = torch.as_tensor(self.transform(item["image"])).float()
        return out


def subsample_patients(
    records: Sequence[tuple[int, ManifestRecord]], fraction: float, seed: int
) -> list[tuple[int, ManifestRecord]]:
    """Keep about ``fraction`` of the patients of each label (patient-grouped, seeded).

    Patients are stratified by their majority label, so a 10% subset keeps both classes.
    The same seed always keeps the same patients, and a smaller fraction's patients are
    a subset of a larger one's (nested learning-curve subsets).
    """
    if fraction >= 1.0:
        return list(records)
    if fraction <= 0:
        raise ValueError("label fraction must be in (0, 1]")
    by_patient: dict[str, list[int]] = {}
    for _, record in records:
        by_patient.setdefault(record.patient_id, []).append(record.label)
    strata: dict[int, list[str]] = {}
    for patient, labels in sorted(by_patient.items()):
        strata.setdefault(int(np.bincount(labels).argmax()), []).append(patient)
    rng = np.random.default_rng(seed)
    keep: set[str] = set()
    for _, patients in sorted(strata.items()):
        order = rng.permutation(len(patients))
        n = max(1, round(fraction * len(patients)))
        keep.update(patients[i] for i in order[:n])
    return [(i, r) for i, r in records if r.patient_id in keep]


class GroupedBatchSampler:
    """Batches made of whole groups (e.g. a nodule image and its nodule-free twin).

    Each epoch shuffles the groups (seeded by ``seed`` and the epoch), then fills batches of
    about ``batch_size`` images with whole groups. Putting a positive and its negative twin
    in one batch gives the gradient the difference between them, which is what a detector
    of small lesions must learn.
    """

    def __init__(self, groups: Sequence[Sequence[int]], batch_size: int, seed: int = 0) -> None:
        self.groups = [list(g) for g in groups if len(g)]
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch's order (called by the training engine)."""
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        batches, current = [], []
        for g in rng.permutation(len(self.groups)):
            current.extend(self.groups[g])
            if len(current) >= self.batch_size:
                batches.append(current)
                current = []
        if current:
            batches.append(current)
        return batches

    def __iter__(self):
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())


def group_positions(records: Sequence[ManifestRecord], attribute: str) -> list[list[int]]:
    """Positions (in ``records`` order) grouped by a record attribute; ungrouped stay alone."""
    groups: dict[str, list[int]] = {}
    singles: list[list[int]] = []
    for pos, record in enumerate(records):
        key = record.attributes.get(attribute)
        if key is None:
            singles.append([pos])
        else:
            groups.setdefault(str(key), []).append(pos)
    return list(groups.values()) + singles


@dataclass
class SplitDatasets:
    """Datasets of one manifest. ``train_plain`` has no augmentation."""

    manifest: Manifest
    root: Path
    train: Any
    train_plain: Any
    val: Any
    calibration: Any | None
    test: Any | None
    indices: dict[str, list[int]]


def build_datasets(
    dataset_dir: str | Path,
    preprocessing_spec: Any,
    augmentation_spec: Any | None = None,
    *,
    cache: str = "memory",
    cache_dir: str | Path | None = None,
    label_fraction: float = 1.0,
    seed: int = 0,
) -> SplitDatasets:
    """Datasets for the train/val/calibration/test splits of a dataset folder.

    Args:
        dataset_dir: folder holding ``manifest.json``, or a manifest ``.json`` file (image
            paths resolve against the manifest's folder).
        preprocessing_spec: a :class:`medtl.artifacts.PreprocessingSpec`.
        augmentation_spec: a :class:`medtl.transfer.presets.AugmentationSpec` (training only).
        cache: ``memory``, ``disk`` or ``none`` (see :func:`medtl.training.data.cached_dataset`).
        cache_dir: disk cache folder.
        label_fraction: fraction of training patients kept (learning curves).
        seed: seeds subsampling and augmentation.

    Returns:
        :class:`SplitDatasets`; ``indices`` maps each split to its manifest record indices.

    Raises:
        MissingImagesError: listed images are not on disk (one message naming them).
    """
    from medtl.data.preprocessing import build_augmentation, build_preprocessing
    from medtl.training.data import cached_dataset

    manifest = Manifest.load(dataset_dir)
    root = require_images(manifest, dataset_dir)  # image paths resolve from its folder
    pre = LoadAndPreprocess(
        build_preprocessing(preprocessing_spec), preprocessing_spec.model_dump_json()
    )
    indexed = list(enumerate(manifest.records))
    splits: dict[str, list[tuple[int, ManifestRecord]]] = {}
    for split in ("train", "val", "calibration", "test"):
        splits[split] = [(i, r) for i, r in indexed if r.split == split]
    splits["train"] = subsample_patients(splits["train"], label_fraction, seed)
    if not splits["train"] or not splits["val"]:
        raise ValueError(f"{root} needs non-empty train and val splits")

    def items(split: str) -> list[dict[str, Any]]:
        return [
            {"image": str(resolve_image(root, r.image)), "label": int(r.label), "index": i}
            for i, r in splits[split]
        ]

    def make(split: str, random: Any = None) -> Any:
        if not splits[split]:
            return None
        sub = None if cache_dir is None else Path(cache_dir) / split
        return cached_dataset(
            items(split),
            pre,
            random,
            cache=cache if sub or cache != "disk" else "memory",
            cache_dir=sub,
        )

    augment = None
    if augmentation_spec is not None:
        augment = Augment(
            build_augmentation(
                augmentation_spec,
                preprocessing_spec.spatial_dims,
                seed=seed,
                spatial_size=preprocessing_spec.spatial_size,
            )
        )
    train_plain = make("train")
    # The augmented view shares the cached tensors: augmentation runs after the cache.
    train = _AugmentedView(train_plain, augment, seed) if augment is not None else train_plain
    return SplitDatasets(
        manifest=manifest,
        root=root,
        train=train,
        train_plain=train_plain,
        val=make("val"),
        calibration=make("calibration"),
        test=make("test"),
        indices={k: [i for i, _ in v] for k, v in splits.items()},
    )


class _AugmentedView:
    """A dataset view applying a random transform on top of another (cached) dataset.

    Each sample's augmentation is drawn from a seed of its own, a function of (``seed``,
    epoch, index) (:func:`medtl.training.seed.sample_seed`): the epoch comes with the index
    (:class:`medtl.training.sampling.SampleKey`) or from :meth:`set_epoch`. Which process or
    worker loads a sample, and in what order, does not change how it is augmented, so a
    DDP run augments as a single-process run does.
    """

    def __init__(self, base: Any, transform: Any, seed: int = 0) -> None:
        self.base = base
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch of indices that do not carry one (plain ``int``)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from medtl.training.seed import sample_seed, seed_transforms

        epoch = getattr(index, "epoch", self.epoch)
        seed_transforms(self.transform, sample_seed(self.seed, epoch, int(index)))
        return self.transform(self.base[index])
