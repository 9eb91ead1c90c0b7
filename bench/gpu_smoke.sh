#!/usr/bin/env bash
# GPU smoke test of the training engine (run on a machine with a CUDA GPU).
#
#   1. a few fine-tuning steps of a 2-D ResNet18 through medtl's Trainer with
#      bf16 autocast and with fp16 autocast + GradScaler (channels_last), printing throughput;
#   2. a one-GPU DDP run under `torchrun --nproc_per_node=1` (NCCL backend);
#   3. astra-ct (i3resnet152) staged fine-tune at 224x224x160, batch 2, bf16 autocast and
#      gradient checkpointing (head epoch, then layer4 unfrozen), printing throughput and peak
#      GPU memory. Uses the registered astra-ct package (`medtl models fetch astra-ct`, in
#      MEDTL_HOME) when there is one, else the same network with random weights.
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
USER_HOME="${MEDTL_HOME:-$HOME/.medtl}"  # where a fetched astra-ct would be registered
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

cat > "$WORK/foundation.py" <<'PY'
"""astra-ct staged fine-tune on CUDA: bf16 autocast + gradient checkpointing at 224x224x160.

Environment knobs (for a CPU dry run of this script's logic): SMOKE_DEVICE (cuda),
SMOKE_SIZE (224,224,160), SMOKE_WIDTH (64: the real network), SMOKE_AMP (bf16).
"""
import os
import sys
import time

import torch
from torch.utils.data import TensorDataset

from medtl.models import PackageError, create_backbone, load_package
from medtl.training import TrainingConfig
from medtl.transfer.strategies import StrategyConfig, StrategyData, run_strategy

work, user_home = sys.argv[1], sys.argv[2]
device = os.environ.get("SMOKE_DEVICE", "cuda")
size = tuple(int(v) for v in os.environ.get("SMOKE_SIZE", "224,224,160").split(","))
width = int(os.environ.get("SMOKE_WIDTH", "64"))
amp = os.environ.get("SMOKE_AMP", "bf16")
torch.manual_seed(0)
model, source = None, "random weights (astra-ct not fetched)"
if width == 64:
    os.environ["MEDTL_HOME"] = user_home  # read the registry of the user's home
    try:
        model, _ = load_package("astra-ct")
        source = "astra-ct weights"
    except PackageError:
        pass
    os.environ["MEDTL_HOME"] = f"{work}/home"
if model is None:
    model = create_backbone("i3resnet152", spatial_dims=3, options={"width": width})
model.reset_head(1)
model.set_grad_checkpointing(True)
# Merlin's input: (B, 1, X, Y, Z) after the merlin preset, in [0, 1]
n_train, n_val, batch = 8, 2, 2
x = torch.rand(n_train + n_val, 1, *size)
y = torch.randint(0, 2, (n_train + n_val,)).float()
data = StrategyData(
    train=TensorDataset(x[:n_train], y[:n_train]), val=TensorDataset(x[n_train:], y[n_train:])
)
training = TrainingConfig(
    device=device, amp=amp, batch_size=batch, progress="never", num_workers=0
)
strategy = StrategyConfig(
    name="staged", head_epochs=1, finetune_epochs=2, unfreeze_blocks=1, head_lr=1e-3
)
if device == "cuda":
    torch.cuda.reset_peak_memory_stats()
t0 = time.perf_counter()
result = run_strategy(model, strategy, training, data, f"{work}/foundation")
if device == "cuda":
    torch.cuda.synchronize()
wall = time.perf_counter() - t0
head, finetune = result.phases
losses = [r["train_loss"] for r in head.history + finetune.history]
assert all(torch.isfinite(torch.tensor(losses))), losses
trainable = sum(p.numel() for p in model.encoder.layer4.parameters())
assert result.trainable_parameters >= trainable, (result.trainable_parameters, trainable)
peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
name = torch.cuda.get_device_name() if device == "cuda" else device
print(
    f"astra-ct staged ({source}), {'x'.join(map(str, size))}, batch {batch}, {amp}, "
    f"checkpointing: head {head.history[-1]['throughput']:.2f} vol/s, layer4 fine-tune "
    f"{finetune.history[-1]['throughput']:.2f} vol/s (epoch 2), peak GPU memory {peak:.1f} GiB, "
    f"fit {wall:.0f}s, losses {[round(v, 3) for v in losses]}, {name}",
    flush=True,
)
PY

echo "== astra-ct (i3resnet152) staged fine-tune, 224x224x160, batch 2, bf16, checkpointing"
"$PYTHON" "$WORK/foundation.py" "$WORK" "$USER_HOME"

echo "gpu_smoke: OK"
