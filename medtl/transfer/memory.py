"""The memory and compute of one training step, before training: ``medtl finetune --dry-run``.

The model of the config is built on PyTorch's ``meta`` device (shapes only: no weights are
allocated or read, so the real 3D ResNet-152 at 224 x 224 x 160 costs nothing here) and one
training forward of a micro-batch runs on it. What that forward keeps for the backward pass is
counted with ``torch.autograd.graph.saved_tensors_hooks`` (each saved tensor once, parameters
excluded): the activation memory. With gradient checkpointing (``model.options.
grad_checkpointing``) a checkpointed block keeps only its input and recomputes the rest in the
backward pass, so the estimate is: what is saved outside the blocks + every block's input + the
largest block's own saves (recomputed one block at a time). ``FlopCounterMode`` counts the
forward's floating-point operations on the same pass.

One optimiser step then needs about::

    parameters (fp32)                  4 B x parameters
  + gradients (fp32)                   4 B x trainable parameters
  + optimiser state                    8 B x trainable (AdamW, Adam: two moments; SGD: 4 B)
  + activations of one micro-batch     counted above (float32; bf16 autocast about half)

and the time of one step is about ``(3 + c) x forward FLOPs x micro-batch / achieved FLOP/s``
(forward + backward = 3 forwards; ``c = 1`` with gradient checkpointing, which runs each
block's forward again). Not counted: the CUDA context and cuDNN workspaces (about 0.5-1 GB
per GPU), the allocator's caching, data loading. The trainable parameters are those of the
strategy's largest phase (``full``/``scratch``: all; ``staged``: the last
``unfreeze_blocks`` blocks and the head; ``frozen_base``/``feature_extraction``: the head).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["StepEstimate", "estimate_step"]

_GB = 1e9
#: optimiser state per trainable parameter, in float32 values
_OPTIMISER_SLOTS = {"adamw": 2, "adam": 2, "sgd": 1}


@dataclass
class StepEstimate:
    """What one optimiser step of a config needs, per process.

    Attributes:
        name: the config's name.
        backbone: the backbone name.
        input_shape: one micro-batch ``(B, C, *spatial_size)``.
        parameters: parameter count.
        trainable: trainable parameters in the strategy's largest phase.
        param_bytes: parameters and buffers (float32).
        grad_bytes: gradients of the trainable parameters (float32).
        optimizer_bytes: the optimiser's state.
        input_bytes: the micro-batch itself (float32).
        activation_bytes: saved for backward, float32.
        activation_bytes_bf16: the same forward with bf16 tensors (bf16 autocast: about this).
        forward_flops: floating-point operations of one forward of the micro-batch.
        grad_checkpointing: whether the blocks recompute in the backward pass.
        optimizer: the optimiser's name.
        notes: what the estimate assumed.
    """

    name: str
    backbone: str
    input_shape: tuple[int, ...]
    parameters: int
    trainable: int
    param_bytes: int
    grad_bytes: int
    optimizer_bytes: int
    input_bytes: int
    activation_bytes: int
    activation_bytes_bf16: int
    forward_flops: int
    grad_checkpointing: bool
    optimizer: str
    notes: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        """Parameters, gradients, optimiser state, input and activations (float32)."""
        return (
            self.param_bytes
            + self.grad_bytes
            + self.optimizer_bytes
            + self.input_bytes
            + self.activation_bytes
        )

    @property
    def total_bytes_bf16(self) -> int:
        """The same with bf16 autocast (fp32 weights, gradients and optimiser state)."""
        return self.total_bytes - self.activation_bytes + self.activation_bytes_bf16

    @property
    def step_flops(self) -> int:
        """Forward + backward (+ the recomputed forward with gradient checkpointing)."""
        return self.forward_flops * (4 if self.grad_checkpointing else 3)

    def lines(self) -> list[str]:
        """The estimate as the ``--dry-run`` prints it.

        Returns:
            Text lines; the last one states the total in bytes.
        """
        batch, *rest = self.input_shape
        shape = " x ".join(str(s) for s in rest)
        ckpt = "on (blocks recompute in backward)" if self.grad_checkpointing else "off"
        out = [
            f"dry run of {self.name}: nothing is trained, no run folder is written",
            f"model: {self.backbone}, {self.parameters / 1e6:.2f} M parameters, "
            f"{self.trainable / 1e6:.2f} M trainable (largest phase)",
            f"micro-batch: {batch} x ({shape}) per process; gradient checkpointing {ckpt}",
            f"  parameters + buffers  {_gb(self.param_bytes)}",
            f"  gradients             {_gb(self.grad_bytes)}",
            f"  optimiser ({self.optimizer})      {_gb(self.optimizer_bytes)}",
            f"  input batch           {_gb(self.input_bytes)}",
            f"  activations (fp32)    {_gb(self.activation_bytes)}",
            f"  activations (bf16)    {_gb(self.activation_bytes_bf16)}",
            f"total with bf16 autocast: {_gb(self.total_bytes_bf16)}",
            f"compute: {self.forward_flops / batch / 1e9:.1f} GFLOP per sample forward; one step "
            f"{self.step_flops / 1e12:.3f} TFLOP (time = that / achieved FLOP/s)",
            *(f"note: {note}" for note in self.notes),
            "not counted: CUDA context and cuDNN workspaces (about 0.5-1 GB per GPU), "
            "allocator caching, data loading",
            f"estimated memory for one training step (fp32): {_gb(self.total_bytes)} "
            f"({self.total_bytes} bytes)",
        ]
        return out


def _gb(n: int) -> str:
    return f"{n / _GB:8.3f} GB"


def _trainable_modules(model: nn.Module, strategy: Any) -> list[nn.Module]:
    """The modules the strategy trains in its largest phase."""
    name = str(strategy.name)
    if name in ("full", "scratch"):
        return [model]
    if name == "staged":
        blocks = list(model.blocks())
        n = len(blocks) if strategy.unfreeze_blocks == "all" else int(strategy.unfreeze_blocks)
        return [model.head, *blocks[len(blocks) - n :]]
    return [model.head]


def _checkpointed_blocks(model: nn.Module) -> list[nn.Module]:
    """The units a model recomputes in backward (i3resnet: every bottleneck), if enabled."""
    encoder = getattr(model, "encoder", None)
    if not getattr(model, "grad_checkpointing", False) or encoder is None:
        return []
    return [block for stage in getattr(encoder, "stages", ()) for block in getattr(encoder, stage)]


def _saved_bytes(model: nn.Module, x: torch.Tensor, blocks: list[nn.Module]) -> dict[str, int]:
    """Bytes a training forward saves for backward, in all and per checkpointed block."""
    params = {id(p) for p in model.parameters()}
    seen: dict[int, torch.Tensor] = {}  # keeps the tensors alive, so ids stay unique
    state = {"count": 0, "inputs": 0, "largest": 0, "blocks": 0}
    starts: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        base = t._base if t._base is not None else t
        if id(base) not in params and id(base) not in seen:
            seen[id(base)] = base
            state["count"] += base.numel() * base.element_size()
        return t

    def before(_module: nn.Module, args: tuple) -> None:
        starts.append(state["count"])
        state["inputs"] += args[0].numel() * args[0].element_size()

    def after(_module: nn.Module, _args: tuple, _out: Any) -> None:
        delta = state["count"] - starts.pop()
        state["blocks"] += delta
        state["largest"] = max(state["largest"], delta)

    hooks = [b.register_forward_pre_hook(before) for b in blocks]
    hooks += [b.register_forward_hook(after) for b in blocks]
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    if not blocks:
        return {"activations": state["count"]}
    outside = state["count"] - state["blocks"]
    return {"activations": outside + state["inputs"] + state["largest"]}


def _activations(model: nn.Module, x: torch.Tensor) -> int:
    """Activation bytes of one training forward (checkpointing as the model is set)."""
    blocks = _checkpointed_blocks(model)
    had = getattr(model, "grad_checkpointing", None)
    if had is not None:
        # count the full graph and derive the checkpointed one from its blocks (the
        # checkpoint's own hooks would hide the saves inside the blocks)
        model.grad_checkpointing = False
    try:
        return _saved_bytes(model.train(), x, blocks)["activations"]
    finally:
        if had is not None:
            model.grad_checkpointing = had


def _forward_flops(model: nn.Module, x: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return int(counter.get_total_flops())


def _meta_model(config: Any, spec: Any) -> nn.Module:
    """The config's backbone on the meta device (shapes only; one output: the head's size
    hardly matters)."""
    from medtl.models import create_backbone

    m = config.model
    with torch.device("meta"):
        return create_backbone(
            m.backbone,
            spatial_dims=spec.spatial_dims,
            in_channels=spec.in_channels,
            num_outputs=1,
            dropout=m.dropout,
            hidden_dim=m.hidden_dim,
            pool=m.pool,
            options=m.options or None,
            input_size=list(spec.spatial_size),
        )


def estimate_step(config: Any, batch_size: int | None = None, world_size: int = 1) -> StepEstimate:
    """Estimate one training step of an experiment config without training.

    Args:
        config: an :class:`~medtl.transfer.experiment.ExperimentConfig`.
        batch_size: the effective batch (default: ``training.batch_size``).
        world_size: processes sharing it (GPUs under ``torchrun``).

    Returns:
        The :class:`StepEstimate` for one process.

    Raises:
        ValueError: the batch does not split over ``world_size x grad_accum_steps``.

    Example:
        >>> cfg = load_config("configs/astra_finetune.yaml")  # doctest: +SKIP
        >>> estimate_step(cfg).total_bytes_bf16  # doctest: +SKIP
    """
    training = config.training
    if batch_size is not None:
        training = training.model_copy(update={"batch_size": batch_size})
    micro = training.micro_batch_size(world_size)
    spec = config.preprocessing()
    model = _meta_model(config, spec)
    for p in model.parameters():
        p.requires_grad_(False)
    for module in _trainable_modules(model, config.strategy):
        for p in module.parameters():
            p.requires_grad_(True)
    shape = (micro, int(spec.in_channels), *(int(s) for s in spec.spatial_size))
    x = torch.empty(shape, device="meta")
    n_params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    activations = _activations(model, x)
    flops = _forward_flops(model, x)
    activations_bf16 = _activations(model.to(torch.bfloat16), x.to(torch.bfloat16))
    notes = []
    if str(config.strategy.name) == "feature_extraction":
        notes.append("feature_extraction trains its head on cached features: the network's "
                     "activations above apply to the extraction pass only")  # fmt: skip
    slots = _OPTIMISER_SLOTS.get(str(training.optimizer), 2)
    return StepEstimate(
        name=config.name,
        backbone=config.model.backbone,
        input_shape=shape,
        parameters=n_params,
        trainable=trainable,
        param_bytes=4 * n_params + buffers,
        grad_bytes=4 * trainable,
        optimizer_bytes=4 * slots * trainable,
        input_bytes=4 * int(torch.Size(shape).numel()),
        activation_bytes=activations,
        activation_bytes_bf16=activations_bf16,
        forward_flops=flops,
        grad_checkpointing=bool(getattr(model, "grad_checkpointing", False)),
        optimizer=str(training.optimizer),
        notes=notes,
    )


def starting_weights_line(config: Any) -> str:
    """Where the config's starting weights are, or why they cannot be found (a dry run's
    check that the run would start).

    Args:
        config: the experiment config.

    Returns:
        One line.
    """
    from medtl.transfer.provenance import starting_weights_origin

    try:
        origin = starting_weights_origin(config)
    except (OSError, RuntimeError, ValueError, KeyError) as err:
        return f"starting weights: NOT FOUND: {err}"
    if origin is None:
        return "starting weights: none (the network starts from random weights)"
    return f"starting weights: {origin.path} (sha256 {str(origin.sha256)[:16]})"
