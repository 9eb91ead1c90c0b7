"""Benchmark: ``medtl embed`` path vs a bare forward of the astra-ct encoder (i3resnet152).

For each volume size (``slices x rows x columns``, default 32x96x96 and 64x128x128) a
synthetic CT scan (HU, 1.5 x 1.5 x 3 mm, so the ``merlin`` resampling is an identity and the
input is the volume itself in RAS order) is embedded:

* **embed**: ``Predictor.embed(scan)``: domain check, Orientation + Spacing + HU window +
  pad/crop (the package's ``merlin`` preset at that size), forward, pooling;
* **bare**: ``model.forward_features(x).mean(...)`` under ``torch.inference_mode()`` on the
  same preprocessed tensor, timed right after each embed (interleaved).

Then the same bare forward with ``channels_last_3d``, ``torch.compile`` and ONNX Runtime
(when ``onnxruntime`` is installed), each with its relative L2 difference to eager fp32 (a
variant is only usable under 1e-3). Prints volumes/s, the ratio bare/embed (target >= 0.95)
and the peak RSS. Uses the registered ``astra-ct`` package when there is one (``medtl models
fetch astra-ct``), else random weights; ``--width 8`` gives a small network with the same
code path for a quick check.

Usage::

    python bench/foundation_bench.py                      # 2 threads, real network
    python bench/foundation_bench.py --width 8 --sizes 16x48x48 --runs 2
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


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


def _time(fn, runs: int) -> tuple[float, object]:
    out = fn()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _variants(model, x: torch.Tensor, runs: int, ref: torch.Tensor) -> list[tuple]:
    rows = []

    def pooled(m, inp):
        with torch.inference_mode():
            return m.forward_features(inp).flatten(2).mean(2)

    cl = x.contiguous(memory_format=torch.channels_last_3d)
    model_cl = model.to(memory_format=torch.channels_last_3d)
    t, out = _time(lambda: pooled(model_cl, cl), runs)
    rows.append(("channels_last_3d", t, _rel(out, ref)))
    model.to(memory_format=torch.contiguous_format)
    try:
        compiled = torch.compile(model)
        t, out = _time(lambda: pooled(compiled, x), runs)
        rows.append(("torch.compile", t, _rel(out, ref)))
    except Exception as err:  # a missing compiler toolchain is a result, not a crash
        rows.append((f"torch.compile (failed: {type(err).__name__})", float("nan"), float("nan")))
    rows.append(_onnx(model, x, runs, ref))
    return rows


def _onnx(model, x: torch.Tensor, runs: int, ref: torch.Tensor) -> tuple:
    try:
        import onnxruntime as ort
    except ImportError:
        return ("onnxruntime (not installed)", float("nan"), float("nan"))

    class Pooled(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, inp):
            return self.inner.forward_features(inp).flatten(2).mean(2)

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "model.onnx")
        torch.onnx.export(Pooled(model).eval(), (x,), path, input_names=["x"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        feed = {"x": x.numpy()}
        t, out = _time(lambda: session.run(None, feed)[0], runs)
    return ("onnxruntime", t, _rel(torch.from_numpy(out), ref))


def bench_size(predictor, shape: tuple[int, int, int], runs: int) -> dict:
    """Embed vs bare (interleaved) and the variants at one volume size."""
    from medtl.data.scan_input import scan_to_input

    scan = _scan(shape)
    size = [shape[2], shape[1], shape[0]]  # RAS (X, Y, Z) of a (slices, rows, columns) volume
    predictor.spec = predictor.spec.model_copy(update={"spatial_size": size})
    x = scan_to_input(scan, predictor.spec)[None]
    model = predictor.model

    def bare():
        with torch.inference_mode():
            return model.forward_features(x).flatten(2).mean(2)

    ref = bare()
    predictor.embed(scan)
    embed_t, bare_t = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        vec = predictor.embed(scan).vector
        embed_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        bare()
        bare_t.append(time.perf_counter() - t0)
    assert _rel(torch.from_numpy(vec)[None], ref) < 1e-5
    e, b = float(np.median(embed_t)), float(np.median(bare_t))
    return {"size": "x".join(map(str, shape)), "embed": e, "bare": b, "variants": _variants(
        model, x, runs, ref
    )}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="32x96x96,64x128x128")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--width", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        predictor, source = _predictor(args.width, Path(tmp))
        print(f"i3resnet152 ({source}), {args.threads} threads, "
              f"{torch.backends.cpu.get_cpu_capability()}, median of {args.runs}")  # fmt: skip
        print(f"{'size':>12} {'path':<34} {'vol/s':>8} {'vs bare':>8} {'rel L2':>9}")
        for item in args.sizes.split(","):
            shape = tuple(int(v) for v in item.split("x"))
            row = bench_size(predictor, shape, args.runs)  # type: ignore[arg-type]
            b = row["bare"]
            print(f"{row['size']:>12} {'bare inference_mode (eager fp32)':<34} {1 / b:8.3f}")
            print(f"{'':>12} {'medtl embed path':<34} {1 / row['embed']:8.3f} "
                  f"{b / row['embed']:8.3f}")  # fmt: skip
            for name, t, err in row["variants"]:
                print(f"{'':>12} {name:<34} {1 / t:8.3f} {b / t:8.3f} {err:9.1e}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
