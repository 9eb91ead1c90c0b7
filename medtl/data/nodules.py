"""Synthetic lung nodules: 3D shape and density, placement in the lung, insertion.

A nodule is defined in 3D, in the projection frame of a virtual patient (see
:mod:`medtl.data.drr`): a surface radius that varies with direction (round, lobulated),
optional spicules (thin tapering strands), and a density pattern (solid, part-solid =
ground glass with a solid core, calcified = solid with a dense core). It is inserted
**mask-aware**: inside the nodule and inside the lung, the deformed CT's HU are replaced by
the nodule's HU; outside the lung (pleura, mediastinum) nothing changes.

Because projection is linear, the inserted volume's projection equals the nodule-free
projection plus the projection of the local attenuation change ``mu(nodule) - mu(CT)``.
:func:`insert_nodule` computes that change on a fine grid around the nodule only (a few
sub-voxels per image pixel), which is exactly the 3D insertion, at a fraction of the cost
of re-projecting the patient, and without the partial-volume loss of inserting into a
coarse volume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from medtl.data.drr import LOBE_CODES, PatientVolume, hu_to_mu_np

NODULE_TYPES = ("solid", "part-solid", "calcified")
SHAPES = ("round", "lobulated", "spiculated")
LOCATIONS = ("clear", "rib", "behind_heart", "diaphragm")


@dataclass(frozen=True)
class NoduleSpec:
    """One nodule, in projection-frame millimetres.

    Attributes:
        center_mm: centre ``(z, y, x)`` in frame mm (rows, depth, columns).
        diameter_mm: equivalent-sphere diameter.
        nodule_type: ``solid``, ``part-solid`` or ``calcified``.
        shape: ``round``, ``lobulated`` or ``spiculated``.
        solid_hu: density of the solid component.
        ggo_hu: density of the ground-glass component (part-solid).
        core_fraction: radius fraction of the solid core (part-solid) or calcium (calcified).
        calc_hu: density of calcification.
        seed: seed of the shape and texture.
    """

    center_mm: tuple[float, float, float]
    diameter_mm: float
    nodule_type: str = "solid"
    shape: str = "round"
    solid_hu: float = 30.0
    ggo_hu: float = -550.0
    core_fraction: float = 0.5
    calc_hu: float = 700.0
    seed: int = 0


@dataclass
class InsertedNodule:
    """The projection of an inserted nodule.

    Attributes:
        spec: the nodule.
        delta: ``(h, w)`` line-integral change, to add at ``(row0, col0)``.
        row0, col0: top-left pixel of ``delta`` in the image.
        center_xy: nodule centre in pixel coordinates ``(x, y)`` (top-left corner of the
            image at ``(0, 0)``, pixel ``(r, c)`` covering ``[c, c+1) x [r, r+1)``).
        box_xyxy: bounding box of the visible nodule (``|delta| > 5 %`` of its peak), same
            coordinates.
        location: ``clear``, ``rib``, ``behind_heart`` or ``diaphragm``.
        lobe: lobe at the centre.
    """

    spec: NoduleSpec
    delta: np.ndarray
    row0: int
    col0: int
    center_xy: tuple[float, float]
    box_xyxy: tuple[float, float, float, float]
    location: str
    lobe: str

    def add_to(self, image: np.ndarray) -> np.ndarray:
        """Return ``image`` (a line-integral image) with the nodule added."""
        out = image.copy()
        h, w = self.delta.shape
        out[self.row0 : self.row0 + h, self.col0 : self.col0 + w] += self.delta
        return out


def _directions(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def nodule_field(
    spec: NoduleSpec, dz: np.ndarray, dy: np.ndarray, dx: np.ndarray, voxel_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """Evaluate the nodule at offsets (mm) from its centre.

    Args:
        spec: the nodule.
        dz, dy, dx: broadcastable offset arrays in mm.
        voxel_mm: sampling step (sets the width of the partial-volume edge).

    Returns:
        ``(hu, occupancy)``: nodule HU and the fraction of each voxel it fills.
    """
    rng = np.random.default_rng([spec.seed, 4242])
    radius = spec.diameter_mm / 2.0
    dist = np.sqrt(dz**2 + dy**2 + dx**2) + 1e-6
    uz, uy, ux = dz / dist, dy / dist, dx / dist
    surface = np.ones_like(dist)
    if spec.shape in ("lobulated", "spiculated"):
        n_lobes = int(rng.integers(3, 7))
        lobes = _directions(rng, n_lobes)
        amps = rng.uniform(0.12, 0.3, size=n_lobes)
        bump = np.zeros_like(dist)
        for (lz, ly, lx), amp in zip(lobes, amps, strict=True):
            cos = np.clip(uz * lz + uy * ly + ux * lx, 0.0, None)
            bump += amp * cos**3
        # Mean of amp * cos^3 over the sphere is amp / 8: keep the equivalent diameter.
        surface = (1.0 + bump) / (1.0 + amps.sum() / 8.0)
    else:
        surface = surface * (1.0 + 0.03 * np.sin(3 * uz + 2 * ux))
    r_surf = radius * surface
    edge = max(voxel_mm, 0.2)
    occ = np.clip((r_surf - dist) / edge + 0.5, 0.0, 1.0)

    # Solid texture: smooth random variation of +-15 HU.
    tex_grid = rng.normal(0.0, 15.0, size=(4, 4, 4))
    tz = np.clip((dz / radius + 1.0) * 1.5, 0, 3)
    ty = np.clip((dy / radius + 1.0) * 1.5, 0, 3)
    tx = np.clip((dx / radius + 1.0) * 1.5, 0, 3)
    shape = np.broadcast_shapes(tz.shape, ty.shape, tx.shape)
    coords = np.stack([np.broadcast_to(a, shape).ravel() for a in (tz, ty, tx)])
    texture = ndimage.map_coordinates(tex_grid, coords, order=1).reshape(shape)
    hu = np.broadcast_to(spec.solid_hu + texture, shape).astype(np.float32).copy()

    core = np.clip((spec.core_fraction * r_surf - dist) / edge + 0.5, 0.0, 1.0)
    if spec.nodule_type == "part-solid":
        hu = spec.ggo_hu + (hu - spec.ggo_hu) * core
    elif spec.nodule_type == "calcified":
        hu = hu + (spec.calc_hu - hu) * core

    if spec.shape == "spiculated":
        n_sp = int(rng.integers(6, 14))
        dirs = _directions(rng, n_sp)
        lengths = radius * rng.uniform(1.3, 2.0, size=n_sp)
        width0 = float(np.clip(0.08 * spec.diameter_mm, 0.5, 1.5))
        spic = np.zeros(shape, dtype=np.float64)
        for (sz, sy, sx), length in zip(dirs, lengths, strict=True):
            along = dz * sz + dy * sy + dx * sx
            t = np.clip(along, 0.0, length)
            perp = np.sqrt(
                np.maximum((dz - t * sz) ** 2 + (dy - t * sy) ** 2 + (dx - t * sx) ** 2, 0.0)
            )
            width = width0 * (1.0 - 0.8 * t / length)
            spic = np.maximum(spic, np.clip((width - perp) / edge + 0.5, 0.0, 1.0))
        new_occ = np.maximum(occ, spic)
        spic_only = np.clip(new_occ - occ, 0.0, 1.0)
        hu = (hu * occ + (spec.solid_hu - 60.0) * spic_only) / np.maximum(new_occ, 1e-6)
        occ = new_occ
    return hu.astype(np.float32), occ.astype(np.float32)


def _extent(spec: NoduleSpec) -> float:
    """Half-size of the cube that holds the nodule, mm."""
    radius = spec.diameter_mm / 2.0
    return radius * (2.05 if spec.shape == "spiculated" else 1.35) + 1.0


def insert_nodule(volume: PatientVolume, spec: NoduleSpec) -> InsertedNodule:
    """Insert a nodule in a virtual patient (mask-aware) and return its projection.

    Args:
        volume: the virtual patient (deformed CT in the projection frame).
        spec: the nodule.

    Returns:
        The :class:`InsertedNodule` (line-integral change and its geometry).
    """
    g = volume.geometry
    p = g.pixel_mm
    half = _extent(spec)
    target = max(spec.diameter_mm / 24.0, 2.0 * half / 72.0)
    k = int(np.clip(round(p / target), 1, 10))
    v = p / k
    cz, cy, cx = spec.center_mm
    r0 = max(math.floor((cz - half) / p), 0)
    r1 = min(math.ceil((cz + half) / p), g.size)
    c0 = max(math.floor((cx - half) / p), 0)
    c1 = min(math.ceil((cx + half) / p), g.size)
    n_depth = math.ceil(2 * half / v)
    zs = r0 * p + (np.arange((r1 - r0) * k) + 0.5) * v
    xs = c0 * p + (np.arange((c1 - c0) * k) + 0.5) * v
    ys = cy - half + (np.arange(n_depth) + 0.5) * v
    dz = (zs - cz)[:, None, None]
    dy = (ys - cy)[None, :, None]
    dx = (xs - cx)[None, None, :]
    hu_nod, occ = nodule_field(spec, dz, dy, dx, v)

    inside = occ > 0
    idx = np.nonzero(inside)
    pts = np.stack([zs[idx[0]], ys[idx[1]], xs[idx[2]]])
    local_mu = volume.sample("mu", pts)
    lung = volume.sample("lung", pts)
    dmu = np.zeros(occ.shape, dtype=np.float32)
    dmu[idx] = occ[idx] * np.clip(lung, 0.0, 1.0) * (hu_to_mu_np(hu_nod[idx]) - local_mu)
    proj = dmu.sum(axis=1) * v
    delta = proj.reshape(r1 - r0, k, c1 - c0, k).mean(axis=(1, 3)).astype(np.float32)
    # The CT behind the patient image has ~2.5 mm slices and ~1.4 mm pixels: blur the
    # nodule the same way so it is not sharper than the anatomy around it.
    pad = 2
    padded = np.pad(delta, pad)
    sig_rows = 1.06 / p
    sig_cols = 0.6 / p
    padded = ndimage.gaussian_filter(padded, (sig_rows, sig_cols), mode="constant")
    rr0, cc0 = r0 - pad, c0 - pad
    lo_r, lo_c = max(-rr0, 0), max(-cc0, 0)
    hi_r = padded.shape[0] - max(rr0 + padded.shape[0] - g.size, 0)
    hi_c = padded.shape[1] - max(cc0 + padded.shape[1] - g.size, 0)
    delta = padded[lo_r:hi_r, lo_c:hi_c]
    row0, col0 = rr0 + lo_r, cc0 + lo_c

    peak = float(np.abs(delta).max()) if delta.size else 0.0
    if peak > 0:
        rows, cols = np.nonzero(np.abs(delta) > 0.05 * peak)
        box = (
            float(col0 + cols.min()),
            float(row0 + rows.min()),
            float(col0 + cols.max() + 1),
            float(row0 + rows.max() + 1),
        )
    else:
        box = (cx / p, cz / p, cx / p, cz / p)
    location, lobe = classify_location(volume, spec)
    return InsertedNodule(
        spec=spec,
        delta=delta.astype(np.float32),
        row0=int(row0),
        col0=int(col0),
        center_xy=(cx / p, cz / p),
        box_xyxy=box,
        location=location,
        lobe=lobe,
    )


def classify_location(volume: PatientVolume, spec: NoduleSpec) -> tuple[str, str]:
    """Say what the nodule projects over, and which lobe holds its centre.

    ``behind_heart`` when the heart lies on the ray through the centre, ``diaphragm`` when
    sub-diaphragmatic organs do (a posterior recess seen through the liver or stomach),
    ``rib`` when ribs or clavicles cover at least 35 % of the nodule disc, else ``clear``.

    Returns:
        ``(location, lobe)``.
    """
    g = volume.geometry
    p2 = 2 * g.pixel_mm
    cz, cy, cx = spec.center_mm
    h, w = volume.heart_mm.shape
    r = int(np.clip(cz / p2, 0, h - 1))
    c = int(np.clip(cx / p2, 0, w - 1))
    d = int(np.clip(cy / (2 * g.depth_mm), 0, volume.codes.shape[1] - 1))
    lobe = LOBE_CODES.get(int(volume.codes[r, d, c]), "lung")
    if volume.heart_mm[r, c] > 5.0:
        return "behind_heart", lobe
    if volume.abdomen_mm[r, c] > 5.0:
        return "diaphragm", lobe
    rad = max(spec.diameter_mm / 2.0 / p2, 0.75)
    yy, xx = np.mgrid[0:h, 0:w]
    disc = (yy + 0.5 - cz / p2) ** 2 + (xx + 0.5 - cx / p2) ** 2 <= rad**2
    if not disc.any():
        disc[r, c] = True
    if float((volume.bone_mm[disc] > 3.0).mean()) >= 0.35:
        return "rib", lobe
    return "clear", lobe


def place_nodule(
    volume: PatientVolume,
    diameter_mm: float,
    location: str,
    rng: np.random.Generator,
    tries: int = 400,
) -> tuple[tuple[float, float, float], str]:
    """Choose a nodule centre inside the lung, preferably projecting over ``location``.

    The centre is a lung voxel whose surroundings at 60 % of the radius are lung in all six
    axis directions (so most of the nodule lies in the lung and survives the mask-aware
    insertion), and which projects inside the image away from its border.

    Args:
        volume: the virtual patient.
        diameter_mm: nodule diameter.
        location: wanted location class (see :data:`LOCATIONS`); a lung centre of another
            class is returned when none is found in ``tries`` draws.
        rng: random generator.
        tries: rejection-sampling budget.

    Returns:
        ``(center_mm, location)``: the centre and the location class it actually has.
    """
    g = volume.geometry
    codes = volume.codes
    lung_idx = np.argwhere((codes >= 1) & (codes <= 5))
    if lung_idx.size == 0:
        raise ValueError("the virtual patient has no lung voxels")
    step = np.array([2 * g.pixel_mm, 2 * g.depth_mm, 2 * g.pixel_mm])
    offset = np.array([0.5 * g.pixel_mm, 0.5 * g.depth_mm, 0.5 * g.pixel_mm])
    radius = diameter_mm / 2.0
    margin = radius + 4.0 * g.pixel_mm
    probe = 0.6 * radius
    fallback: tuple[tuple[float, float, float], str] | None = None
    for _ in range(tries):
        i = int(rng.integers(0, len(lung_idx)))
        center = lung_idx[i] * step + offset + rng.uniform(-0.5, 0.5, size=3) * step
        cz, cy, cx = (float(a) for a in center)
        if not (margin <= cz <= g.fov_mm - margin and margin <= cx <= g.fov_mm - margin):
            continue
        pts = [(cz, cy, cx)] + [
            (cz + s * probe * e[0], cy + s * probe * e[1], cx + s * probe * e[2])
            for e in ((1, 0, 0), (0, 1, 0), (0, 0, 1))
            for s in (-1, 1)
        ]
        lung = volume.sample("lung", np.array(pts).T)
        if lung.min() < 0.6:
            continue
        spec = NoduleSpec(center_mm=(cz, cy, cx), diameter_mm=diameter_mm)
        found, _ = classify_location(volume, spec)
        if found == location:
            return (cz, cy, cx), found
        if fallback is None:
            fallback = ((cz, cy, cx), found)
    if fallback is None:
        raise ValueError(f"no room for a {diameter_mm:.1f} mm nodule in this virtual patient")
    return fallback


__all__ = [
    "LOCATIONS",
    "NODULE_TYPES",
    "SHAPES",
    "InsertedNodule",
    "NoduleSpec",
    "classify_location",
    "insert_nodule",
    "nodule_field",
    "place_nodule",
]
