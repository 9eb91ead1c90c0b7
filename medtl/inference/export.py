"""A model package's network as a TorchScript or ONNX file that runs without medtl.

``medtl models export PACKAGE --format torchscript|onnx --out FILE`` writes ``FILE`` and a
sidecar ``FILE.json`` (:func:`export_network`):

* the network is traced (``torch.jit.trace`` / ``torch.onnx.export`` of the same traced
  graph) with the package's calibrator as its final module, so the output is the probability
  :class:`~medtl.inference.Predictor` gives (``output="probabilities"``, the default for
  classifiers: ``(N, 1)`` P(positive label) for a one-output package, ``(N, k)`` class
  probabilities otherwise); ``output="logits"`` stops before the calibrator and
  ``output="embedding"`` (the default for encoder-only packages) gives the pooled ``layer4``
  features, as ``Predictor.embed``;
* the input is the package's preprocessed tensor ``(N, C, *spatial_size)``, float32: the
  sidecar records the preprocessing spec, the same steps as MONAI transforms
  (:func:`medtl.inference.bundle_transforms.array_transforms`) and in words, the output's
  channels, the calibrator's parameters, the operating points and the licence;
* before the file is kept, the export is run on a test input and compared with the eager
  network (within :data:`TOLERANCE`; ONNX with ONNX Runtime when it is installed,
  ``pip install medtl[onnx]``).

The export does not contain the domain guard (``medtl predict`` refuses out-of-domain scans)
nor the sliding windows ``medtl predict`` runs over volumes of a 3D package without geometry:
the exported network classifies one ``spatial_size`` input.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = [
    "EXPORT_FORMATS",
    "OUTPUTS",
    "TOLERANCE",
    "CalibratedOutput",
    "ExportError",
    "ExportedNetwork",
    "export_network",
    "medtl_licence",
    "save_torchscript",
    "traced_network",
    "weights_licence",
]

EXPORT_FORMATS = ("torchscript", "onnx")
#: what an exported network computes
OUTPUTS = ("probabilities", "logits", "embedding")
#: largest difference to the eager network an export may have: absolute for probabilities,
#: relative to the largest value for logits and embeddings (a logit of 20 computed by another
#: convolution algorithm moves by about 1e-5 in float32)
TOLERANCE = 1e-5
#: medtl's own licence (pyproject.toml), used when the installed metadata does not say
_MEDTL_LICENCE = "Apache-2.0"
#: ONNX opset (ONNX Runtime 1.17+ runs it)
_OPSET = 17


class ExportError(RuntimeError):
    """The package cannot be exported, or the export does not give the network's numbers."""


