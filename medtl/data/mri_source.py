"""MRI source set: brain MRI patches with tissue labels, from the MNI ICBM152 2009 template.

The source domain of the MRI-to-CT transfer demo. One real template (the MNI152 2009 T1,
an average of 152 healthy adult brains) becomes many **virtual subjects** by a random
affine + elastic deformation and intensity changes (smooth multiplicative bias field,
gamma contrast change, Rician noise). Each virtual subject is one ``patient_id``; subjects,
not patches, are assigned to splits.

Tissue labels (per voxel, from the template's probability maps): 0 background (outside
the brain mask, within 12 mm of it for patch centres), 1 CSF / other in-brain tissue,
2 grey matter, 3 white matter. The task is **classification**: the label of a patch is the
dominant tissue of its centre region (3x3 in-plane, x3 slices for 3D patches of 3 or more
slices). Besides the patches, :func:`build_mri_volumes` writes each virtual subject's
whole T1 volume (with its tissue map as ``mask``) for self-supervised restoration
pretraining.

Layout of a built folder::

    <out_dir>/manifest.json
    <out_dir>/images/<subject>/<index>.nii.gz     (2D or 3D patch, int16 with scale factor)
    <out_dir>/masks/<subject>/<index>.nii.gz      (uint8 tissue map of the patch)
"""

from __future__ import annotations

import functools
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medtl.data.manifest import Manifest, ManifestRecord
from medtl.data.patches import (
    apply_warp,
    crop_at,
    draw_warp,
    resample,
    size_spec,
    smooth_field,
    valid_centre_mask,
    write_patch,
)
from medtl.data.splits import assign_splits

logger = logging.getLogger(__name__)

MRI_LABELS: list[str] = ["background", "csf_other", "grey_matter", "white_matter"]
GENERATOR = "medtl.data.mri_source"
SOURCE = "nilearn-0.14.1:mni_icbm152_2009"
#: distance (mm) around the brain inside which background patch centres are drawn
BACKGROUND_MARGIN_MM = 12.0


@dataclass(frozen=True)
class MriCounts:
    """How much a size builds: virtual subjects and patches per subject and class."""

    subjects: int
    per_class_2d: int
    per_class_3d: int


MRI_COUNTS: dict[str, MriCounts] = {
    "tiny": MriCounts(subjects=8, per_class_2d=3, per_class_3d=2),
    "demo": MriCounts(subjects=20, per_class_2d=30, per_class_3d=20),
    "full": MriCounts(subjects=40, per_class_2d=100, per_class_3d=60),
}

DESCRIPTION = (
    "Source domain for MRI-to-CT transfer. Derived from ONE real image: the MNI ICBM152 2009 "
    "T1 brain template (Fonov et al.), an average of 152 healthy adults, shipped in the nilearn "
    "wheel. Virtual subjects are SIMULATED from it by random affine + elastic deformation, bias "
    "field, gamma contrast and Rician noise; they are not real people. Tissue labels come from "
    "the template's grey/white matter probability maps (CSF/other = inside the brain mask but "
    "neither). Label = dominant tissue of the patch centre region. Splits are by virtual "
    "subject (patient_id)."
)


