"""Import and validate a user's own dataset manifest (CSV or JSON).

For JSRT, NODE21, ChestX-ray14, LIDC-derived sets or any table of image paths and labels:
``import_manifest`` checks every row and reports **every** problem at once (missing files,
unreadable scans, bad labels, bad splits, patients in several splits, duplicates), prints
class counts per split, assigns patient-grouped stratified splits when the table has none,
and writes a normalised ``manifest.json`` when nothing blocks it.

CSV columns: ``image,label,patient_id[,split]`` plus optional nodule columns
(``nodule_x,nodule_y``, ``box_x0..box_y1``, ``nodule_diameter_mm``, ``nodule_type``,
``location``, ``conspicuity_cnr``), ``modality``, ``mask``; other columns become
``attributes``. ``label`` is an integer or, with ``label_names``, a class name. Image paths
in the table are relative to ``--root`` (absolute paths inside the root are accepted). The
written manifest holds them relative to its own folder (``../`` when it is written outside
the root), or absolute with ``absolute_paths=True``, so it finds its images wherever
``--out`` puts it.

Messages name rows (1 = first data row) and the paths the user gave, never patient IDs.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import ValidationError

from medtl.data.manifest import (
    SPLITS,
    Manifest,
    ManifestRecord,
    read_csv_rows,
    row_to_record,
)

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("image", "label", "patient_id")
_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "calibration": "calibration",
    "calib": "calibration",
    "cal": "calibration",
    "test": "test",
    "testing": "test",
    "holdout": "test",
}


@dataclass
class Problem:
    """One finding. ``row`` is 1-based over data rows (0 = the whole file)."""

    severity: Literal["error", "warning"]
    row: int
    column: str
    message: str

    def __str__(self) -> str:
        where = f"row {self.row}" if self.row else "file"
        col = f" [{self.column}]" if self.column else ""
        return f"{self.severity}: {where}{col}: {self.message}"


@dataclass
class ImportReport:
    """Result of :func:`import_manifest`.

    Attributes:
        source: the file imported.
        n_rows: data rows read.
        problems: every finding (errors block the import; warnings do not).
        counts: ``{split: {label name: n}}`` of the valid rows.
        splits_assigned: True when medtl assigned the splits.
        manifest: the normalised manifest (``None`` when errors block it).
        written: path of the written ``manifest.json`` (``None`` if not written).
    """

    source: Path
    n_rows: int = 0
    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    splits_assigned: bool = False
    manifest: Manifest | None = None
    written: Path | None = None

    @property
    def errors(self) -> list[Problem]:
        """Problems of severity ``error``."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def ok(self) -> bool:
        """True when no error was found."""
        return not self.errors

    def add(self, row: int, column: str, message: str, severity: str = "error") -> None:
        """Record a problem."""
        self.problems.append(Problem(severity, row, column, message))  # type: ignore[arg-type]

    def render(self) -> Any:
        """A :class:`rich.console.Group` with the problems table and the class counts."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        parts: list[Any] = []
        status = "OK" if self.ok else f"{len(self.errors)} error(s)"
        n_warn = len(self.problems) - len(self.errors)
        parts.append(Text(f"{self.source.name}: {self.n_rows} rows, {status}, {n_warn} warning(s)"))
        if self.problems:
            table = Table(title="Problems", show_lines=False)
            for col in ("severity", "row", "column", "message"):
                table.add_column(col, overflow="fold")
            for p in self.problems:
                style = "red" if p.severity == "error" else "yellow"
                table.add_row(Text(p.severity, style=style), str(p.row or "-"), p.column, p.message)
            parts.append(table)
        if self.counts:
            labels = sorted({lab for c in self.counts.values() for lab in c})
            table = Table(title="Class counts per split" + (" (assigned)" * self.splits_assigned))
            table.add_column("split")
            for lab in labels:
                table.add_column(lab, justify="right")
            for split, c in self.counts.items():
                table.add_row(split, *[str(c.get(lab, 0)) for lab in labels])
            parts.append(table)
        return Group(*parts)


def _relative_image(value: str, root: Path) -> tuple[str | None, str | None]:
    """Return ``(relative posix path, None)`` or ``(None, problem)``."""
    text = value.strip().replace("\\", "/")
    if not text:
        return None, "empty image path"
    path = Path(text)
    if path.is_absolute():
        try:
            text = path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            return None, f"absolute path outside the root folder: {value}"
    if ".." in PurePosixPath(text).parts:
        return None, f"path leaves the root folder: {value}"
    return PurePosixPath(text).as_posix(), None


def _parse_label(value: str, label_names: list[str] | None) -> tuple[int | None, str | None]:
    text = value.strip()
    if text == "":
        return None, "missing label"
    if label_names and text in label_names:
        return label_names.index(text), None
    try:
        number = float(text)
    except ValueError:
        names = f" (known: {', '.join(label_names)})" if label_names else ""
        return None, f"label {text!r} is not an integer or a known class name{names}"
    if not number.is_integer() or number < 0:
        return None, f"label {text!r} must be a non-negative integer"
    if label_names and int(number) >= len(label_names):
        return None, f"label {int(number)} is out of range for {len(label_names)} classes"
    return int(number), None


def _read_rows(path: Path, report: ImportReport) -> list[dict[str, str]]:
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            report.add(0, "", f"cannot read JSON: {err}")
            return []
        items = data.get("records", []) if isinstance(data, dict) else data
        if not isinstance(items, list):
            report.add(0, "", "JSON must be a manifest object or a list of records")
            return []
        rows = []
        for item in items:
            if not isinstance(item, dict):
                rows.append({})
                continue
            row = {k: v for k, v in item.items() if not isinstance(v, dict | list | tuple)}
            row = {k: "" if v is None else str(v) for k, v in row.items()}
            for key, cols in (
                ("nodule_center_xy", ("nodule_x", "nodule_y")),
                ("nodule_box_xyxy", ("box_x0", "box_y0", "box_x1", "box_y1")),
            ):
                if isinstance(item.get(key), list | tuple):
                    row.update({c: str(v) for c, v in zip(cols, item[key], strict=False)})
            for k, v in (item.get("attributes") or {}).items():
                row[str(k)] = str(v)
            rows.append(row)
        return rows
    try:
        return read_csv_rows(path)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        report.add(0, "", f"cannot read CSV: {err}")
        return []


def import_manifest(
    path: str | Path,
    root: str | Path,
    *,
    name: str | None = None,
    task: str = "",
    label_names: list[str] | None = None,
    modality: str | None = None,
    fractions: dict[str, float] | None = None,
    seed: int = 0,
    read_images: bool = True,
    out: str | Path | None = None,
    progress: bool = False,
    absolute_paths: bool = False,
) -> ImportReport:
    """Validate a user manifest and write the normalised ``manifest.json``.

    Args:
        path: CSV (``image,label,patient_id[,split,...]``) or JSON (a manifest or a list of
            records).
        root: folder the image paths are relative to.
        name: dataset name (default: the file stem).
        task: task name stored in the manifest.
        label_names: class names (index = label); CSV labels may then be names.
        modality: modality for rows without a ``modality`` column (default ``OT``).
        fractions: split fractions when splits must be assigned.
        seed: seed of the split assignment.
        read_images: load every image with :func:`medtl.io.load_scan` (slow on big sets).
            A scan that fails with :class:`~medtl.io.ScanError` is reported as unreadable;
            any other exception is a bug and propagates.
        out: where to write the manifest (default ``root/manifest.json``): a folder or a
            ``.json`` file; nothing is written when there are errors.
        progress: show a progress bar while reading images.
        absolute_paths: write absolute image paths instead of paths relative to the
            manifest's folder.

    Returns:
        The :class:`ImportReport` (its ``manifest`` is ``None`` when errors were found).
    """
    src = Path(path)
    ctx = _Context(
        root=Path(root), report=ImportReport(source=src), label_names=label_names,
        modality=modality, task=task,
    )  # fmt: skip
    rows = _read_table(src, ctx)
    assign = _check_split_column(rows, ctx.report)
    loader = _scan_loader() if read_images else None
    iterator: Any = enumerate(rows, start=1)
    if progress and read_images:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, total=len(rows), desc="checking images")
    parsed = [p for i, row in iterator if (p := _check_row(i, row, ctx, loader)) is not None]
    _check_patients(rows, ctx.report)
    report = ctx.report
    if report.ok and parsed:
        manifest = _build_manifest(parsed, ctx, src, name, bool(assign), fractions, seed)
        report.manifest = manifest
        report.counts = _counts(manifest)
        for split, missing in _missing_classes(manifest).items():
            report.add(0, "label", f"split {split} has no sample of {missing}", "warning")
        target = Path(out) if out is not None else ctx.root / "manifest.json"
        folder = target.parent if target.suffix.lower() == ".json" else target
        report.written = _relocated(manifest, ctx.root, folder, absolute_paths).save(target)
    elif parsed:
        report.counts = _counts_rows([r for _, r in parsed], label_names)
    return report


@dataclass
class _Context:
    """What every row check needs: where images live, the report, and the defaults."""

    root: Path
    report: ImportReport
    label_names: list[str] | None
    modality: str | None
    task: str
    missing_cols: list[str] = field(default_factory=list)
    seen_images: dict[str, int] = field(default_factory=dict)


def _scan_loader() -> Any:
    from medtl.io import load_scan

    return load_scan


def _read_table(src: Path, ctx: _Context) -> list[dict[str, str]]:
    """Read the rows and record file-level problems (missing file, root or columns)."""
    report = ctx.report
    if not ctx.root.is_dir():
        report.add(0, "", f"root folder not found: {ctx.root}")
    rows = _read_rows(src, report) if src.is_file() else []
    if not src.is_file():
        report.add(0, "", f"manifest file not found: {src}")
    report.n_rows = len(rows)
    if src.is_file() and not rows and report.ok:
        report.add(0, "", "the file has no data rows")
    columns = set().union(*(r.keys() for r in rows)) if rows else set()
    ctx.missing_cols = [c for c in REQUIRED_COLUMNS if rows and c not in columns]
    for col in ctx.missing_cols:
        report.add(0, col, f"required column {col!r} is missing (columns: {sorted(columns)})")
    return rows


def _check_split_column(rows: list[dict[str, str]], report: ImportReport) -> bool:
    """Return True when medtl must assign the splits (no row has one)."""
    has_split = [bool(r.get("split", "").strip()) for r in rows]
    if rows and any(has_split) and not all(has_split):
        empty = [i + 1 for i, h in enumerate(has_split) if not h]
        report.add(0, "split", f"{len(empty)} row(s) have no split ({_rows(empty)}); give a "
                   "split for every row or for none (medtl then assigns them)")  # fmt: skip
    return bool(rows) and not any(has_split)


def _check_image(
    i: int, row: dict[str, str], ctx: _Context, loader: Any
) -> tuple[str | None, bool]:
    """Check row ``i``'s image path (and scan, with a loader); return ``(path, ok)``."""
    from medtl.io import ScanError

    rel, err = _relative_image(row.get("image", ""), ctx.root)
    if err and "image" not in ctx.missing_cols:
        ctx.report.add(i, "image", err)
        return rel, False
    if rel is None:
        return None, True
    ok = True
    if rel in ctx.seen_images:
        ctx.report.add(i, "image", f"duplicate of row {ctx.seen_images[rel]}: {rel}")
        ok = False
    ctx.seen_images.setdefault(rel, i)
    file = ctx.root / rel
    if not file.exists():
        ctx.report.add(i, "image", f"file not found: {rel}")
        return rel, False
    if loader is not None:
        try:
            loader(file, modality=row.get("modality") or ctx.modality)
        except ScanError as exc:  # anything else is a bug in medtl: let it fail loudly
            ctx.report.add(i, "image", f"unreadable scan {rel}: {exc}")
            ok = False
    return rel, ok


