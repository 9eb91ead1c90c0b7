"""Training-engine benchmarks: ratios measured side by side in one run, printed as a table.

Rows (``ratio`` is always "higher is better"; ``target`` is the aim):

- ``trainer_vs_bare_loop``: Trainer epoch throughput / a bare PyTorch loop (same model,
  optimiser, in-memory tensors, DataLoader). Aim >= 0.95.
- ``dicom_warm_cache_vs_memory``: epoch throughput training from CR DICOM files on disk
  through the warm disk cache (a second ``PersistentDataset`` over the same cache folder) /
  from the same decoded tensors held in memory, with the same augmentation after both. Aim
  >= 0.9. ``dicom_cold_cache_vs_memory`` (first epoch, decoding
  and writing the cache) is printed beside it, no target.
- ``bf16_channels_last_vs_fp32``: forward passes/s (``--amp-train``: training steps/s) of a
  2-D ResNet18 under bf16 autocast + channels_last / fp32. Aim >= 2 on CPUs with native bf16
  (AVX512-BF16/AMX); emulated bf16 on other CPUs is far slower than fp32.
- ``feature_extraction_vs_frozen_base``: time to train a head for ``--head-epochs`` epochs
  with medtl's two workflows (``run_strategy``, a ResNet18): frozen base (augmented images
  through the frozen base every epoch) / feature extraction (one pass of the plain images,
  features cached, then the head on them). Aim >= 10.

Usage::

    .venv/bin/python bench/train_bench.py                 # defaults: ~2-3 min on 2 cores
    .venv/bin/python bench/train_bench.py --size 128 --n-images 128 --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from medtl.training import Trainer, TrainingConfig, cached_dataset
from medtl.training.precision import autocast, cpu_supports_bf16, to_memory_format


def resnet18(num_classes: int = 2) -> nn.Module:
    """MONAI's 2-D ResNet18 for one-channel images."""
    from monai.networks.nets import resnet18 as monai_resnet18

    return monai_resnet18(spatial_dims=2, n_input_channels=1, num_classes=num_classes)


def small_cnn() -> nn.Module:
    """A small CNN: per-step framework overhead matters more than with a ResNet."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(32, 2),
    )  # fmt: skip


def images(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random one-channel images and binary labels."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g), torch.randint(0, 2, (n,), generator=g)


def cfg(tmp: Path, **kw: Any) -> TrainingConfig:
    """A bench config: CPU, quiet, no per-epoch checkpoints (throughput is the point)."""
    base: dict[str, Any] = {
        "device": "cpu", "amp": "none", "progress": "never", "monitor": "train_loss",
        "save_every_epoch": False, "save_best": False, "loggers": [], "lr": 1e-3,
        "run_dir": tmp / f"run{time.perf_counter_ns()}",
    }  # fmt: skip
    base.update(kw)
    return TrainingConfig(**base)


def trainer_throughput(
    model: nn.Module, data: Any, config: TrainingConfig
) -> tuple[float, list[float]]:
    """Best epoch throughput (samples/s) of a Trainer run, and all epochs'."""
    result = Trainer(model, nn.CrossEntropyLoss(), config).fit(data)
    values = [row["throughput"] for row in result.history]
    return max(values), values


