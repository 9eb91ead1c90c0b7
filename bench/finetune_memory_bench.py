"""``medtl finetune --dry-run``'s estimate against a measured CPU training step, and its time.

For each setting (i3resnet152 width, input size, micro-batch, gradient checkpointing) a fresh
process builds the network with real weights and AdamW, runs one training step (forward,
backward, optimiser step) twice and reports how much its resident memory grew (peak RSS over
the two steps minus RSS before them: gradients, AdamW's two moments, activations and
temporaries; AdamW allocates its moments at the end of the first step, so the second step is
the steady state) and the faster step's wall time; the same setting's estimate
(:func:`medtl.transfer.memory.estimate_step`: gradients + optimiser state + activations,
fp32) is printed next to it, with the achieved
GFLOP/s (the estimate's step FLOPs / measured time). docs/foundation.md quotes the table.

    .venv/bin/python bench/finetune_memory_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: (width, spatial size X Y Z, micro-batch, gradient checkpointing)
SETTINGS = [
    (8, (96, 96, 64), 2, False),
    (8, (96, 96, 64), 2, True),
    (64, (128, 128, 96), 1, False),  # the real astra-ct width, a smaller volume
    (64, (128, 128, 96), 1, True),
]
QUICK = [(8, (64, 64, 32), 1, False), (8, (64, 64, 32), 1, True)]

_CHILD = r"""
import json, resource, sys, time
import torch
from medtl.models import create_backbone
width, size, batch, ckpt = json.loads(sys.argv[1])
torch.manual_seed(0)
model = create_backbone("i3resnet152", spatial_dims=3, num_outputs=1,
                        options={"width": width, "grad_checkpointing": ckpt}).train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
x = torch.rand(batch, 1, *size)
y = torch.ones(batch, 1)
loss_fn = torch.nn.BCEWithLogitsLoss()

def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()

def step() -> float:
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()
    opt.step()
    return time.perf_counter() - t0

before = rss()
first = step()
second = step()  # AdamW's moments exist from the first step's end: the second is the steady state
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"grown": peak - before, "seconds": min(first, second),
                  "threads": torch.get_num_threads()}))
"""


def _estimate(width: int, size: tuple[int, ...], batch: int, ckpt: bool) -> dict:
    from medtl.transfer.experiment import ExperimentConfig
    from medtl.transfer.memory import estimate_step

    config = ExperimentConfig.model_validate(
        {
            "name": "bench",
            "data": {"dataset": "unused", "modality": "ct", "preset": "merlin",
                     "spatial_size": list(size)},
            "model": {"backbone": "i3resnet152",
                      "options": {"width": width, "grad_checkpointing": ckpt}},
            "strategy": {"name": "full"},
            "training": {"batch_size": batch, "optimizer": "adamw"},
        }
    )  # fmt: skip
    est = estimate_step(config)
    return {
        "estimate": est.grad_bytes + est.optimizer_bytes + est.activation_bytes,
        "step_flops": est.step_flops,
        "parameters": est.parameters,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    import torch

    print(f"CPU capability: {torch.backends.cpu.get_cpu_capability()}; torch {torch.__version__}")
    header = f"{'width':>5} {'input X x Y x Z':>16} {'B':>2} {'ckpt':>5} {'params M':>9} "
    header += f"{'estimate MB':>12} {'measured MB':>12} {'ratio':>6} {'step s':>7} {'GFLOP/s':>8}"
    print(header)
    rows = []
    for width, size, batch, ckpt in QUICK if args.quick else SETTINGS:
        est = _estimate(width, size, batch, ckpt)
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, json.dumps([width, list(size), batch, ckpt])],
            capture_output=True, text=True, check=True, cwd=HERE.parent,
        )  # fmt: skip
        got = json.loads(done.stdout.strip().splitlines()[-1])
        ratio = est["estimate"] / got["grown"]
        rate = est["step_flops"] / got["seconds"] / 1e9
        shape = " x ".join(map(str, size))
        print(
            f"{width:5d} {shape:>16} {batch:2d} {ckpt!s:>5} {est['parameters'] / 1e6:9.2f} "
            f"{est['estimate'] / 1e6:12.1f} {got['grown'] / 1e6:12.1f} {ratio:6.2f} "
            f"{got['seconds']:7.2f} {rate:8.1f}"
        )
        rows.append({"width": width, "size": size, "batch": batch, "ckpt": ckpt, **est, **got})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