def _check_row(
    i: int, row: dict[str, str], ctx: _Context, loader: Any
) -> tuple[int, dict[str, str]] | None:
    """Check one data row; return ``(row number, normalised row)`` when it is valid."""
    report, missing = ctx.report, ctx.missing_cols
    rel, ok = _check_image(i, row, ctx, loader)
    label, err = _parse_label(row.get("label", ""), ctx.label_names)
    if err and "label" not in missing:
        report.add(i, "label", err)
        ok = False
    if not row.get("patient_id", "").strip() and "patient_id" not in missing:
        report.add(i, "patient_id", "missing patient_id")
        ok = False
    split = row.get("split", "").strip().lower()
    if split:
        if split not in _SPLIT_ALIASES:
            report.add(i, "split", f"unknown split {row['split']!r} (use {', '.join(SPLITS)})")
            ok = False
        else:
            split = _SPLIT_ALIASES[split]
    if not (ok and not missing and rel is not None and label is not None):
        return None
    clean = dict(row, image=rel, label=str(label), split=split or "train")
    try:
        row_to_record(clean, modality=ctx.modality or "OT", task=ctx.task)
    except (ValidationError, ValueError) as exc:
        report.add(i, _field_of(exc), _short(exc))
        return None
    return i, clean


def _build_manifest(
    parsed: list[tuple[int, dict[str, str]]],
    ctx: _Context,
    src: Path,
    name: str | None,
    assign: bool,
    fractions: dict[str, float] | None,
    seed: int,
) -> Manifest:
    from medtl.data.splits import assign_splits

    if assign:
        splits = assign_splits(
            [r["patient_id"] for _, r in parsed], [int(r["label"]) for _, r in parsed],
            fractions, seed,
        )  # fmt: skip
        for (_, r), s in zip(parsed, splits, strict=True):
            r["split"] = s
        ctx.report.splits_assigned = True
    modality, task = ctx.modality, ctx.task
    records = [row_to_record(r, modality=modality or "OT", task=task) for _, r in parsed]
    return Manifest(
        name=name or src.stem,
        task=task,
        label_names=list(ctx.label_names or []),
        modality=modality or _common_modality(records),
        generator="medtl data import",
        simulated=False,
        description=f"Imported from {src.name} by medtl data import."
        + (" Splits assigned by medtl (patient-grouped, label-stratified)." * assign),
        records=records,
        seed=seed if assign else None,
    )