class CalibratedOutput(torch.nn.Module):
    """The package's calibrator as torch operations: logits ``(N, k)`` -> probabilities.

    The same arithmetic as :meth:`Predictor.calibrate` (in float32 here, float64 there; the
    two agree to about 1e-7): temperature ``sigmoid(z / T)`` or ``softmax(z / T)``, Platt
    ``sigmoid(a z + b)``, isotonic linear interpolation between the knots clipped at the ends
    (``numpy.interp``), written as a sum of clamped segments so that it traces to plain
    ONNX operators; no calibrator: sigmoid / softmax.

    Args:
        calibration: the card's calibrator dict (``None``: uncalibrated).
        num_outputs: the network's outputs (1: binary).

    Raises:
        ValueError: an unknown calibrator, or a binary-only one on several outputs.
    """

    def __init__(self, calibration: dict[str, Any] | None, num_outputs: int) -> None:
        super().__init__()
        self.binary = int(num_outputs) == 1
        self.method = str(calibration["method"]) if calibration else "none"
        if self.method in ("platt", "isotonic") and not self.binary:
            raise ValueError(f"a {self.method} calibrator needs a one-output package")
        scale, bias = 1.0, 0.0
        if self.method == "temperature":
            scale = 1.0 / float(calibration["temperature"])  # type: ignore[index]
        elif self.method == "platt":
            scale, bias = float(calibration["a"]), float(calibration["b"])  # type: ignore[index]
        elif self.method == "isotonic":
            self._knots(calibration)  # type: ignore[arg-type]
        elif self.method != "none":
            raise ValueError(f"unknown calibration method {self.method!r}")
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))
        self.register_buffer("bias", torch.tensor(bias, dtype=torch.float32))

    def _knots(self, calibration: dict[str, Any]) -> None:
        x = np.asarray(calibration["x"], dtype=np.float64)
        y = np.asarray(calibration["y"], dtype=np.float64)
        dx, dy = np.diff(x), np.diff(y)
        ramp = dx > 0
        slope = np.where(ramp, dy / np.where(ramp, dx, 1.0), 0.0)
        # a zero-width segment (repeated knot) is a step, as numpy.interp takes it
        jump = np.where(ramp, 0.0, dy)
        self.register_buffer("y0", torch.tensor(float(y[0]), dtype=torch.float32))
        for name, value in (("x0", x[:-1]), ("dx", dx), ("slope", slope), ("jump", jump)):
            self.register_buffer(name, torch.as_tensor(value, dtype=torch.float32))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """``(N, k)`` logits -> ``(N, k)`` probabilities (``(N, 1)`` P(positive) if binary)."""
        if self.method == "isotonic":
            d = logits.unsqueeze(-1) - self.x0
            ramp = torch.minimum(torch.clamp(d, min=0.0), self.dx) * self.slope
            step = torch.where(d >= 0, self.jump, torch.zeros_like(self.jump))
            return self.y0 + (ramp + step).sum(-1)
        z = logits * self.scale + self.bias
        return torch.sigmoid(z) if self.binary else torch.softmax(z, dim=-1)


class ExportedNetwork(torch.nn.Module):
    """What an export computes: ``forward`` gives ``output``, ``embed`` the pooled features.

    Args:
        model: the package's backbone (eval mode).
        output: one of :data:`OUTPUTS`.
        calibration: the calibrator module (needed for ``probabilities``).
        layer: the stage ``embed`` (and ``output="embedding"``) pools.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        output: str,
        calibration: CalibratedOutput | None = None,
        layer: str = "layer4",
    ) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}")
        if output == "probabilities" and calibration is None:
            raise ValueError("output probabilities needs the calibration module")
        self.model = model
        self.output = output
        self.calibration = calibration
        self.layer = layer

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, *spatial)`` -> ``(N, D)`` globally average-pooled ``layer`` features."""
        from medtl.inference.embed import embed_tensor

        return embed_tensor(self.model, x, self.layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, *spatial)`` -> probabilities, logits or embedding (see ``output``)."""
        if self.output == "embedding":
            return self.embed(x)
        logits = self.model(x)
        if self.calibration is not None and self.output == "probabilities":
            return self.calibration(logits)
        return logits


def medtl_licence() -> str:
    """medtl's licence as its installed metadata states it (pyproject.toml's)."""
    from importlib import metadata

    try:
        meta = metadata.metadata("medtl")
    except metadata.PackageNotFoundError:
        return _MEDTL_LICENCE
    return meta.get("License-Expression") or meta.get("License") or _MEDTL_LICENCE


def weights_licence(card: Any) -> str | None:
    """The weights' licence as the card's provenance states it (``None``: it does not).

    Args:
        card: the package's model card.

    Returns:
        The licence text, e.g. ``"MIT"``, or ``None``.
    """
    provenance = dict((card.training or {}).get("provenance") or {})
    licence = provenance.get("licence") or provenance.get("license")
    return str(licence) if licence else None


def example_input(card: Any, batch: int = 1) -> torch.Tensor:
    """A deterministic test input of the package's input shape (values in [0, 1]).

    Args:
        card: the package's model card.
        batch: batch size.

    Returns:
        ``(batch, C, *spatial_size)`` float32.
    """
    spec = card.preprocessing
    shape = (batch, int(spec.in_channels), *(int(s) for s in spec.spatial_size))
    generator = torch.Generator().manual_seed(0)
    return torch.rand(shape, generator=generator, dtype=torch.float32)


def traced_network(module: ExportedNetwork, x: torch.Tensor) -> torch.jit.ScriptModule:
    """``torch.jit.trace`` of ``forward`` and ``embed``, checked against the eager module.

    Args:
        module: the module to trace (eval mode, CPU).
        x: an example input.

    Returns:
        The traced module (``forward`` and ``embed`` methods).

    Raises:
        ExportError: the traced module does not give the eager module's numbers.
    """
    module = module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer's notes on shape-dependent Python values are expected (the graph is
        # traced at the package's fixed input size), and so is torch's notice that TorchScript
        # is deprecated: it is the format LibTorch, Triton and MONAI's bundles load
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace_module(module, {"forward": (x,), "embed": (x,)}, check_trace=False)
        for method in ("forward", "embed"):
            _check(getattr(module, method)(x), getattr(traced, method)(x), f"TorchScript {method}")
    return traced


def save_torchscript(module: torch.jit.ScriptModule, path: str | Path) -> None:
    """``torch.jit.save``, without torch's notice that TorchScript is deprecated.

    Args:
        module: a traced module.
        path: the file to write.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(module, str(path))


