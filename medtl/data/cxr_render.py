"""Rendering of the simulated chest X-ray dataset: one virtual patient's twin pairs.

The real chest CT is prepared once (:func:`load_ct_source`, cached in memory and under
``MEDTL_HOME/cache``); each virtual patient is that CT deformed by its seed
(:func:`patient_seed`), and each of its twin pairs is a positive with a drawn nodule
(:func:`draw_nodule`) and the same image without it (:func:`render_pair`), with conspicuity
measured on the final images (:func:`conspicuity`). :mod:`medtl.data.cxr` writes them as a
dataset and documents the whole pipeline and the CNR definition.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from medtl.data.difficulty import DifficultyPreset
from medtl.data.drr import CTSource, Geometry, PatientVolume, draw_patient, prepare_ct
from medtl.data.nodules import InsertedNodule, NoduleSpec, insert_nodule, place_nodule
from medtl.data.radiograph import (
    ProcessingParams,
    console_process,
    draw_processing,
    expose,
    exposure_reference,
)

__all__ = [
    "SOURCE_NAME",
    "RenderedPair",
    "SizeSpec",
    "conspicuity",
    "draw_nodule",
    "iter_patient_pairs",
    "load_ct_source",
    "patient_id",
    "patient_seed",
    "render_pair",
]

logger = logging.getLogger(__name__)

SOURCE_NAME = "ct_chest"


@dataclass(frozen=True)
class SizeSpec:
    """How many images, and at which resolution.

    Attributes:
        patients: number of virtual patients.
        pairs_per_patient: twin pairs (one positive + one negative) per patient.
        geometry: image size and depth sampling.
    """

    patients: int
    pairs_per_patient: int
    geometry: Geometry

    @property
    def images(self) -> int:
        """Total number of images."""
        return 2 * self.patients * self.pairs_per_patient


@dataclass
class RenderedPair:
    """A positive and its negative twin, rendered (float ``[0, 1]``, MONOCHROME2).

    Attributes:
        negative, positive: the final images.
        nodule: the inserted nodule (geometry, location).
        processing: acquisition/console settings shared by both.
        cnr: conspicuity (see the module docstring).
        cnr_disc_annulus: classic single-image disc-vs-annulus CNR of the positive.
        peak_delta_log: peak line-integral change made by the nodule.
    """

    negative: np.ndarray
    positive: np.ndarray
    nodule: InsertedNodule
    processing: ProcessingParams
    cnr: float
    cnr_disc_annulus: float
    peak_delta_log: float


def patient_seed(dataset_seed: int, index: int) -> int:
    """Deformation seed of virtual patient ``index`` of a dataset."""
    digest = hashlib.sha256(f"medtl-cxr:{dataset_seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def patient_id(seed: int) -> str:
    """Pseudonymous virtual-patient id (``VP`` + the deformation seed)."""
    return f"VP{seed:010d}"


PREP_VERSION = 1


@lru_cache(maxsize=2)
def _prepared(ct_path: str, mask_path: str) -> CTSource:
    """Prepare once per process; keep a copy in ``MEDTL_HOME/cache`` (saves ~10 s a run)."""
    from medtl.paths import home_subdir

    key = hashlib.sha256(f"v{PREP_VERSION}".encode())
    for p in (ct_path, mask_path):
        st = Path(p).stat()
        key.update(f"{Path(p).name}:{st.st_size}:{st.st_mtime_ns}".encode())
    cache = home_subdir("cache") / f"cxr_ct_prepared_{key.hexdigest()[:16]}.npz"
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                return CTSource(
                    mu=z["mu"], lung=z["lung"], codes=z["codes"],
                    spacing=tuple(float(v) for v in z["spacing"]),  # type: ignore[arg-type]
                    center_mm=tuple(float(v) for v in z["center_mm"]),  # type: ignore[arg-type]
                )  # fmt: skip
        except (OSError, KeyError, ValueError) as err:
            logger.warning("ignoring unreadable CT cache %s (%s)", cache.name, err)
    source = prepare_ct(Path(ct_path), Path(mask_path))
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(
        tmp, mu=source.mu, lung=source.lung, codes=source.codes,
        spacing=np.asarray(source.spacing), center_mm=np.asarray(source.center_mm),
    )  # fmt: skip
    tmp.replace(cache)
    return source


def load_ct_source(folder: Path | None = None) -> CTSource:
    """Prepare the real chest CT (cached in memory per process).

    Args:
        folder: folder with ``ct.nii.gz`` and ``mask.nii.gz``; default: the fetched
            ``ct_chest`` source under ``MEDTL_HOME`` (``medtl data fetch``).

    Returns:
        The cleaned :class:`CTSource`.
    """
    if folder is None:
        from medtl.data.fetch import require_source

        folder = require_source(SOURCE_NAME)
    return _prepared(str(folder / "ct.nii.gz"), str(folder / "mask.nii.gz"))


def _weighted_choice(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = [k for k, v in weights.items() if v > 0]
    p = np.array([weights[k] for k in names], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def draw_nodule(
    volume: PatientVolume, preset: DifficultyPreset, rng: np.random.Generator
) -> NoduleSpec:
    """Draw a nodule (size, type, shape, density, place) for a virtual patient.

    Args:
        volume: the virtual patient.
        preset: difficulty knobs.
        rng: random generator.

    Returns:
        The :class:`NoduleSpec` (centre inside a lung lobe).
    """
    lo, hi = preset.diameter_mm
    diameter = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    nodule_type = _weighted_choice(rng, preset.type_weights)
    shape = _weighted_choice(rng, preset.shape_weights)
    if nodule_type == "calcified" and diameter > 20.0:
        shape = "round" if shape == "spiculated" else shape
    wanted = _weighted_choice(rng, preset.location_weights)
    center, _ = place_nodule(volume, diameter, wanted, rng)
    return NoduleSpec(
        center_mm=center,
        diameter_mm=diameter,
        nodule_type=nodule_type,
        shape=shape,
        solid_hu=float(rng.uniform(*preset.solid_hu)),
        ggo_hu=float(rng.uniform(*preset.ggo_hu)),
        core_fraction=float(
            rng.uniform(0.3, 0.6) if nodule_type == "part-solid" else rng.uniform(0.3, 0.8)
        ),
        calc_hu=float(rng.uniform(400.0, 1000.0)),
        seed=int(rng.integers(0, 2**31 - 1)),
    )


def conspicuity(
    positive: np.ndarray,
    negative: np.ndarray,
    center_xy: tuple[float, float],
    diameter_px: float,
) -> tuple[float, float]:
    """Contrast-to-noise ratios of a nodule (definitions in the module docstring).

    Args:
        positive: final image with the nodule.
        negative: its twin without the nodule.
        center_xy: nodule centre (pixel coordinates, corner convention).
        diameter_px: nominal diameter in pixels.

    Returns:
        ``(cnr, cnr_disc_annulus)``.
    """
    r = max(diameter_px / 2.0, 1.0)
    h, w = positive.shape
    yy, xx = np.mgrid[0:h, 0:w]
    dist = np.hypot(yy + 0.5 - center_xy[1], xx + 0.5 - center_xy[0])
    disc = dist <= r
    ring = (dist > 1.5 * r + 1.0) & (dist <= 2.5 * r + 2.0)
    if not disc.any() or ring.sum() < 4:
        return 0.0, 0.0
    std = float(positive[ring].std()) + 1e-6
    signal = float((positive - negative)[disc].mean())
    classic = float(positive[disc].mean() - positive[ring].mean())
    return signal / std, classic / std


def render_pair(
    volume: PatientVolume,
    spec: NoduleSpec,
    processing: ProcessingParams,
) -> RenderedPair:
    """Render a positive image and its negative twin for one virtual patient.

    Both share exposure, noise draw, console processing and exposure recognition (computed
    on the negative), so they differ only where the nodule is.

    Args:
        volume: the virtual patient.
        spec: the nodule.
        processing: acquisition and console settings.

    Returns:
        The :class:`RenderedPair`.
    """
    g = volume.geometry
    nodule = insert_nodule(volume, spec)
    neg_log = expose(volume.line_integral, processing)
    pos_log = expose(nodule.add_to(volume.line_integral), processing)
    ref = exposure_reference(neg_log)
    neg = console_process(neg_log, processing, ref, g.pixel_mm)
    pos = console_process(pos_log, processing, ref, g.pixel_mm)
    cnr, classic = conspicuity(pos, neg, nodule.center_xy, spec.diameter_mm / g.pixel_mm)
    return RenderedPair(
        negative=neg,
        positive=pos,
        nodule=nodule,
        processing=processing,
        cnr=cnr,
        cnr_disc_annulus=classic,
        peak_delta_log=float(nodule.delta.max()) if nodule.delta.size else 0.0,
    )


def iter_patient_pairs(
    source: CTSource,
    preset: DifficultyPreset,
    size: SizeSpec,
    seed: int,
    index: int,
) -> Iterator[tuple[int, RenderedPair]]:
    """Render all twin pairs of virtual patient ``index`` (deterministic in ``seed``).

    Args:
        source: the prepared CT.
        preset: difficulty knobs.
        size: images per patient and geometry.
        seed: dataset seed.
        index: patient index.

    Yields:
        ``(pair_index, RenderedPair)``.
    """
    from medtl.data.drr import render_patient

    pseed = patient_seed(seed, index)
    params = draw_patient(
        pseed,
        rotation_deg=preset.rotation_deg,
        scale_range=preset.scale_range,
        shift_mm=preset.shift_mm,
        elastic_mm=preset.elastic_mm,
    )
    volume = render_patient(source, params, size.geometry)
    for j in range(size.pairs_per_patient):
        rng = np.random.default_rng([seed, index, j, 1301])
        spec = draw_nodule(volume, preset, rng)
        proc = draw_processing(rng, preset.photons, preset.processing_vary)
        yield j, render_pair(volume, spec, proc)
