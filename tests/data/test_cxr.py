"""Simulated chest X-ray nodule dataset (medtl.data.cxr and its helpers), on the real CT."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medtl.data import cxr, drr, nodules, radiograph
from medtl.data.difficulty import PRESETS, get_preset
from medtl.data.manifest import Manifest

TINY = cxr.SIZES["tiny"]


@pytest.fixture(scope="module")
def ct_folder(fetched_sources: dict[str, Path]) -> Path:
    """The real chest CT, fetched once per session (tests/data/conftest.py)."""
    return fetched_sources[cxr.SOURCE_NAME]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private MEDTL_HOME for everything these tests write (CT cache)."""
    path = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDTL_HOME", str(path))
        yield path


@pytest.fixture(scope="module")
def source(ct_folder: Path, home: Path) -> drr.CTSource:
    return cxr.load_ct_source(ct_folder)


@pytest.fixture(scope="module")
def patient(source: drr.CTSource) -> drr.PatientVolume:
    geometry = drr.Geometry(size=128, depth_mm=5.0, depth_samples=60)
    return drr.render_patient(source, drr.draw_patient(11, elastic_mm=4.0), geometry)


@pytest.fixture(scope="module")
def tiny(ct_folder: Path, home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    cxr.build_cxr_dataset(out, "tiny", seed=3, fmt="dicom", progress=False, source_dir=ct_folder)
    return out


def test_ct_is_oriented_and_cleaned(source: drr.CTSource) -> None:
    z, _y, x = source.mu.shape
    # Lungs are in the upper half of the CT (head first) and on both sides of the midline.
    lung_rows = np.flatnonzero(source.lung.any(axis=(1, 2)))
    assert lung_rows[0] < z // 4
    heart = source.codes == drr.CODE_HEART
    heart_x = np.argwhere(heart)[:, 2].mean()
    assert heart_x > x / 2, "heart must lie towards the patient's left (higher columns)"
    # Air outside the body (table removed): the first and last rows of every slice are air.
    assert float(source.mu[:, 0, :].max()) == pytest.approx(0.0, abs=1e-6)
    assert float(source.mu[:, -1, :].max()) == pytest.approx(0.0, abs=1e-6)


def test_patient_deformation_is_seeded(source: drr.CTSource) -> None:
    g = drr.Geometry(size=64, depth_mm=8.0, depth_samples=38)
    a = drr.render_patient(source, drr.draw_patient(5), g).line_integral
    b = drr.render_patient(source, drr.draw_patient(5), g).line_integral
    c = drr.render_patient(source, drr.draw_patient(6), g).line_integral
    assert np.array_equal(a, b)
    assert float(np.abs(a - c).mean()) > 0.05
    # Line integrals of a chest: lungs ~1.5-3, mediastinum/abdomen ~4-6.
    assert 3.5 < float(a.max()) < 8.0
    upper = a[a.shape[0] // 4 : a.shape[0] // 2]
    lungs = (upper[:, a.shape[1] // 4].mean() + upper[:, 3 * a.shape[1] // 4].mean()) / 2
    assert 1.0 < lungs < 3.2 < float(upper[:, a.shape[1] // 2].mean())


def test_nodule_insertion_is_mask_aware(patient: drr.PatientVolume) -> None:
    rng = np.random.default_rng(0)
    center, _ = nodules.place_nodule(patient, 16.0, "clear", rng)
    inside = nodules.insert_nodule(patient, nodules.NoduleSpec(center, 16.0, solid_hu=30.0))
    # ~0.88 mu_water x chord: a 16 mm solid nodule in aerated lung adds ~0.2-0.3 log units.
    assert 0.18 < float(inside.delta.max()) < 0.4
    # The same nodule centred in the spine (no lung) changes nothing.
    g = patient.geometry
    spine = np.argwhere(patient.codes == drr.CODE_BONE)
    cols = spine[:, 2]
    mid = spine[np.abs(cols - patient.codes.shape[2] / 2).argmin()]
    c_mm = tuple(
        float((mid[i] + 0.5) * 2 * s) for i, s in enumerate((g.pixel_mm, g.depth_mm, g.pixel_mm))
    )
    outside = nodules.insert_nodule(patient, nodules.NoduleSpec(c_mm, 8.0))
    assert float(np.abs(outside.delta).max()) < 0.02


def test_twins_differ_only_inside_the_nodule_box(patient: drr.PatientVolume) -> None:
    rng = np.random.default_rng(4)
    center, _ = nodules.place_nodule(patient, 14.0, "clear", rng)
    spec = nodules.NoduleSpec(center, 14.0, shape="lobulated", seed=2)
    for photons in (0.0, 5e4):  # noise disabled, then the same noise draw for both twins
        pair = cxr.render_pair(patient, spec, radiograph.ProcessingParams(photons=photons))
        diff = (pair.positive - pair.negative) * radiograph.MAX_STORED
        x0, y0, x1, y1 = (round(v) for v in pair.nodule.box_xyxy)
        inside = diff[y0:y1, x0:x1]
        assert float(inside.max()) > 150.0, "the nodule must change the image (12-bit levels)"
        outside = diff.copy()
        outside[y0:y1, x0:x1] = 0.0
        # Beyond the box only the console's wide unsharp-mask filters spread a faint halo
        # (a real console artefact): small next to the box, below 2 % of the peak further out.
        assert float(np.abs(outside).max()) < 0.15 * float(inside.max())
        margin = 12
        far = diff.copy()
        far[max(y0 - margin, 0) : y1 + margin, max(x0 - margin, 0) : x1 + margin] = 0.0
        assert float(np.abs(far).max()) < 0.02 * float(inside.max())
        assert pair.cnr > 0.0


def test_tiny_build_is_deterministic(tiny: Path, ct_folder: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    cxr.build_cxr_dataset(again, "tiny", seed=3, fmt="dicom", progress=False, source_dir=ct_folder)
    first = sorted(p.relative_to(tiny) for p in tiny.rglob("*.dcm"))
    second = sorted(p.relative_to(again) for p in again.rglob("*.dcm"))
    assert first == second and len(first) == TINY.images
    for rel in first:
        assert (tiny / rel).read_bytes() == (again / rel).read_bytes(), rel
    m1, m2 = Manifest.load(tiny), Manifest.load(again)
    assert [r.model_dump() for r in m1.records] == [r.model_dump() for r in m2.records]


def test_other_seed_gives_other_patients(tiny: Path, ct_folder: Path, tmp_path: Path) -> None:
    other = cxr.build_cxr_dataset(
        tmp_path / "o", "tiny", seed=4, fmt="png", progress=False, source_dir=ct_folder
    )
    assert other.patients().isdisjoint(Manifest.load(tiny).patients())
    assert all(r.image.endswith(".png") for r in other.records)


def test_labels_boxes_and_records(tiny: Path) -> None:
    m = Manifest.load(tiny)
    preset = get_preset("demo")
    size = TINY.geometry.size
    assert m.simulated and m.task == "nodule" and m.label_names == ["no_nodule", "nodule"]
    assert len(m.records) == TINY.images
    assert sum(r.label for r in m.records) == TINY.images // 2
    pairs: dict[str, list[int]] = {}
    for r in m.records:
        pairs.setdefault(str(r.attributes["twin_pair"]), []).append(r.label)
        assert r.patient_id == f"VP{int(r.attributes['virtual_patient_seed']):010d}"
        if r.label == 0:
            assert r.nodule_box_xyxy is None and r.conspicuity_cnr is None
            continue
        x0, y0, x1, y1 = r.nodule_box_xyxy
        cx, cy = r.nodule_center_xy
        assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
        assert x0 <= cx <= x1 and y0 <= cy <= y1
        lo, hi = preset.diameter_mm
        assert lo <= r.nodule_diameter_mm <= hi
        assert r.conspicuity_cnr is not None and np.isfinite(r.conspicuity_cnr)
        assert r.nodule_type in nodules.NODULE_TYPES
        assert r.location in nodules.LOCATIONS
        assert str(r.attributes["lobe"]) in drr.LOBE_IDS.values()
    assert all(sorted(v) == [0, 1] for v in pairs.values()), "every pair is one pos + one neg"


def test_no_patient_across_splits(tiny: Path) -> None:
    from medtl.data.splits import check_splits

    m = Manifest.load(tiny)
    report = check_splits(m, raise_on_leak=False)
    assert not report.leaks
    seen: dict[str, str] = {}
    for r in m.records:
        assert seen.setdefault(r.patient_id, r.split) == r.split
    assert len({r.split for r in m.records}) >= 2


def test_dicom_headers_and_load_scan(tiny: Path) -> None:
    from medtl.io import load_scan

    m = Manifest.load(tiny)
    photometrics = set()
    for r in m.records:
        ds = pydicom.dcmread(tiny / r.image)
        photometrics.add(ds.PhotometricInterpretation)
        assert ds.Modality == r.modality in ("CR", "DX")
        assert ds.PatientID == r.patient_id == str(ds.PatientName)
        assert ds.PatientIdentityRemoved == "YES" and ds.BurnedInAnnotation == "NO"
        assert ds.ViewPosition == "PA" and ds.BodyPartExamined == "CHEST"
        assert ds.BitsStored == 12 and ds.Rows == TINY.geometry.size
        assert float(ds.PixelSpacing[0]) == pytest.approx(TINY.geometry.pixel_mm, rel=1e-4)
        assert float(ds.ImagerPixelSpacing[0]) > float(ds.PixelSpacing[0])
        assert "WindowCenter" in ds and "WindowWidth" in ds
        scan = load_scan(tiny / r.image)
        assert scan.array.shape == (TINY.geometry.size,) * 2
        assert scan.modality == r.modality
        # MONOCHROME2 polarity after loading: the mediastinum (centre column) is brighter
        # than the lungs either side, whatever the stored photometric.
        a = scan.array
        rows = slice(a.shape[0] // 4, a.shape[0] // 2)
        centre = a[rows, a.shape[1] // 2 - 3 : a.shape[1] // 2 + 3].mean()
        lungs = (a[rows, a.shape[1] // 4].mean() + a[rows, 3 * a.shape[1] // 4].mean()) / 2
        assert centre > lungs
    assert photometrics == {"MONOCHROME1", "MONOCHROME2"}


def test_monochrome1_and_2_load_to_the_same_array(tmp_path: Path) -> None:
    from medtl.io import load_scan

    rng = np.random.default_rng(0)
    stored = rng.integers(0, radiograph.MAX_STORED + 1, size=(40, 52)).astype(np.uint16)
    arrays = {}
    for photometric in ("MONOCHROME1", "MONOCHROME2"):
        path = radiograph.write_dicom(
            tmp_path / f"{photometric}.dcm", stored, patient_id="VP0000000001",
            instance_key=photometric, pixel_mm=1.25, modality="CR", photometric=photometric,
        )  # fmt: skip
        raw = pydicom.dcmread(path).pixel_array
        assert np.array_equal(raw, stored) == (photometric == "MONOCHROME2")
        scan = load_scan(path)
        arrays[photometric] = scan.array
        assert scan.window is not None
    assert np.array_equal(arrays["MONOCHROME1"], arrays["MONOCHROME2"])
    assert np.array_equal(arrays["MONOCHROME2"], stored.astype(np.float32))


def test_png_option_round_trips(tmp_path: Path) -> None:
    from medtl.io import load_scan

    stored = (np.arange(64 * 64).reshape(64, 64) % 4096).astype(np.uint16)
    path = radiograph.write_png(tmp_path / "x.png", stored)
    assert np.array_equal(load_scan(path).array, stored.astype(np.float32))


def test_presets_and_knobs() -> None:
    assert {"easy", "demo", "standard", "hard"} <= set(PRESETS)
    assert get_preset("demo", diameter_mm=(8.0, 9.0)).diameter_mm == (8.0, 9.0)
    with pytest.raises(ValueError, match="unknown difficulty"):
        get_preset("impossible")
    with pytest.raises(ValueError, match="knobs"):
        get_preset("demo", colour="red")
    hard, easy = get_preset("hard"), get_preset("easy")
    assert hard.diameter_mm[1] < easy.diameter_mm[0] + 1
    assert hard.photons[1] < easy.photons[0]


def test_processing_is_console_like() -> None:
    # A step edge in the log domain gains over- and undershoot (unsharp masking) and the
    # output spans [0, 1] with bigger = more attenuation.
    log_image = np.zeros((64, 64), dtype=np.float32) + 1.6
    log_image[:, 32:] = 2.2
    p = radiograph.ProcessingParams(photons=0.0, psf_px=0.0)
    out = radiograph.console_process(log_image, p, (0.0, 4.0), pixel_mm=1.0)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert out[:, 40].mean() > out[:, 20].mean()
    assert out[:, 32].mean() > out[:, 50].mean()  # overshoot at the bright side of the edge
    assert out[:, 31].mean() < out[:, 10].mean()  # undershoot at the dark side


def test_parallel_workers_give_the_same_bytes(tiny: Path, ct_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "par"
    cxr.build_cxr_dataset(
        out, "tiny", seed=3, fmt="dicom", progress=False, source_dir=ct_folder, workers=2
    )
    files = sorted(p.relative_to(tiny) for p in tiny.rglob("*.dcm"))
    assert files == sorted(p.relative_to(out) for p in out.rglob("*.dcm"))
    assert all((tiny / f).read_bytes() == (out / f).read_bytes() for f in files)


def test_every_kind_of_simulated_radiograph_passes_dciodvfy(tiny: Path) -> None:
    """One file of each (modality, photometric) the tiny build wrote: 0 dciodvfy errors,
    and the DX/CR attributes the IODs require, with the values the simulator means."""
    from tests.conformance import dciodvfy

    kinds: dict[tuple[str, str], Path] = {}
    for r in Manifest.load(tiny).records:
        ds = pydicom.dcmread(tiny / r.image, stop_before_pixels=True)
        kinds.setdefault((ds.Modality, ds.PhotometricInterpretation), tiny / r.image)
    assert {m for m, _ in kinds} == {"CR", "DX"}
    for (modality, photometric), path in sorted(kinds.items()):
        result = dciodvfy(path)
        assert result.errors == [], f"{modality} {photometric}:\n{result.output}"
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        (region,) = ds.AnatomicRegionSequence
        assert (region.CodeValue, region.CodingSchemeDesignator) == ("816094009", "SCT")
        assert ds.ImageLaterality == "U" and ds.LossyImageCompression == "00"
        if modality == "DX":
            expected = "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY"
            assert ds.PresentationLUTShape == expected
            assert ds.ViewCodeSequence[0].CodeValue == "272479007"  # postero-anterior
            for keyword in ("DetectorType", "PositionerType", "AcquisitionContextSequence"):
                assert keyword in ds  # Type 2: present, empty (the simulator has none)


@pytest.mark.parametrize("modality", ["CR", "DX"])
@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_write_dicom_conforms_and_keeps_the_pixels(
    tmp_path: Path, modality: str, photometric: str
) -> None:
    from tests.conformance import dciodvfy

    rng = np.random.default_rng(1)
    stored = rng.integers(0, radiograph.MAX_STORED + 1, size=(48, 40)).astype(np.uint16)
    path = radiograph.write_dicom(
        tmp_path / "x.dcm",
        stored,
        patient_id="VP0000000002",
        instance_key="k",
        pixel_mm=0.4,
        modality=modality,
        photometric=photometric,
    )
    result = dciodvfy(path)
    assert result.errors == [], result.output
    pixels = pydicom.dcmread(path).pixel_array
    if photometric == "MONOCHROME1":
        pixels = radiograph.MAX_STORED - pixels.astype(np.int32)
    np.testing.assert_array_equal(pixels, stored)