def _check(expected: torch.Tensor, got: torch.Tensor | np.ndarray, what: str) -> None:
    got = torch.as_tensor(np.asarray(got)) if not isinstance(got, torch.Tensor) else got
    if tuple(got.shape) != tuple(expected.shape):
        shapes = f"shape {tuple(got.shape)}, the network's {tuple(expected.shape)}"
        raise ExportError(f"{what}: {shapes}")
    if not got.numel():
        return
    diff = float((got.double() - expected.double()).abs().max())
    limit = TOLERANCE * max(1.0, float(expected.double().abs().max()))
    if not diff <= limit:
        raise ExportError(f"{what} differs from the network by {diff:.3g} (> {limit:.3g})")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _build(package: str | Path, output: str | None) -> tuple[Any, ExportedNetwork, str]:
    """The package's card, the module to export and the output it gives."""
    from medtl.models.package import load_package, resolve_package

    model, card = load_package(resolve_package(package))
    if card.architecture is None or card.preprocessing is None:
        raise ExportError(f"{card.ref}: the card has no architecture or preprocessing")
    output = output or ("probabilities" if card.target_task else "embedding")
    if output not in OUTPUTS:
        raise ExportError(f"output must be one of {', '.join(OUTPUTS)}")
    calibration = None
    if output == "probabilities":
        cal = card.calibration
        cal = cal.model_dump(mode="json") if hasattr(cal, "model_dump") else cal
        try:
            if cal is not None:
                from medtl.evaluation.calibration import calibrator_from_dict

                cal = calibrator_from_dict(dict(cal)).to_dict()  # the check Predictor makes
            calibration = CalibratedOutput(cal, int(card.architecture.num_outputs))
        except ValueError as err:
            raise ExportError(f"{card.ref}: {err}") from None
    return card, ExportedNetwork(model.cpu().eval(), output, calibration), output


