"""DICOM series: group files, choose a series, sort slices, check geometry, stack.

:func:`load_dicom` is what :func:`medtl.io.load_scan` calls for a DICOM file, a series folder
or a zip of DICOM files.

Rules (what a reader of the resulting :class:`~medtl.io.scan.Scan` can rely on):

* Files that are not DICOM and DICOMDIR files are ignored (counted in a warning); non-image
  objects (SEG, SR, RTSTRUCT, KO, presentation states, objects without pixel data) among
  images are ignored too. A lone non-image object raises
  :class:`~medtl.io.errors.NonImageObjectError`.
* Files are grouped by SeriesInstanceUID. With several series, ``series_uid=`` (original or
  de-identified UID) chooses one; otherwise the series with the most image frames is loaded,
  with a warning naming the others (pseudonymised UIDs and counts only). A tie is refused
  with :class:`~medtl.io.errors.SeriesError` listing the candidates.
* Repeated SOP Instance UIDs (the same image twice) are loaded once.
* Slices are sorted by position along the slice normal (see :mod:`medtl.io.geometry`), never
  by InstanceNumber or file name; missing slices, non-uniform spacing, gantry tilt and
  duplicate positions are reported in ``Scan.warnings``. Mixed orientations, sizes or pixel
  spacings raise :class:`~medtl.io.errors.SeriesError`.
* One image gives a 2D scan ``(rows, columns)``; anything else a volume
  ``(slices, rows, columns)``.
* ``Scan.meta`` is built only from ``safe_meta(deidentify(first sorted header))`` plus
  ``series_choice``, ``number_of_files``, ``number_of_series``, ``transfer_syntax`` and
  ``photometric_interpretation``.
* Files are decoded in parallel threads (pydicom's C decoders and numpy release the GIL).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydicom.dataset import Dataset

from medtl.io.dicom import (
    check_image,
    looks_truncated,
    non_image_reason,
    read_with_notes,
    transfer_syntax,
)
from medtl.io.dicom_pixels import decode_frames, image_size
from medtl.io.errors import (
    CorruptScanError,
    ImageTooLargeError,
    NonImageObjectError,
    ScanError,
    SeriesError,
    UnsupportedFormatError,
    is_decoder_failure,
    log_unexpected,
)
from medtl.io.geometry import (
    FrameGeometry,
    frame_geometries,
    image_geometry,
    stack_positioned,
    stack_unpositioned,
)
from medtl.io.limits import DecodeLimits, check_series_size, resolve
from medtl.io.scan import Scan

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: Most threads used to read and decode files.
MAX_WORKERS = 8


def _map(func: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    if workers <= 1 or len(items) <= 1:
        return [func(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(func, items))


def _default_workers() -> int:
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


def load_dicom(
    sources: Sequence[Path | bytes],
    *,
    series_uid: str | None = None,
    max_workers: int | None = None,
    limits: DecodeLimits | None = None,
) -> Scan:
    """Load one DICOM file or the files of a series into a :class:`Scan`.

    Args:
        sources: file paths and/or file contents (e.g. a folder's files, or a zip's members
            read to bytes). Order does not matter.
        series_uid: the SeriesInstanceUID to load when the files hold several series; the
            original UID or its de-identified form (as shown in messages and ``meta``).
        max_workers: threads for reading and decoding (default: CPU count, at most 8).
        limits: size caps, checked from the headers before any pixel is decoded (default:
            :meth:`DecodeLimits.from_env`).

    Returns:
        A de-identified :class:`Scan` (float32 modality units, MONOCHROME2).

    Raises:
        ScanError: a subclass only, with a message that says what to do.

    Example:
        >>> scan = load_dicom(sorted(Path("series").iterdir()))  # doctest: +SKIP
        >>> scan.array.shape, scan.spacing  # doctest: +SKIP
        ((130, 512, 512), (2.5, 0.7, 0.7))
    """
    items = list(sources)
    if not items:
        raise UnsupportedFormatError("No DICOM files were given.")
    workers = max_workers if max_workers is not None else _default_workers()
    try:
        return _load(items, series_uid, workers, resolve(limits))
    except ScanError:
        raise
    except MemoryError as exc:
        raise ImageTooLargeError("The series is too large to load into memory.") from exc
    except BaseException as exc:  # Rust decoders (pyo3) panic as BaseException
        if not is_decoder_failure(exc):
            log_unexpected(logger, exc, "loading a DICOM series")
            raise
        # What pydicom/numpy raise on damaged input; the type helps support, the original
        # message is not shown because it may quote header values (PHI).
        raise CorruptScanError(
            f"The DICOM data could not be loaded ({type(exc).__name__}); a file is probably "
            "damaged. Export the series again."
        ) from exc


class _Item:
    """One readable DICOM file of the input."""

    __slots__ = ("ds", "frames", "index", "notes")

    def __init__(self, index: int, ds: Dataset, notes: list[str]) -> None:
        self.index = index
        self.ds = ds
        self.notes = notes
        self.frames = 1


def _where(index: int, total: int) -> str:
    return "The file" if total == 1 else f"File {index + 1} of {total}"


def _read_all(
    items: list[Path | bytes], workers: int, limits: DecodeLimits
) -> tuple[list[_Item], int]:
    total = len(items)

    def read(i: int) -> _Item | None:
        try:
            ds, notes = read_with_notes(items[i], limits=limits)
        except UnsupportedFormatError:
            if total == 1:
                raise
            return None
        except ScanError as exc:
            if total == 1:
                raise
            raise type(exc)(f"{_where(i, total)}: {exc}") from exc
        return _Item(i, ds, notes)

    results = _map(read, list(range(total)), workers)
    readable = [r for r in results if r is not None]
    return readable, total - len(readable)


def _count_phrase(counter: Counter[str]) -> str:
    return ", ".join(f"{n} {what}" for what, n in counter.most_common())


def _pseudonymous(uid: str) -> str:
    from medtl.io.deid import pseudonymous_uid

    return pseudonymous_uid(uid) if uid else "(no series UID)"


def _choose_series(
    images: list[_Item],
    series_uid: str | None,
) -> tuple[list[_Item], str, int]:
    groups: dict[str, list[_Item]] = {}
    for item in images:
        groups.setdefault(str(item.ds.get("SeriesInstanceUID", "") or ""), []).append(item)
    if series_uid is not None:
        wanted = series_uid.strip()
        for uid, members in groups.items():
            if wanted in (uid, _pseudonymous(uid)):
                return members, "requested series_uid", len(groups)
        raise SeriesError(
            f"No series with the requested UID among the files. Available: {_describe(groups)}."
        )
    if len(groups) == 1:
        return next(iter(groups.values())), "only series", 1
    counts = {uid: sum(i.frames for i in members) for uid, members in groups.items()}
    best = max(counts.values())
    winners = [uid for uid, c in counts.items() if c == best]
    if len(winners) > 1:
        raise SeriesError(
            f"The files hold {len(groups)} series and {len(winners)} of them have the most "
            f"images ({best}), so medtl cannot choose. Pass series_uid= one of: "
            f"{_describe(groups)}."
        )
    return groups[winners[0]], f"most images of {len(groups)} series", len(groups)


def _describe(groups: dict[str, list[_Item]]) -> str:
    parts = []
    for uid, members in groups.items():
        modality = str(members[0].ds.get("Modality", "") or "?")
        frames = sum(i.frames for i in members)
        parts.append(f"{_pseudonymous(uid)} ({modality}, {frames} images)")
    return "; ".join(parts)


def _dedupe(members: list[_Item]) -> tuple[list[_Item], int]:
    seen: set[str] = set()
    out = []
    for item in members:
        uid = str(item.ds.get("SOPInstanceUID", "") or "")
        if uid and uid in seen:
            continue
        seen.add(uid)
        out.append(item)
    return out, len(members) - len(out)


def _summarise(messages: Iterable[str]) -> list[str]:
    counts = Counter(messages)
    return [msg if n == 1 else f"{msg} ({n} files)" for msg, n in counts.items()]


def _load(
    items: list[Path | bytes], series_uid: str | None, workers: int, limits: DecodeLimits
) -> Scan:
    total = len(items)
    readable, not_dicom = _read_all(items, workers, limits)
    warnings: list[str] = []
    if not_dicom:
        warnings.append(f"{not_dicom} non-DICOM file(s) were ignored.")
    images: list[_Item] = []
    skipped: Counter[str] = Counter()
    for item in readable:
        reason = non_image_reason(item.ds)
        if reason is None:
            images.append(item)
        elif looks_truncated(item.ds):
            check_image(item.ds, _where(item.index, total))
        else:
            skipped[reason] += 1
    if not images:
        if total == 1 and skipped:
            check_image(readable[0].ds)
        if not readable:
            raise UnsupportedFormatError("None of the files is DICOM.")
        raise NonImageObjectError(
            f"None of the {len(readable)} DICOM files is an image ({_count_phrase(skipped)}). "
            "Select the image series (CT, MR, radiographs)."
        )
    if skipped:
        warnings.append(f"Ignored non-image DICOM objects: {_count_phrase(skipped)}.")
    for item in images:
        item.frames = image_size(item.ds, _where(item.index, total), limits)[2]
    members, choice, n_series = _choose_series(images, series_uid)
    if n_series > 1 and choice.startswith("most"):
        others = n_series - 1
        warnings.append(
            f"The files hold {n_series} series; loaded the one with the most images "
            f"and ignored {others} other(s). Pass series_uid= to choose another."
        )
    members, dupes = _dedupe(members)
    if dupes:
        warnings.append(f"{dupes} repeated file(s) (same SOP Instance UID) were loaded once.")
    for item in members:
        warnings.extend(item.notes)
    return _assemble(members, total, workers, warnings, choice, n_series, limits)


def _assemble(
    members: list[_Item],
    total: int,
    workers: int,
    warnings: list[str],
    choice: str,
    n_series: int,
    limits: DecodeLimits,
) -> Scan:
    sizes = {image_size(m.ds, _where(m.index, total), limits)[:2] for m in members}
    if len(sizes) > 1:
        raise SeriesError(
            f"The series mixes {len(sizes)} image sizes (rows x columns), so its images cannot "
            "be stacked. Export each reconstruction as its own series."
        )
    rows, cols = next(iter(sizes))
    check_series_size(sum(m.frames for m in members), rows, cols, limits, "The series")
    entries: list[tuple[int, int]] = []  # (member index, frame index)
    geoms: list[FrameGeometry] = []
    for mi, member in enumerate(members):
        for fi, geom in enumerate(frame_geometries(member.ds, member.frames)):
            entries.append((mi, fi))
            geoms.append(geom)
    n = len(entries)
    first_ds = members[0].ds
    if n == 1:
        decoded = decode_frames(first_ds, _where(members[0].index, total), limits=limits)
        spacing2, affine, geo_warn = image_geometry(geoms[0], first_ds)
        all_warnings = warnings + geo_warn + decoded.warnings
        return _scan(decoded.frames[0], spacing2, affine, first_ds, decoded.window,
                     all_warnings, (choice, n_series, 1))  # fmt: skip
    if all(g.position is not None and g.orientation is not None for g in geoms):
        volume = stack_positioned(geoms)
    elif len(members) == 1:
        volume = stack_unpositioned(geoms, first_ds)
    else:
        lacking = sum(g.position is None or g.orientation is None for g in geoms)
        raise SeriesError(
            f"{lacking} of the {n} images in the series have no slice position or orientation "
            "(for example several radiograph views), so they cannot be stacked into a volume. "
            "Load the images one at a time."
        )
    out, results = _decode_volume(members, entries, volume.order, (rows, cols), total,
                                  workers, limits)  # fmt: skip
    first_sorted = entries[int(volume.order[0])][0]
    head = members[first_sorted]
    all_warnings = warnings + volume.warnings + _summarise(w for r in results for w in r.warnings)
    if geoms[0].spacing_note:
        all_warnings.append(geoms[0].spacing_note)
    return _scan(out, volume.spacing, volume.affine, head.ds, results[first_sorted].window,
                 all_warnings, (choice, n_series, len(members)))  # fmt: skip


def _decode_volume(
    members: list[_Item],
    entries: list[tuple[int, int]],
    order: np.ndarray,
    size: tuple[int, int],
    total: int,
    workers: int,
    limits: DecodeLimits,
) -> tuple[np.ndarray, list[Any]]:
    """Decode every member's frames straight into their sorted slots of one volume."""
    n = len(entries)
    slot = np.empty(n, dtype=np.int64)
    slot[order] = np.arange(n)
    out = np.empty((n, *size), dtype=np.float32)
    starts: dict[int, int] = {}
    for k, (mi, _fi) in enumerate(entries):
        starts.setdefault(mi, k)

    def decode(mi: int) -> Any:
        member = members[mi]
        k0 = starts[mi]
        slots = slot[k0 : k0 + member.frames]
        where = _where(member.index, total)
        if np.array_equal(slots, np.arange(slots[0], slots[0] + member.frames)):
            view = out[slots[0] : slots[0] + member.frames]
            return decode_frames(member.ds, where, out=view, limits=limits)
        decoded = decode_frames(member.ds, where, limits=limits)
        out[slots] = decoded.frames
        return decoded

    return out, _map(decode, list(range(len(members))), workers)