def _template_display(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Load a NIfTI as ``(z, y, x)`` with x towards left, y posterior, z head."""
    import nibabel as nib

    img = nib.as_closest_canonical(nib.load(str(path)))  # RAS+
    data = np.asanyarray(img.dataobj).astype(np.float32)
    zooms = img.header.get_zooms()[:3]
    # RAS (i->right, j->anterior, k->superior) to display (z->head, y->posterior, x->left)
    vol = data.transpose(2, 1, 0)[:, ::-1, ::-1]
    return np.ascontiguousarray(vol), (float(zooms[2]), float(zooms[1]), float(zooms[0]))


@functools.lru_cache(maxsize=2)
def load_template(source_dir: str, size: str) -> tuple[np.ndarray, np.ndarray]:
    """Load and resample the template for ``size``.

    Args:
        source_dir: folder of the fetched ``mri_mni152`` source.
        size: ``tiny``, ``demo`` or ``full``.

    Returns:
        ``(t1, probs)``: T1 ``(z, y, x)`` float32 and tissue probabilities ``(4, z, y, x)``
        (background, CSF/other, grey, white), both at the size's spacing.
    """
    from scipy import ndimage as ndi

    folder = Path(source_dir)
    spec = size_spec(size)
    t1, sp = _template_display(folder / "t1.nii.gz")
    gm, _ = _template_display(folder / "gm.nii.gz")
    wm, _ = _template_display(folder / "wm.nii.gz")
    t1_r = resample(t1, sp, spec.spacing)
    gm_r, wm_r = (resample(a / 255.0, sp, spec.spacing) for a in (gm, wm))
    # brain mask at the target resolution (cheap): grey+white matter, closed over sulci,
    # holes (ventricles) filled
    iters = max(1, round(3.0 / spec.spacing[1]))
    brain = ndi.binary_fill_holes(ndi.binary_closing(gm_r + wm_r > 0.2, iterations=iters))
    brain_r = brain.astype(np.float32)
    csf = np.clip(brain_r - gm_r - wm_r, 0.0, 1.0)
    probs = np.stack([1.0 - brain_r, csf, gm_r, wm_r]).astype(np.float32)
    return t1_r, probs


@dataclass
class VirtualSubject:
    """One simulated subject: warped T1, tissue map and the drawn parameters."""

    subject_id: str
    t1: np.ndarray
    tissue: np.ndarray
    params: dict[str, float]


def make_subject(
    t1: np.ndarray, probs: np.ndarray, index: int, seed: int, *, identity: bool = False
) -> VirtualSubject:
    """Simulate virtual subject ``index`` (a pure function of the inputs).

    Args:
        t1: template T1 ``(z, y, x)``.
        probs: tissue probabilities ``(4, z, y, x)``.
        index: subject number.
        seed: dataset seed.
        identity: skip the deformation and intensity changes (tests).

    Returns:
        The :class:`VirtualSubject`.
    """
    rng = np.random.default_rng([seed, index, 17])
    if identity:
        warped_t1, warped_p = t1.copy(), probs
        gamma, bias, noise = 1.0, 0.0, 0.0
    else:
        warp = draw_warp(rng, t1.shape, rotate_deg=8.0, scale=0.08, magnitude_vox=1.5)
        warped_t1, warped_p = apply_warp([t1, probs], warp, ["bilinear", "bilinear"], "zeros")
        gamma = float(np.exp(rng.uniform(-0.3, 0.3)))
        bias = float(rng.uniform(0.05, 0.25))
        noise = float(rng.uniform(0.01, 0.04))
        scale = 255.0
        img = np.clip(warped_t1 / scale, 0.0, None) ** gamma
        img = img * np.exp(bias * smooth_field(rng, img.shape))
        n1 = rng.normal(0.0, noise, img.shape)
        n2 = rng.normal(0.0, noise, img.shape)
        warped_t1 = (np.sqrt((img + n1) ** 2 + n2**2) * scale).astype(np.float32)
    tissue = np.argmax(warped_p, axis=0).astype(np.uint8)
    return VirtualSubject(
        subject_id=f"mni-vs{index:03d}",
        t1=warped_t1.astype(np.float32),
        tissue=tissue,
        params={"gamma": gamma, "bias": bias, "noise": noise, "seed": float(seed)},
    )


def centre_label_map(tissue: np.ndarray, ndim: int, depth: int = 3) -> np.ndarray:
    """Dominant tissue of the centre region around every voxel: 3x3 in-plane, and x3
    slices for 3D patches at least 3 slices deep (the voxel's own slice otherwise)."""
    from scipy import ndimage as ndi

    size = (3, 3, 3) if ndim == 3 and depth >= 3 else (1, 3, 3)
    votes = np.stack(
        [ndi.uniform_filter((tissue == c).astype(np.float32), size=size, mode="nearest")
         for c in range(len(MRI_LABELS))]
    )  # fmt: skip
    return np.argmax(votes, axis=0).astype(np.uint8)


def _sample_patches(
    subject: VirtualSubject,
    ndim: int,
    per_class: int,
    patch: tuple[int, ...],
    spacing: tuple[float, float, float],
    rng: np.random.Generator,
) -> list[tuple[int, tuple[int, int, int], np.ndarray, np.ndarray]]:
    from scipy import ndimage as ndi

    shape3 = patch if ndim == 3 else (1, *patch)
    centre = centre_label_map(subject.tissue, ndim, shape3[0])
    valid = valid_centre_mask(subject.tissue.shape, shape3)
    brain = subject.tissue > 0
    near = ndi.distance_transform_edt(~brain, sampling=spacing) <= BACKGROUND_MARGIN_MM
    out = []
    for label in range(len(MRI_LABELS)):
        ok = valid & (centre == label)
        if label == 0:
            ok &= near
        candidates = np.argwhere(ok)
        if len(candidates) == 0:
            logger.warning("%s: no centre for class %s", subject.subject_id, MRI_LABELS[label])
            continue
        picks = rng.choice(len(candidates), size=per_class, replace=len(candidates) < per_class)
        for i in picks:
            z, y, x = (int(v) for v in candidates[i])
            img = crop_at(subject.t1, (z, y, x), shape3)
            lab = crop_at(subject.tissue, (z, y, x), shape3)
            if ndim == 2:
                img, lab = img[0], lab[0]
            out.append((label, (z, y, x), img, lab))
    return out


def _subject_splits(n: int, seed: int) -> list[str]:
    ids = [f"s{i}" for i in range(n)]
    return assign_splits(ids, [0] * n, seed=seed)


def _write_volume(path: Path, array: np.ndarray, spacing: tuple[float, ...]) -> None:
    """Write an MR image as int16 NIfTI with a scale factor (nibabel picks it)."""
    write_patch(path, array.astype(np.float32), spacing, on_disk=np.int16)


def build_mri_source(
    out_dir: str | Path,
    size: str = "demo",
    seed: int = 0,
    *,
    ndim: int = 2,
    source_dir: str | Path | None = None,
    progress: bool = True,
) -> Manifest:
    """Build the MRI source set: tissue-classification patches of virtual subjects.

    Args:
        out_dir: dataset folder to (re)create.
        size: ``tiny`` (seconds, tests), ``demo`` (minutes on 2 cores) or ``full`` (GPU).
        seed: the build is a pure function of (source files, size, ndim, seed).
        ndim: 2 for axial 2D patches, 3 for 3D patches.
        source_dir: folder of the fetched ``mri_mni152`` source (default: the verified
            cache in ``MEDTL_HOME``; run ``medtl data fetch`` first).
        progress: show a progress bar.

    Returns:
        The written :class:`~medtl.data.manifest.Manifest`.
    """
    from tqdm.auto import tqdm

    spec = size_spec(size)
    counts = MRI_COUNTS[size]
    src = Path(source_dir) if source_dir is not None else _require("mri_mni152")
    t1, probs = load_template(str(src), size)
    out = Path(out_dir)
    for sub in ("images", "masks"):
        shutil.rmtree(out / sub, ignore_errors=True)
    splits = _subject_splits(counts.subjects, seed)
    patch = spec.patch_shape(ndim)
    per_class = counts.per_class_2d if ndim == 2 else counts.per_class_3d
    spacing = spec.spacing if ndim == 3 else spec.spacing[1:]
    records: list[ManifestRecord] = []
    bar = tqdm(range(counts.subjects), desc=f"MRI source {ndim}D ({size})", disable=not progress)
    for k in bar:
        subject = make_subject(t1, probs, k, seed)
        rng = np.random.default_rng([seed, k, ndim, 29])
        samples = _sample_patches(subject, ndim, per_class, patch, spec.spacing, rng)
        for j, (label, centre, img, lab) in enumerate(samples):
            rel = f"{subject.subject_id}/{j:04d}.nii.gz"
            _write_volume(out / "images" / rel, img, spacing)
            write_patch(out / "masks" / rel, lab.astype(np.uint8), spacing)
            records.append(
                ManifestRecord(
                    image=f"images/{rel}",
                    mask=f"masks/{rel}",
                    label=label,
                    patient_id=subject.subject_id,
                    split=splits[k],  # type: ignore[arg-type]
                    modality="MR",
                    source=SOURCE,
                    task="mri_tissue",
                    attributes={
                        "ndim": ndim,
                        "centre_zyx": ",".join(str(c) for c in centre),
                        "subject_index": k,
                        **{f"sim_{key}": round(v, 4) for key, v in subject.params.items()},
                    },
                )
            )
    manifest = Manifest(
        name=f"mri_tissue_{ndim}d",
        task="mri_tissue",
        label_names=list(MRI_LABELS),
        modality="MR",
        generator=f"{GENERATOR} size={size} ndim={ndim}",
        seed=seed,
        simulated=True,
        description=DESCRIPTION + f" Patches {patch} at {spacing} mm.",
        records=records,
    )
    manifest.save(out)
    logger.info("MRI source %dD: %d patches in %s", ndim, len(records), out)
    return manifest


def build_mri_volumes(
    out_dir: str | Path,
    size: str = "demo",
    seed: int = 0,
    *,
    source_dir: str | Path | None = None,
    progress: bool = True,
) -> Manifest:
    """Write each virtual subject's whole T1 volume (unlabelled, for self-supervised
    restoration pretraining) with its tissue map as ``mask``.

    Records have ``label`` 0 (``label_names == ["unlabelled"]``); same subjects and splits as
    :func:`build_mri_source` with the same ``size`` and ``seed``.

    Returns:
        The written manifest.
    """
    from tqdm.auto import tqdm

    spec = size_spec(size)
    counts = MRI_COUNTS[size]
    src = Path(source_dir) if source_dir is not None else _require("mri_mni152")
    t1, probs = load_template(str(src), size)
    out = Path(out_dir)
    for sub in ("images", "masks"):
        shutil.rmtree(out / sub, ignore_errors=True)
    splits = _subject_splits(counts.subjects, seed)
    records = []
    for k in tqdm(range(counts.subjects), desc=f"MRI volumes ({size})", disable=not progress):
        subject = make_subject(t1, probs, k, seed)
        rel = f"{subject.subject_id}.nii.gz"
        _write_volume(out / "images" / rel, subject.t1, spec.spacing)
        write_patch(out / "masks" / rel, subject.tissue, spec.spacing)
        records.append(
            ManifestRecord(
                image=f"images/{rel}",
                mask=f"masks/{rel}",
                label=0,
                patient_id=subject.subject_id,
                split=splits[k],  # type: ignore[arg-type]
                modality="MR",
                source=SOURCE,
                task="mri_restoration",
                attributes={"ndim": 3, "subject_index": k},
            )
        )
    manifest = Manifest(
        name="mri_volumes",
        task="mri_restoration",
        label_names=["unlabelled"],
        modality="MR",
        generator=f"{GENERATOR} size={size} volumes",
        seed=seed,
        simulated=True,
        description=DESCRIPTION + " Whole volumes, unlabelled (mask = tissue map).",
        records=records,
    )
    manifest.save(out)
    return manifest


def _require(name: str) -> Path:
    from medtl.data.fetch import require_source

    return require_source(name)


__all__ = [
    "MRI_COUNTS",
    "MRI_LABELS",
    "VirtualSubject",
    "build_mri_source",
    "build_mri_volumes",
    "centre_label_map",
    "load_template",
    "make_subject",
]