def export_network(
    package: str | Path,
    out: str | Path,
    format: str = "torchscript",
    *,
    output: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a package's network as TorchScript or ONNX, with its sidecar ``out + ".json"``.

    Args:
        package: package folder or registered ``name`` / ``name@version``.
        out: the file to write (``.ts`` / ``.onnx`` by convention).
        format: ``torchscript`` or ``onnx``.
        output: what the file computes, one of :data:`OUTPUTS` (default: ``probabilities``
            for classifiers, ``embedding`` for encoder-only packages).
        overwrite: replace an existing ``out``.

    Returns:
        The written file.

    Raises:
        medtl.models.PackageError: not a valid package. FileExistsError: ``out`` exists.
        ExportError: unknown format or output, a calibrator the outputs cannot use, a missing
            ONNX exporter, or an export that does not give the network's numbers.

    Example:
        >>> export_network("cxr-nodule", "cxr.onnx", "onnx")  # doctest: +SKIP
        PosixPath('cxr.onnx')
    """
    if format not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {format!r}; use {', '.join(EXPORT_FORMATS)}")
    dest = Path(out)
    sidecar = Path(f"{dest}.json")
    if (dest.exists() or sidecar.exists()) and not overwrite:
        raise FileExistsError(f"{dest} exists (use --overwrite)")
    card, module, output = _build(package, output)
    x = example_input(card, batch=2)
    with torch.no_grad():
        expected = module(x)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}-", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        if format == "torchscript":
            save_torchscript(traced_network(module, x), tmp)
        else:
            _write_onnx(module, x, tmp, output)
            _check_onnx(tmp, x, expected, output)
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    info = export_info(card, format, output, dest)
    sidecar.write_text(json.dumps(info, indent=2), "utf-8")
    logger.info("exported %s as %s (%s) to %s", card.ref, format, output, dest.name)
    return dest


def _write_onnx(module: ExportedNetwork, x: torch.Tensor, path: Path, output: str) -> None:
    try:
        import onnx  # noqa: F401  (torch's exporter writes the graph with it)
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install 'medtl[onnx]'") from None
    with torch.no_grad(), warnings.catch_warnings():
        # the TorchScript-based exporter (no onnxscript needed); its deprecation notice and
        # the tracer's shape notes are expected
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module.eval(), (x,), str(path), input_names=["image"], output_names=[output],
            dynamic_axes={"image": {0: "batch"}, output: {0: "batch"}},
            opset_version=_OPSET, dynamo=False,
        )  # fmt: skip


def _check_onnx(path: Path, x: torch.Tensor, expected: torch.Tensor, output: str) -> None:
    """Run the ONNX file with ONNX Runtime (when installed) and compare with the network."""
    try:
        import onnxruntime as ort
    except ImportError:
        logger.warning("onnxruntime is not installed: the ONNX export was not run to check it")
        return
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([output], {"image": x.numpy()})[0]
    _check(expected, got, "ONNX Runtime output")


def export_info(card: Any, format: str, output: str, path: Path) -> dict[str, Any]:
    """The sidecar: what goes in, what comes out, and what the export leaves to the caller.

    Args:
        card: the package's model card.
        format: ``torchscript`` or ``onnx``.
        output: what the file computes.
        path: the written file (hashed).

    Returns:
        A JSON-ready dict.
    """
    from medtl.inference.bundle_postprocess import bundle_calibration, class_names
    from medtl.inference.bundle_transforms import array_transforms, describe_preprocessing
    from medtl.models.package import software_versions

    spec = card.preprocessing
    names = class_names(card)
    n_out = int(card.architecture.num_outputs)
    info: dict[str, Any] = {
        "format": format,
        "file": path.name,
        "sha256": _sha256(path),
        "package": card.ref,
        "exported_with": software_versions(),
        "input": {
            "name": "image",
            "shape": ["batch", int(spec.in_channels), *(int(s) for s in spec.spatial_size)],
            "dtype": "float32",
            "preprocessing": spec.model_dump(mode="json"),
            "steps": describe_preprocessing(spec),
            "monai_transforms": array_transforms(spec),
        },
        "output": {"name": output, "kind": output},
        "labels": names,
        "calibration": None,
        "operating_points": [p.model_dump(mode="json") for p in card.operating_points],
        "licence": weights_licence(card) or medtl_licence(),
        "not_included": [
            "the domain guard (medtl predict refuses scans outside the package's domain)",
            "reading the scan file (see input.steps)",
        ],
    }
    if card.architecture.spatial_dims == 3 and not getattr(spec, "target_spacing", None):
        info["not_included"].append(
            "the sliding windows medtl predict runs over volumes: the network classifies one "
            "input of the shape above (a whole volume resized to it)"
        )
    if output == "embedding":
        info["output"].update(shape=["batch", "features"], description="pooled layer4 features")
        return info
    channels = [names[1]] if n_out == 1 else names
    info["output"].update(shape=["batch", len(channels)], channels=channels)
    if output == "probabilities":
        post = bundle_calibration(card)
        info["output"]["description"] = post.description
        info["calibration"] = {"method": post.method, "parameters": post.calibration}
    else:
        info["output"]["description"] = "raw logits, before the package's calibration"
    return info