def _scan(
    array: np.ndarray,
    spacing: tuple[float, ...],
    affine: np.ndarray,
    ds: Dataset,
    window: Any,
    warnings: list[str],
    counts: tuple[str, int, int],
) -> Scan:
    choice, n_series, n_files = counts
    modality = str(ds.get("Modality", "") or "OT").strip().upper() or "OT"
    meta = _meta(ds)
    meta.update(
        {
            "series_choice": choice,
            "number_of_series": n_series,
            "number_of_files": n_files,
            "transfer_syntax": transfer_syntax(ds).name,
            "photometric_interpretation": str(ds.get("PhotometricInterpretation", "") or ""),
        }
    )
    for message in warnings:
        logger.info("scan warning: %s", message)
    return Scan(
        array=np.ascontiguousarray(array, dtype=np.float32),
        spacing=tuple(float(s) for s in spacing),
        affine=np.asarray(affine, dtype=np.float64),
        modality=modality,
        source_format="dicom",
        meta=meta,
        window=window,
        warnings=list(dict.fromkeys(warnings)),
    )


def _meta(ds: Dataset) -> dict[str, Any]:
    from medtl.io.deid import deidentify, safe_meta

    header = Dataset()
    for elem in ds:
        if elem.tag.group != 0x7FE0:
            header.add(elem)
    header.file_meta = ds.file_meta
    return dict(safe_meta(deidentify(header)))
