#!/usr/bin/env bash
# GPU smoke test of the training engine (run on a machine with a CUDA GPU).
#
#   1. a few fine-tuning steps of a 2-D ResNet18 through medtl's Trainer with
#      bf16 autocast and with fp16 autocast + GradScaler (channels_last), printing throughput;
#   2. a one-GPU DDP run under `torchrun --nproc_per_node=1` (NCCL backend).
#
# Exits non-zero on any failure, and with status 2 and a clear message when torch sees
# no CUDA device. Usage: bench/gpu_smoke.sh   (PYTHON=... to pick the interpreter)
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_smoke: no CUDA device visible to torch ($("$PYTHON" -c 'import torch; print(torch.__version__)')); run this on a GPU machine." >&2
  exit 2
fi

WORK="$(mktemp -d -t medtl-gpu-smoke-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
export MEDTL_HOME="$WORK/home"

cat > "$WORK/smoke.py" <<'PY'
"""Trainer on CUDA: bf16 and fp16+GradScaler fine-tune steps, or one DDP run (--ddp)."""
import sys
import time

import torch
from monai.networks.nets import resnet18
from torch import nn
from torch.utils.data import TensorDataset

from medtl.training import Trainer, TrainingConfig, cleanup_distributed

ddp = "--ddp" in sys.argv
work = sys.argv[1]
torch.manual_seed(0)
n, size, batch = 256, 224, 32
x = torch.rand(n, 1, size, size)
y = torch.randint(0, 2, (n,))
ds = TensorDataset(x, y)
modes = ["bf16"] if ddp else ["bf16", "fp16"]
for amp in modes:
    model = resnet18(spatial_dims=2, n_input_channels=1, num_classes=2)
    cfg = TrainingConfig(
        device="cuda", amp=amp, channels_last=True, batch_size=batch, max_epochs=2,
        lr=1e-3, monitor="train_loss", progress="never", num_workers=2,
        run_dir=f"{work}/{'ddp' if ddp else amp}",
    )
    trainer = Trainer(model, nn.CrossEntropyLoss(), cfg)
    t0 = time.perf_counter()
    result = trainer.fit(ds)
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    losses = [r["train_loss"] for r in result.history]
    assert all(torch.isfinite(torch.tensor(losses))), losses
    assert trainer.device.type == "cuda"
    expected = torch.bfloat16 if amp == "bf16" else torch.float16
    assert trainer.amp_dtype == expected, trainer.amp_dtype
    assert model.conv1.weight.dtype == torch.float32  # master weights stay fp32
    if trainer.dist.is_main:
        tag = f"ddp world={trainer.dist.world_size} backend={trainer.dist.backend}" if ddp else amp
        print(
            f"{tag:>28}: {result.history[-1]['throughput']:8.1f} samples/s (epoch 2), "
            f"losses {[round(v, 4) for v in losses]}, fit {wall:.1f}s, "
            f"{torch.cuda.get_device_name()}",
            flush=True,
        )
    if ddp:
        assert trainer.dist.backend == "nccl", trainer.dist.backend
if ddp:
    cleanup_distributed()
PY

echo "== Trainer on CUDA: ResNet18 2-D, bf16 and fp16 + GradScaler, channels_last"
"$PYTHON" "$WORK/smoke.py" "$WORK"

echo "== torchrun --nproc_per_node=1 (DDP, NCCL)"
"$PYTHON" -m torch.distributed.run --standalone --nproc_per_node=1 "$WORK/smoke.py" "$WORK" --ddp

echo "gpu_smoke: OK"
