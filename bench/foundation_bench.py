"""Benchmark: ``medtl embed`` path vs a bare forward of the astra-ct encoder (i3resnet152).

For each volume size (``slices x rows x columns``, default 32x96x96 and 64x128x128) a
synthetic CT scan (HU, 1.5 x 1.5 x 3 mm, so the ``merlin`` resampling is an identity and the
input is the volume itself in RAS order) is embedded:

* **bare**: ``model.forward_features(x)`` pooled, under ``torch.inference_mode()``, eager
  fp32, on the preprocessed tensor: the reference (numbers and time);
* **embed path**: ``Predictor.embed(scan)`` with the default backend
  (:data:`medtl.inference.embed_backend.DEFAULT_BACKEND`): domain check, Orientation +
  Spacing + HU window + pad/crop, forward, pooling; timed interleaved with bare;
* the backends of :mod:`medtl.inference.embed_backend` (``channels_last_3d``,
  ``onnxruntime``) through ``EmbedRunner``, ``torch.compile`` (default inductor), and bf16
  autocast (for information: never within 1e-3), each with its relative L2 difference to
  eager fp32. The fastest one within 1e-3 is printed as the one to keep.

``--cache-features CONFIG`` also times the feature cache of the ``features`` arms of a study
(``configs/ct_foundation.yaml``: every record of the demo set through astra-ct, cut at
layer4 and at layer3). Prints a markdown table and the peak RSS; ``--out FILE`` writes it.
Uses the registered ``astra-ct`` package when there is one (``medtl models fetch
astra-ct``), else random weights; ``--width 8`` is a small network on the same code path.

Usage::

    nice -n 10 python bench/foundation_bench.py --out bench/foundation_results.md
    python bench/foundation_bench.py --width 8 --sizes 16x48x48 --runs 2 --compile-sizes none
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

TOLERANCE = 1e-3


def _scan(shape: tuple[int, int, int], seed: int = 0):
    from medtl.io import Scan

    rng = np.random.default_rng(seed)
    array = rng.normal(-300.0, 400.0, shape).astype(np.float32)
    # (slice, row, column) -> LPS: slices along z (3 mm), rows along y, columns along x
    affine = np.array([[0, 0, 1.5, 0], [0, 1.5, 0, 0], [3.0, 0, 0, 0], [0, 0, 0, 1]], float)
    return Scan(array, (3.0, 1.5, 1.5), affine, "CT", "dicom")


def _predictor(width: int, workdir: Path):
    """astra-ct when registered (width 64), else a random package of that width."""
    from medtl.inference.predictor import Predictor
    from medtl.models import ModelCard, PackageError, create_backbone, save_package
    from medtl.models.foundation import merlin_preprocessing

    if width == 64:
        try:
            return Predictor.from_package("astra-ct"), "astra-ct weights"
        except PackageError:
            pass
    spec = merlin_preprocessing()
    model = create_backbone("i3resnet152", spatial_dims=3, options={"width": width})
    card = ModelCard(name="bench-i3resnet", preprocessing=spec.model_dump())
    folder = save_package(model, card, workdir / "pkg", overwrite=True)
    return Predictor.from_package(folder), f"random weights, width {width}"


def _time(fn, runs: int) -> tuple[float, float, object]:
    """``(median seconds, first-call seconds, output)``: the first call is the warm-up."""
    t0 = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), first, out


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


class _Pooled(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from medtl.inference.embed import embed_tensor

        return embed_tensor(self.model, x, "layer4")


def _variants(model, x: torch.Tensor, runs: int, ref: torch.Tensor, compile_: bool) -> list:
    """``[(name, median s, warm-up s, rel L2)]`` of the alternatives to eager fp32."""
    from medtl.inference.embed import embed_tensor
    from medtl.inference.embed_backend import EmbedRunner

    rows = []
    for backend in ("channels_last_3d", "onnxruntime"):
        runner = EmbedRunner(model, "layer4", backend)
        t, first, out = _time(lambda r=runner: r(x), runs)
        model.to(memory_format=torch.contiguous_format)
        ran = backend != "onnxruntime" or runner._sessions.get(tuple(x.shape)) is not None
        rows.append((backend if ran else f"{backend} (unavailable)", t, first, _rel(out, ref)))
    if compile_:
        try:
            # compile the pooled-stage graph itself (compiling the backbone would leave
            # embed_tensor's forward_stages call on the eager module)
            compiled = torch.compile(_Pooled(model))

            def run_compiled():
                with torch.inference_mode():
                    return compiled(x)

            t, first, out = _time(run_compiled, runs)
            rows.append(("torch.compile (inductor)", t, first, _rel(out, ref)))
        except Exception as err:  # a missing toolchain is a result, not a crash
            rows.append((f"torch.compile (failed: {type(err).__name__})", np.nan, np.nan, np.nan))

    def bf16():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return embed_tensor(model, x, "layer4")

    t, first, out = _time(bf16, runs)
    rows.append(("bf16 autocast (info)", t, first, _rel(out, ref)))
    return rows


def bench_size(predictor, shape: tuple[int, int, int], runs: int, compile_: bool) -> dict:
    """Embed path vs bare (interleaved) and the variants at one volume size."""
    from medtl.data.scan_input import scan_to_input
    from medtl.inference.embed import embed_tensor

    scan = _scan(shape)
    size = [shape[2], shape[1], shape[0]]  # RAS (X, Y, Z) of a (slices, rows, columns) volume
    predictor.spec = predictor.spec.model_copy(update={"spatial_size": size})
    x = scan_to_input(scan, predictor.spec)[None]
    model = predictor.model

    def bare():
        with torch.inference_mode():
            return embed_tensor(model, x, "layer4")

    ref = bare()
    predictor.embed(scan)  # warm-up (and the backend's one-off export, if any)
    embed_t, bare_t = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        vec = predictor.embed(scan).vector
        embed_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        bare()
        bare_t.append(time.perf_counter() - t0)
    embed_err = _rel(torch.from_numpy(vec)[None], ref)
    return {
        "size": "x".join(map(str, shape)),
        "embed": float(np.median(embed_t)),
        "embed_err": embed_err,
        "bare": float(np.median(bare_t)),
        "variants": _variants(model, x, runs, ref, compile_),
    }


def cache_features(config_path: Path) -> list[tuple[str, int, float]]:
    """Time the feature cache of every ``features`` arm: ``[(arm, records, seconds)]``."""
    from medtl.transfer.arms import arm_config, arm_features, load_arms_config

    study = load_arms_config(config_path)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arm, spec in study.arms.items():
            if spec.kind != "features":
                continue
            t0 = time.perf_counter()
            feats = arm_features(arm_config(study, arm), Path(tmp), arm)
            rows.append((arm, len(feats), time.perf_counter() - t0))
    return rows


def _table(rows: list[dict], header: str) -> list[str]:
    lines = [header, "", "| size | path | vol/s | vs bare | rel L2 vs eager fp32 | warm-up s |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for row in rows:
        b = row["bare"]
        lines.append(f"| {row['size']} | bare inference_mode, eager fp32 | {1 / b:.3f} | 1 | 0 | |")
        lines.append(f"| {row['size']} | medtl embed path | {1 / row['embed']:.3f} | "
                     f"{b / row['embed']:.3f} | {row['embed_err']:.1e} | |")  # fmt: skip
        usable = []
        for name, t, first, err in row["variants"]:
            lines.append(f"| {row['size']} | {name} | {1 / t:.3f} | {b / t:.3f} | {err:.1e} | "
                         f"{first:.1f} |")  # fmt: skip
            if np.isfinite(t) and err < TOLERANCE and "info" not in name:
                usable.append((t, name))
        best = min([*usable, (b, "eager")])[1]
        lines.append(f"| {row['size']} | **fastest within {TOLERANCE:g}: {best}** | | | | |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="32x96x96,64x128x128")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument(
        "--compile-sizes",
        default=None,
        help="Sizes where torch.compile is tried (default: the first; 'none' to skip): "
        "compiling a 3D ResNet-152 takes minutes per shape.",
    )
    parser.add_argument("--cache-features", type=Path, default=None, help="Study YAML.")
    parser.add_argument("--out", type=Path, default=None, help="Write the table (markdown).")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import os

    with tempfile.TemporaryDirectory() as tmp:
        predictor, source = _predictor(args.width, Path(tmp))
        rows = []
        sizes = args.sizes.split(",")
        compile_sizes = (args.compile_sizes or sizes[0]).split(",")
        for item in sizes:
            shape = tuple(int(v) for v in item.split("x"))
            row = bench_size(predictor, shape, args.runs, item in compile_sizes)  # type: ignore[arg-type]
            rows.append(row)
            print("\n".join(_table(rows[-1:], "")), flush=True)
    load = os.getloadavg()[0]
    header = (
        f"i3resnet152 ({source}), {args.threads} threads, torch {torch.__version__}, CPU "
        f"capability {torch.backends.cpu.get_cpu_capability()}, median of {args.runs}, "
        f"load average {load:.1f} at the end (other jobs shared the cores)"
    )
    lines = _table(rows, header)
    if args.cache_features is not None:
        lines += [
            "",
            "| feature cache (arm) | records | seconds | records/s |",
            "|---|---|---|---|",
        ]
        for arm, n, seconds in cache_features(args.cache_features):
            lines.append(f"| {arm} | {n} | {seconds:.0f} | {n / seconds:.2f} |")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines += ["", f"peak RSS {rss:.0f} MB"]
    print("\n".join(lines))
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
