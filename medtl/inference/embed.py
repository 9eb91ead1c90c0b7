"""Whole-scan embeddings from a model package: ``Predictor.embed`` and ``medtl embed``.

The embedding is the global average of a stage's feature map (``layer4`` by default, 2048
values for ``i3resnet152``: Merlin's image embedding before its heads) for the whole scan,
after the package's recorded preprocessing (:func:`medtl.data.scan_input.scan_to_input`:
for the ``merlin`` preset, RAS orientation, 1.5 x 1.5 x 3 mm, HU window, pad and centre crop).
Scans outside the package's domain (another modality, a 2D image for a 3D model) are refused
by the same domain guard ``predict`` uses, before the network runs.

Example:
    >>> predictor = Predictor.from_package("astra-ct")  # doctest: +SKIP
    >>> predictor.embed("ct_series.zip").vector.shape  # doctest: +SKIP
    (2048,)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = ["EmbeddingResult", "ScanRefusedError", "embed_scan", "embed_tensor", "embedding_layers"]

DEFAULT_LAYER = "layer4"


class ScanRefusedError(ValueError):
    """The domain guard refused the scan (wrong modality or dimensionality).

    Attributes:
        reasons: the guard's reasons, one sentence each.
    """

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(" ".join(reasons) or "the scan is outside the model's domain")
        self.reasons = reasons


@dataclass
class EmbeddingResult:
    """One scan's embedding.

    Attributes:
        vector: ``(D,)`` float32 pooled features.
        layer: the stage it was pooled from.
        package: ``name@version`` of the package.
        input_shape: the network input's spatial shape after preprocessing.
        seconds: preprocessing + forward time.
        warnings: loader and domain-guard warnings.
    """

    vector: np.ndarray
    layer: str
    package: str
    input_shape: tuple[int, ...]
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


def embedding_layers(model: torch.nn.Module) -> list[str]:
    """The stage names a model can be embedded from (``layer4`` for single-stage models)."""
    layers = getattr(model, "feature_layers", None)
    return list(layers()) if callable(layers) else [DEFAULT_LAYER]


def embed_tensor(
    model: torch.nn.Module, x: torch.Tensor, layer: str = DEFAULT_LAYER
) -> torch.Tensor:
    """Globally average-pooled features ``(B, C)`` of one stage for a preprocessed batch.

    Args:
        model: a backbone; ``forward_stages`` is used when it has one, else the last
            stage (``forward_features``), which answers to ``layer4``.
        x: ``(B, C, *spatial)`` network input.
        layer: stage name (see :func:`embedding_layers`).

    Returns:
        ``(B, C_layer)`` float tensor.

    Raises:
        ValueError: the model has no such stage.
    """
    available = embedding_layers(model)
    if layer not in available:
        raise ValueError(f"no layer {layer!r} to embed from; available: {', '.join(available)}")
    stages = getattr(model, "forward_stages", None)
    feats = stages(x, (layer,))[layer] if callable(stages) else model.forward_features(x)
    return feats.flatten(2).mean(dim=2)


def embed_scan(
    model: torch.nn.Module,
    spec: Any,
    scan: Any,
    *,
    guard: Any = None,
    layer: str = DEFAULT_LAYER,
    package: str = "",
    device: str | torch.device = "cpu",
    backend: str | None = None,
    runner: Any = None,
) -> EmbeddingResult:
    """Embed one whole scan after the recorded preprocessing.

    Args:
        model: the package's backbone (eval mode).
        spec: the package's ``PreprocessingSpec``.
        scan: a :class:`medtl.io.Scan`, or a path / bytes for :func:`medtl.io.load_scan`.
        guard: a :class:`~medtl.inference.domain.DomainGuard` (``None``: no check).
        layer: stage to pool (``layer4``; ``layer3``, ``layer2`` for ``i3resnet152``).
        package: the package reference, for the result.
        device: where the model is.
        backend: how the forward runs (:mod:`medtl.inference.embed_backend`; ``None``: the
            default kept by the benchmark, or ``MEDTL_EMBED_BACKEND``).
        runner: a reusable :class:`~medtl.inference.embed_backend.EmbedRunner` for this
            model and layer (keeps exported sessions between calls); overrides ``backend``.

    Returns:
        The :class:`EmbeddingResult`.

    Raises:
        medtl.io.ScanError: unreadable input.
        ScanRefusedError: the domain guard refused the scan.
        ValueError: unknown layer.
    """
    from medtl.data.scan_input import scan_to_input

    if not hasattr(scan, "array"):
        from medtl.io import load_scan

        scan = load_scan(scan)
    if layer not in embedding_layers(model):
        raise ValueError(
            f"no layer {layer!r} to embed from; available: {', '.join(embedding_layers(model))}"
        )
    warnings = list(scan.warnings)
    if guard is not None:
        check = guard.check_scan(scan)
        if check.status == "refuse":
            raise ScanRefusedError(list(check.reasons))
        warnings += [r for r in check.reasons if r not in warnings]
    start = time.perf_counter()
    from medtl.inference.embed_backend import EmbedRunner

    x = scan_to_input(scan, spec)[None].to(device)
    if runner is None or runner.layer != layer:
        runner = EmbedRunner(model, layer, backend)
    vector = runner(x)[0].numpy()
    seconds = time.perf_counter() - start
    logger.info("embedded a %s scan from %s in %.1f s", scan.modality, layer, seconds)
    return EmbeddingResult(
        vector=vector,
        layer=layer,
        package=package,
        input_shape=tuple(int(s) for s in x.shape[2:]),
        seconds=seconds,
        warnings=warnings,
    )
