"""Preview grid of a dataset: a PNG a person can judge at a glance.

``preview_grid`` samples records (balanced over labels, seeded), loads each image with
:func:`medtl.io.load_scan`, windows it per modality (the file's VOI window, the
mediastinum preset for CT, a robust percentile window otherwise), shows the middle slice
of volumes, draws nodule boxes / centres for CXR manifests and captions each tile with its
label name, split and pseudonymous patient.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

from medtl.data.manifest import Manifest, ManifestRecord, manifest_file, resolve_image
from medtl.io.errors import ScanError

logger = logging.getLogger(__name__)


def pick_records(
    manifest: Manifest, n: int, *, split: str | None = None, seed: int = 0
) -> list[ManifestRecord]:
    """Pick up to ``n`` records, round-robin over labels (seeded)."""
    rng = np.random.default_rng(seed)
    pool: dict[int, list[ManifestRecord]] = defaultdict(list)
    for r in manifest.records:
        if split is None or r.split == split:
            pool[r.label].append(r)
    queues = {lab: [recs[i] for i in rng.permutation(len(recs))] for lab, recs in pool.items()}
    picked: list[ManifestRecord] = []
    while len(picked) < n and any(queues.values()):
        for lab in sorted(queues):
            if queues[lab] and len(picked) < n:
                picked.append(queues[lab].pop())
    return picked


def _display(record: ManifestRecord, root: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    from medtl.io import load_scan
    from medtl.io.display import apply_window, default_window

    scan = load_scan(resolve_image(root, record.image), modality=record.modality)
    array = scan.array
    spacing = tuple(scan.spacing)
    window = default_window(scan)
    if array.ndim == 3:
        array = array[array.shape[0] // 2]
        spacing = spacing[1:]
    return apply_window(array, window), spacing


def preview_grid(
    dataset_dir: str | Path,
    out: str | Path,
    *,
    n: int = 16,
    cols: int = 4,
    split: str | None = None,
    seed: int = 0,
    manifest: Manifest | None = None,
) -> Path:
    """Render a grid of samples with labels and nodule marks to a PNG.

    Args:
        dataset_dir: folder with ``manifest.json`` (image paths are relative to it).
        out: PNG path to write.
        n: number of tiles.
        cols: tiles per row.
        split: only this split (default: all).
        seed: which samples (same seed, same grid).
        manifest: use this manifest instead of reading ``dataset_dir/manifest.json``.

    Returns:
        The written path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle, Rectangle

    man = manifest if manifest is not None else Manifest.load(dataset_dir)
    root = manifest_file(dataset_dir).parent  # image paths resolve from the manifest's folder
    records = pick_records(man, n, split=split, seed=seed)
    if not records:
        raise ValueError(f"no records to preview in {root}" + (f" (split {split})" * bool(split)))
    cols = max(1, min(cols, len(records)))
    rows = (len(records) + cols - 1) // cols
    fig = Figure(figsize=(2.6 * cols, 2.9 * rows), dpi=100)
    FigureCanvasAgg(fig)
    title = f"{man.name}: {man.task or 'dataset'} ({len(man.records)} samples"
    title += ", simulated)" if man.simulated else ")"
    fig.suptitle(title, fontsize=10)
    names = man.label_names
    for i, rec in enumerate(records):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.set_xticks([])
        ax.set_yticks([])
        label = names[rec.label] if rec.label < len(names) else str(rec.label)
        try:
            img, spacing = _display(rec, root)
        except ScanError as exc:  # a broken file must not hide the rest; a bug still surfaces
            logger.warning("preview: cannot show %s: %s", rec.image, exc)
            ax.text(0.5, 0.5, "unreadable", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(f"{label}", fontsize=8)
            continue
        ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        if rec.nodule_box_xyxy is not None:
            x0, y0, x1, y1 = rec.nodule_box_xyxy
            ax.add_patch(
                Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="red", linewidth=1)
            )
        elif rec.nodule_center_xy is not None:
            cx, cy = rec.nodule_center_xy
            radius = 5.0
            if rec.nodule_diameter_mm and spacing:
                radius = rec.nodule_diameter_mm / 2.0 / float(spacing[-1])
            ax.add_patch(Circle((cx, cy), radius, fill=False, edgecolor="red", linewidth=1))
        extra = f" {rec.location}" if rec.location else ""
        ax.set_title(f"{label}{extra}\n{rec.split} · {rec.patient_id}", fontsize=7)
    fig.tight_layout()
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, format="png")
    return target


__all__ = ["pick_records", "preview_grid"]
