"""How the embedding forward pass runs: eager PyTorch, ``channels_last_3d``, or ONNX Runtime.

Every backend computes the same pooled stage output as
:func:`medtl.inference.embed.embed_tensor` (eager fp32 is the reference); a backend is only
worth using when it is faster **and** its embedding stays within ``1e-3`` relative L2 of
eager fp32. ``bench/foundation_bench.py`` measures all of them side by side (with
``torch.compile``, which lost there: compilation costs minutes for a 3D ResNet-152 and every
new input shape recompiles) and :data:`DEFAULT_BACKEND` is the one it kept; the table is in
``bench/results.md``. ``MEDTL_EMBED_BACKEND`` overrides it, and an unavailable backend (no
``onnxruntime``, or an export that fails) falls back to eager with a log line, never to
different numbers.

* ``eager``: ``torch.inference_mode()`` forward, contiguous (NCDHW) tensors.
* ``channels_last_3d``: model and input in ``torch.channels_last_3d`` memory format (oneDNN
  picks blocked NDHWC kernels). The model is converted in place, once.
* ``onnxruntime``: the pooled stage exported to ONNX once per (weights, layer, input shape)
  into ``MEDTL_HOME/cache/onnx`` (later processes reuse it: the export of a 3D ResNet-152
  takes about 15 s) and run by ONNX Runtime's CPU provider with torch's thread count (the
  optional ``onnx`` extra: ``pip install medtl[onnx]``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "EmbedRunner", "resolve_backend"]

BACKENDS = ("eager", "channels_last_3d", "onnxruntime")
#: the embed path's backend: kept by bench/foundation_bench.py (see bench/results.md)
DEFAULT_BACKEND = "onnxruntime"
#: largest relative L2 difference to eager fp32 a backend may have
TOLERANCE = 1e-3


def resolve_backend(backend: str | None = None) -> str:
    """``backend``, else ``MEDTL_EMBED_BACKEND``, else :data:`DEFAULT_BACKEND` (validated)."""
    name = backend or os.environ.get("MEDTL_EMBED_BACKEND") or DEFAULT_BACKEND
    if name not in BACKENDS:
        raise ValueError(f"unknown embed backend {name!r}; use one of {', '.join(BACKENDS)}")
    return name


class _PooledStage(torch.nn.Module):
    """The exported graph: input -> pooled features of one stage."""

    def __init__(self, model: torch.nn.Module, layer: str) -> None:
        super().__init__()
        self.model = model
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from medtl.inference.embed import embed_tensor

        return embed_tensor(self.model, x, self.layer)


class EmbedRunner:
    """Runs ``embed_tensor(model, x, layer)`` with one backend.

    Args:
        model: the backbone (eval mode).
        layer: the stage to pool.
        backend: one of :data:`BACKENDS` (``None``: :func:`resolve_backend`).

    Example:
        >>> runner = EmbedRunner(model, "layer4", "channels_last_3d")  # doctest: +SKIP
        >>> runner(x).shape  # doctest: +SKIP
        torch.Size([1, 2048])
    """

    def __init__(self, model: torch.nn.Module, layer: str, backend: str | None = None) -> None:
        self.model = model
        self.layer = layer
        self.backend = resolve_backend(backend)
        self._sessions: dict[tuple[int, ...], Any] = {}
        self._key: str | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *spatial)`` input -> ``(B, D)`` float32 embedding (on the CPU)."""
        from medtl.inference.embed import embed_tensor

        if self.backend == "onnxruntime" and x.device.type == "cpu":
            session = self._session(tuple(x.shape))
            if session is not None:
                out = session.run(None, {"x": x.detach().float().contiguous().numpy()})[0]
                return torch.from_numpy(out)
        model = self.model
        if self.backend == "channels_last_3d" and x.dim() == 5:
            model = model.to(memory_format=torch.channels_last_3d)
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with torch.inference_mode():
            return embed_tensor(model, x, self.layer).float().cpu()

    def _model_key(self) -> str:
        """Short SHA-256 of the weights and the layer (names the exported graphs)."""
        if self._key is None:
            digest = hashlib.sha256(self.layer.encode())
            for name, tensor in sorted(self.model.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            self._key = digest.hexdigest()[:16]
        return self._key

    def _export(self, shape: tuple[int, ...]) -> Path:
        """The ONNX graph for this input shape, exported once into the cache."""
        from medtl.paths import home_subdir

        folder = home_subdir("cache") / "onnx"
        folder.mkdir(exist_ok=True)
        size = "x".join(map(str, shape))
        path = folder / f"embed-{self.layer}-{self._model_key()}-{size}.onnx"
        if path.is_file():
            return path
        fd, name = tempfile.mkstemp(suffix=".onnx", dir=folder)
        os.close(fd)
        tmp = Path(name)
        try:
            # the TorchScript exporter (no onnxscript needed); its deprecation and the
            # tracer's shape notes are expected: one graph per input shape
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                torch.onnx.export(_PooledStage(self.model, self.layer).eval(),
                                  (torch.zeros(shape, dtype=torch.float32),), str(tmp),
                                  input_names=["x"], dynamo=False)  # fmt: skip
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        logger.info("exported the %s embedding graph for %s to %s", self.layer, shape, path.name)
        return path

    def _session(self, shape: tuple[int, ...]) -> Any:
        """An ONNX Runtime session for this input shape (``None``: fall back to eager)."""
        if shape in self._sessions:
            return self._sessions[shape]
        session = None
        try:
            import onnxruntime as ort
        except ImportError:
            logger.info("onnxruntime is not installed (pip install medtl[onnx]); eager embedding")
        else:
            try:
                options = ort.SessionOptions()
                options.intra_op_num_threads = torch.get_num_threads()
                session = ort.InferenceSession(
                    str(self._export(shape)), options, providers=["CPUExecutionProvider"]
                )
            except Exception as err:  # any failure means: eager, the same numbers
                logger.warning("onnxruntime backend failed (%s); embedding with eager", err)
        self._sessions[shape] = session
        return session