def bare_throughput(
    model: nn.Module, ds: TensorDataset, batch: int, epochs: int, lr: float = 1e-3
) -> float:
    """Best epoch throughput of a plain loop: DataLoader, AdamW, backward, step."""
    loader = DataLoader(ds, batch_size=batch, shuffle=True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    best = 0.0
    model.train()
    for _ in range(epochs):
        t0, seen = time.perf_counter(), 0
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            seen += x.shape[0]
        best = max(best, seen / (time.perf_counter() - t0))
    return best


def row(name: str, ours: float, baseline: float, ratio: float, target: float | None,
        unit: str) -> dict[str, Any]:  # fmt: skip
    """One result row (the ``--json`` format)."""
    return {"name": name, "ours": ours, "baseline": baseline, "ratio": ratio,
            "target": target, "unit": unit}  # fmt: skip


def bench_trainer_vs_bare(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    """Trainer vs bare loop, same model/data/optimiser; best of ``--repeats`` alternations."""
    x, y = images(args.n_images, args.size)
    ds = TensorDataset(x, y)
    ours, bare = 0.0, 0.0
    for _ in range(args.repeats):  # alternate so load drift hits both sides alike
        torch.manual_seed(0)
        ours = max(
            ours,
            trainer_throughput(
                small_cnn(), ds, cfg(tmp, batch_size=args.batch, max_epochs=args.epochs)
            )[0],
        )
        torch.manual_seed(0)
        bare = max(bare, bare_throughput(small_cnn(), ds, args.batch, args.epochs))
    return [row("trainer_vs_bare_loop", ours, bare, ours / bare, 0.95, "samples/s")]


def write_cr(path: Path, pixels: np.ndarray) -> None:
    """Write an uncompressed 12-bit CR image with pydicom."""
    from medtl.io.testing import NO_PATIENT, image_dataset, write

    ds = image_dataset(
        pixels.astype(np.uint16),
        modality="CR",
        bits_stored=12,
        pixel_spacing=(0.5, 0.5),
        patient={**NO_PATIENT, "PatientID": "BENCH"},
    )
    write(ds, path)


def decoder() -> tuple[Callable[[dict], dict], str]:
    """The deterministic stage: ``medtl.io.load_scan`` when available, else ``dcmread``."""
    try:
        from medtl.io import load_scan
    except ImportError:
        load_scan = None

    def decode(item: dict) -> dict:
        if load_scan is not None:
            array = load_scan(item["image"]).array
        else:
            import pydicom

            array = pydicom.dcmread(item["image"]).pixel_array.astype(np.float32)
        array = np.asarray(array, dtype=np.float32).reshape(array.shape[-2:]) / 4095.0
        return {"image": torch.from_numpy(array)[None], "label": item["label"]}

    return decode, "medtl.io.load_scan" if load_scan is not None else "pydicom.dcmread"


def flip(sample: dict) -> dict:
    """Random horizontal flip (the augmentation applied after the cache)."""
    if torch.rand(()) < 0.5:
        return {**sample, "image": sample["image"].flip(-1)}
    return sample


class AugmentedList(torch.utils.data.Dataset):
    """In-memory samples with a random transform applied on access."""

    def __init__(self, samples: list[dict], transform: Callable[[dict], dict]) -> None:
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        return self.transform(self.samples[index])


def bench_dicom_cache(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    """Epoch throughput from DICOM files: cold cache, warm cache, in-memory tensors."""
    folder = tmp / "dicom"
    folder.mkdir()
    rng = np.random.default_rng(0)
    items = []
    for i in range(args.n_images):
        path = folder / f"img{i:04d}.dcm"
        write_cr(path, rng.integers(0, 4096, (args.size, args.size)))
        items.append({"image": str(path), "label": i % 2})
    decode, how = decoder()
    cache = tmp / "cache"
    common = {"batch_size": args.batch, "max_epochs": 1, "num_workers": args.workers}

    torch.manual_seed(0)
    cold_ds = cached_dataset(items, decode, flip, cache="disk", cache_dir=cache, cache_key="b")
    cold, _ = trainer_throughput(small_cnn(), cold_ds, cfg(tmp, **common))
    warm, memory = 0.0, 0.0
    # The same samples held in memory, with the same augmentation after them: the rows
    # compare where the decoded tensors live (disk cache or RAM), not what is done to them.
    mem_ds = AugmentedList([decode(item) for item in items], flip)
    for _ in range(args.repeats):
        torch.manual_seed(0)
        warm_ds = cached_dataset(items, decode, flip, cache="disk", cache_dir=cache,
                                 cache_key="b")  # fmt: skip
        warm = max(
            warm,
            trainer_throughput(
                small_cnn(), warm_ds, cfg(tmp, **{**common, "max_epochs": args.epochs})
            )[0],
        )
        torch.manual_seed(0)
        memory = max(
            memory,
            trainer_throughput(
                small_cnn(), mem_ds, cfg(tmp, **{**common, "max_epochs": args.epochs})
            )[0],
        )
    note = (
        f"samples/s ({how}, {args.workers} loader process(es), "
        f"{torch.get_num_threads()} compute thread(s))"
    )
    return [
        row("dicom_warm_cache_vs_memory", warm, memory, warm / memory, 0.9, note),
        row("dicom_cold_cache_vs_memory", cold, memory, cold / memory, None, note),
    ]


def step_rate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int,
              dtype: torch.dtype | None, channels_last: bool, train: bool) -> float:  # fmt: skip
    """Steps per second (after one untimed warm-up step): training steps or forward passes."""
    device = torch.device("cpu")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = to_memory_format(x)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train(train)

    def step() -> None:
        if not train:
            with torch.inference_mode(), autocast(device, dtype):
                model(x)
            return
        opt.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - t0)


def bench_bf16(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    """bf16 autocast + channels_last vs fp32 on a 2-D ResNet18 (same weights).

    Forward passes by default (``--amp-train`` for training steps): without native bf16
    (AVX512-BF16/AMX) oneDNN emulates bf16 and a ResNet18 training step takes minutes on a
    2-core CPU, which is also why ``amp="auto"`` stays in fp32 on such CPUs.
    """
    x, y = images(args.amp_batch, args.amp_size)
    fp32 = bf16 = 0.0
    for _ in range(args.repeats):
        torch.manual_seed(0)
        fp32 = max(fp32, step_rate(resnet18(), x, y, args.amp_steps, None, False, args.amp_train))
        torch.manual_seed(0)
        bf16 = max(bf16, step_rate(resnet18(), x, y, args.amp_steps, torch.bfloat16, True,
                                   args.amp_train))  # fmt: skip
        if not cpu_supports_bf16():
            break  # emulated bf16 is minutes per repeat; one is enough to see it
    native = "native bf16" if cpu_supports_bf16() else "no native bf16 on this CPU"
    what = "training steps/s" if args.amp_train else "forward passes/s"
    unit = f"{what} (ResNet18 {args.amp_size}px, batch {args.amp_batch}, {native})"
    return [row("bf16_channels_last_vs_fp32", bf16, fp32, bf16 / fp32, 2.0, unit)]


def warm_up() -> None:
    """Pay one-time process costs before timing (the first optimiser step imports
    torch._dynamo, about 4 s here), so they do not land on whichever workflow runs first."""
    param = nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([param], lr=1e-3)
    param.sum().backward()
    opt.step()
    import sklearn.metrics  # noqa: F401  (the validation metric)


class Samples(torch.utils.data.Dataset):
    """``{"image", "label"}`` samples from tensors, optionally through a random transform."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform: Any = None) -> None:
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict:
        image = self.x[index]
        if self.transform is not None:
            image = torch.as_tensor(self.transform(image)).as_subclass(torch.Tensor)
        return {"image": image, "label": int(self.y[index])}


def bench_feature_extraction(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    """medtl's two workflows for ``--head-epochs``: ``feature_extraction`` vs ``frozen_base``.

    Both run :func:`medtl.transfer.strategies.run_strategy` on the same ResNet18 and images,
    as ``medtl finetune`` would: feature extraction passes the plain images through the
    frozen base once and trains the head on the cached features; frozen base trains the head
    end to end with the CXR augmentation preset every epoch. Wall time of each, from a cold
    start (no cached features).
    """
    from medtl.models import create_backbone
    from medtl.transfer.presets import build_augmentation, default_augmentation
    from medtl.transfer.strategies import StrategyConfig, StrategyData, run_strategy

    x, y = images(args.n_images, args.size, seed=1)
    xv, yv = images(max(8, args.n_images // 4), args.size, seed=2)
    augment = build_augmentation(default_augmentation("cxr", 2), 2, seed=0)
    data = StrategyData(
        train=Samples(x, y, augment), val=Samples(xv, yv), train_plain=Samples(x, y)
    )
    training = cfg(tmp, batch_size=args.batch, monitor="val_loss")
    warm_up()
    times = {}
    for name in ("feature_extraction", "frozen_base"):
        torch.manual_seed(0)
        model = create_backbone("resnet18", spatial_dims=2, in_channels=1, num_outputs=1)
        strategy = StrategyConfig(
            name=name,
            head_epochs=args.head_epochs,
            finetune_epochs=0,
            feature_head_epochs=args.head_epochs,
            head_lr=1e-3,
        )
        t0 = time.perf_counter()
        run_strategy(model, strategy, training, data, tmp / f"fe_{name}")
        times[name] = time.perf_counter() - t0
    fe, fb = times["feature_extraction"], times["frozen_base"]
    unit = (
        f"s to train a head for {args.head_epochs} epochs ({args.n_images} images, "
        f"{args.size}px, medtl workflows)"
    )
    return [row("feature_extraction_vs_frozen_base", fe, fb, fb / fe, 10.0, unit)]


BENCHES = {
    "trainer": bench_trainer_vs_bare,
    "dicom": bench_dicom_cache,
    "bf16": bench_bf16,
    "features": bench_feature_extraction,
}


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print the rows as an aligned table on stdout."""
    head = f"{'benchmark':36} {'ours':>10} {'baseline':>10} {'ratio':>7} {'target':>7}  unit"
    print(head)
    print("-" * len(head))
    for r in rows:
        target = "-" if r["target"] is None else f">={r['target']:g}"
        print(f"{r['name']:36} {r['ours']:10.3f} {r['baseline']:10.3f} {r['ratio']:7.2f} "
              f"{target:>7}  {r['unit']}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks; print the table; optionally write JSON rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHES), default=None)
    parser.add_argument("--n-images", type=int, default=64)
    parser.add_argument("--size", type=int, default=64, help="image side for DICOM/FE rows")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per throughput run")
    parser.add_argument("--repeats", type=int, default=2, help="alternations; best is kept")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers (DICOM rows)")
    parser.add_argument("--amp-size", type=int, default=128, help="ResNet18 image side (bf16)")
    parser.add_argument("--amp-steps", type=int, default=1, help="timed bf16/fp32 steps")
    parser.add_argument("--amp-batch", type=int, default=1)
    parser.add_argument("--amp-train", action="store_true", help="time training steps")
    parser.add_argument("--head-epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="medtl-train-bench-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ["MEDTL_HOME"] = str(tmp / "home")  # never touch the real home
        for name in args.only or list(BENCHES):
            t0 = time.perf_counter()
            rows.extend(BENCHES[name](args, tmp))
            print(f"[{name}: {time.perf_counter() - t0:.1f}s]", file=sys.stderr, flush=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"cpu bf16 native: {cpu_supports_bf16()}")  # fmt: skip
    print_table(rows)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
