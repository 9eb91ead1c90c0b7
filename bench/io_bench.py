"""Benchmark: load a CT series with medtl vs MONAI's PydicomReader, side by side.

Writes a synthetic CT series (int16, RescaleIntercept -1024) to a temporary folder, loads it
with :func:`medtl.io.series.load_dicom` and with
``monai.transforms.LoadImage(reader="PydicomReader", image_only=True)``, checks that both
give the same voxels (MONAI returns ``(column, row, slice)`` axes, transposed here to
``(slice, row, column)``) and prints slices per second and the ratio.

MONAI orders slices by InstanceNumber, so the series is written with InstanceNumbers in
slice order (medtl sorts by position and would agree either way).

Usage::

    python bench/io_bench.py --slices 200 --size 512 --repeat 3
    python bench/io_bench.py --slices 60 --size 256 --syntax rle

Exit status is 1 when the two arrays disagree.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.io.dicom_factory

SYNTAXES = {
    "explicit": "1.2.840.10008.1.2.1",
    "implicit": "1.2.840.10008.1.2",
    "rle": "1.2.840.10008.1.2.5",
    "j2k": "1.2.840.10008.1.2.4.90",
    "jpegls": "1.2.840.10008.1.2.4.80",
}


def _write_series(folder: Path, slices: int, size: int, syntax: str) -> None:
    from tests.io import dicom_factory as f

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    body = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (0.45 * size) ** 2
    for k in range(slices):
        px = np.where(body, 1000 + 40 * np.sin(k / 7.0 + xx / 23.0), 24).astype(np.int16)
        px = (px + rng.integers(0, 20, px.shape)).astype(np.int16)
        ds = f.ct_series(
            px[None],
            spacing=(1.25, 0.7, 0.7),
            origin=(-180.0, -180.0, 1.25 * k),
            scramble_instance_numbers=False,
            series_uid="1.2.826.0.1.3680043.8.498.1",
            study_uid="1.2.826.0.1.3680043.8.498.2",
        )[0]
        ds.InstanceNumber = k + 1
        if syntax != "explicit":
            ds = f.encode(ds, SYNTAXES[syntax])
        f.write(ds, folder / f"slice{k:04d}.dcm")


def _best(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--size", type=int, default=512, help="rows = columns")
    parser.add_argument("--repeat", type=int, default=3, help="runs per loader (best kept)")
    parser.add_argument("--syntax", choices=sorted(SYNTAXES), default="explicit")
    parser.add_argument("--workers", type=int, default=None, help="medtl threads")
    parser.add_argument("--json", type=Path, default=None, help="write the row as JSON")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        # A throwaway MEDTL_HOME, so the de-identification key is not created in your home.
        os.environ["MEDTL_HOME"] = str(Path(tmp) / "home")
        import torch
        from monai.transforms import LoadImage

        from medtl.io.series import load_dicom

        torch.set_num_threads(1)
        folder = Path(tmp) / "series"
        folder.mkdir()
        t0 = time.perf_counter()
        _write_series(folder, args.slices, args.size, args.syntax)
        print(
            f"wrote {args.slices} slices of {args.size}x{args.size} ({args.syntax}) in "
            f"{time.perf_counter() - t0:.1f} s"
        )
        files = sorted(folder.iterdir())
        monai_loader = LoadImage(reader="PydicomReader", image_only=True)

        t_medtl, scan = _best(lambda: load_dicom(files, max_workers=args.workers), args.repeat)
        t_monai, img = _best(lambda: monai_loader(str(folder)), args.repeat)

        ours = scan.array  # type: ignore[attr-defined]
        theirs = np.asarray(img, dtype=np.float32)
        if theirs.ndim == 4:
            theirs = theirs[..., 0] if theirs.shape[-1] == 1 else theirs[0]
        theirs = np.ascontiguousarray(theirs.transpose(2, 1, 0))
        same = theirs.shape == ours.shape and float(np.max(np.abs(theirs - ours))) <= 1e-3

    rows = [("medtl load_dicom", t_medtl), ("MONAI PydicomReader", t_monai)]
    print(f"\n{'loader':<22}{'best s':>10}{'slices/s':>12}")
    for name, t in rows:
        print(f"{name:<22}{t:>10.3f}{args.slices / t:>12.1f}")
    print(f"{'ratio medtl/MONAI':<22}{'':>10}{t_monai / t_medtl:>11.2f}x")
    print(f"arrays agree: {same} (shape {ours.shape})")
    if args.json is not None:
        import json

        row = {
            "name": f"scan loading, {args.slices}-slice {args.syntax} CT series vs MONAI reader",
            "ours": args.slices / t_medtl,
            "baseline": args.slices / t_monai,
            "ratio": t_monai / t_medtl,
            "target": ">= 1.0",
            "unit": "slices/s",
            "ok": bool(same),
        }
        args.json.write_text(json.dumps([row], indent=2), encoding="utf-8")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