def _relocated(manifest: Manifest, root: Path, folder: Path, absolute: bool) -> Manifest:
    """The manifest with root-relative paths rewritten to resolve from ``folder``."""

    def move(rel: str | None) -> str | None:
        if rel is None:
            return None
        file = os.path.abspath(root / rel)
        if absolute:
            return Path(file).as_posix()
        return Path(os.path.relpath(file, os.path.abspath(folder))).as_posix()

    if not absolute and os.path.abspath(folder) == os.path.abspath(root):
        return manifest
    records = [
        r.model_copy(update={"image": move(r.image), "mask": move(r.mask)})
        for r in manifest.records
    ]
    return manifest.model_copy(update={"records": records})


def _rows(numbers: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(n) for n in numbers[:limit])
    return f"rows {shown}" + (f" and {len(numbers) - limit} more" if len(numbers) > limit else "")


def _field_of(exc: Exception) -> str:
    if isinstance(exc, ValidationError) and exc.errors():
        loc = exc.errors()[0].get("loc", ())
        return ".".join(str(x) for x in loc)
    return ""


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{e.get('msg')}" for e in exc.errors())
    return str(exc)


def _check_patients(rows: list[dict[str, str]], report: ImportReport) -> None:
    by_patient: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, row in enumerate(rows, start=1):
        pid = row.get("patient_id", "").strip()
        split = _SPLIT_ALIASES.get(row.get("split", "").strip().lower())
        if pid and split:
            by_patient[pid][split].append(i)
    for splits in by_patient.values():
        if len(splits) > 1:
            detail = "; ".join(f"{s}: {_rows(r, 4)}" for s, r in splits.items())
            first = min(min(r) for r in splits.values())
            report.add(first, "patient_id", f"one patient is in several splits ({detail})")


def _common_modality(records: list[ManifestRecord]) -> str:
    mods = {r.modality for r in records}
    return mods.pop() if len(mods) == 1 else "OT"


def _label_name(manifest: Manifest, label: int) -> str:
    names = manifest.label_names
    return names[label] if label < len(names) else str(label)


def _counts(manifest: Manifest) -> dict[str, dict[str, int]]:
    return {
        split: {_label_name(manifest, lab): n for lab, n in c.items()}
        for split, c in manifest.class_counts().items()
    }


def _counts_rows(rows: list[dict[str, str]], names: list[str] | None) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        lab = int(r["label"])
        key = names[lab] if names and lab < len(names) else str(lab)
        split = r.get("split") or "unassigned"
        out.setdefault(split, {}).setdefault(key, 0)
        out[split][key] += 1
    return out


def _missing_classes(manifest: Manifest) -> dict[str, str]:
    all_labels = sorted({r.label for r in manifest.records})
    out = {}
    for split, c in manifest.class_counts().items():
        miss = [_label_name(manifest, lab) for lab in all_labels if lab not in c]
        if miss:
            out[split] = ", ".join(miss)
    return out


__all__ = ["ImportReport", "Problem", "import_manifest"]
