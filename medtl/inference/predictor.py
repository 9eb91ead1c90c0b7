"""The :class:`Predictor`: a model package applied to one scan.

``Predictor.from_package(path_or_name)`` rebuilds the network, the preprocessing recorded in
the card (:func:`medtl.data.preprocessing.build_preprocessing`, exactly what training used),
the calibrator, the operating points and the domain guard. ``predict(scan)`` returns a
:class:`~medtl.inference.result.PredictionResult`:

1. domain guard, headers and geometry (a wrong modality or dimensionality is refused before
   the network runs);
2. preprocessing, one forward pass, calibration, the decision at the operating point;
3. Grad-CAM on the feature map of that same pass, resized onto the scan grid;
4. domain guard, feature distance.

**Volumes** (3D packages) are read with MONAI's ``sliding_window_inference``
(:mod:`medtl.inference.windows`), or, when the preprocessing reorients and resamples (the
``merlin`` preset), in one whole-scan pass (:mod:`medtl.inference.whole_scan`).

Example:
    >>> predictor = Predictor.from_package("cxr-nodule")  # doctest: +SKIP
    >>> result = predictor.predict("chest.dcm")  # doctest: +SKIP
    >>> result.probability, result.decision.positive, result.heatmap.shape  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medtl.inference.domain import DomainGuard, default_expectations, load_domain_guard
from medtl.inference.outputs import elapsed_ms as _ms
from medtl.inference.outputs import heat_info, refuse_invalid
from medtl.inference.result import Decision, PredictionResult, ScanInfo, Timings
from medtl.inference.saliency import gradcam, heatmap_on_grid

__all__ = ["Predictor"]

logger = logging.getLogger(__name__)

_DEFAULT_POINT = "youden"


class Predictor:
    """A loaded model package, ready to predict.

    Args:
        model: the backbone (eval mode).
        card: the package's :class:`~medtl.models.ModelCard`.
        guard: the domain guard (``None``: header/geometry checks from the preprocessing
            modality family only).
        operating_point: default operating point name (``None``: ``"youden"`` when present,
            else the first reachable point).
        device: torch device for the network.
        volume_spacing_mm: volumes only: resample to this voxel size (array axis order)
            before sliding windows (``None``: the scan's own grid).
        overlap: sliding-window overlap for volumes.
        sw_batch_size: windows per forward pass for volumes.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        card: Any,
        guard: DomainGuard | None = None,
        operating_point: str | None = None,
        device: str | torch.device = "cpu",
        volume_spacing_mm: Sequence[float] | None = None,
        overlap: float = 0.25,
        sw_batch_size: int = 4,
    ) -> None:
        from medtl.artifacts import PreprocessingSpec

        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.card = card
        arch = card.architecture
        self.spatial_dims = int(arch.spatial_dims)
        self.num_outputs = int(arch.num_outputs)
        self.spec = PreprocessingSpec.model_validate(card.preprocessing or {})
        if self.spec.spatial_dims != self.spatial_dims:
            dims = f"{self.spec.spatial_dims}D vs {self.spatial_dims}D"
            raise ValueError(f"{card.ref}: preprocessing and model disagree ({dims})")
        if guard is None:
            guard = DomainGuard(
                spatial_dims=self.spatial_dims, **default_expectations(self.spec.modality)
            )
        self.guard = guard
        self.guard.spatial_dims = self.spatial_dims
        self.calibrator = None
        if card.calibration:
            from medtl.evaluation.calibration import calibrator_from_dict

            self.calibrator = calibrator_from_dict(card.calibration)
        self.operating_point = self._choose_point(operating_point)
        self.volume_spacing_mm = tuple(volume_spacing_mm) if volume_spacing_mm else None
        self.overlap = overlap
        self.sw_batch_size = sw_batch_size
        self._transform = None
        self._embed_runners: dict[tuple[str, str], Any] = {}

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_package(
        cls,
        path_or_name: str | Path,
        *,
        operating_point: str | None = None,
        device: str | torch.device = "cpu",
        **kwargs: Any,
    ) -> Predictor:
        """Load a package folder or a registered ``name`` / ``name@version``.

        Args:
            path_or_name: package folder or registry reference.
            operating_point: default operating point name.
            device: torch device.
            **kwargs: further :class:`Predictor` arguments.

        Returns:
            The predictor.

        Raises:
            medtl.models.PackageError: missing, corrupt or inconsistent package.
        """
        from medtl.models.package import PackageError, load_package, resolve_package

        folder = resolve_package(path_or_name)
        model, card = load_package(folder, device=device)
        try:
            guard = load_domain_guard(folder)
        except (ValueError, KeyError, OSError) as err:
            raise PackageError(f"{card.ref}: unreadable domain guard: {err}") from err
        try:
            return cls(model, card, guard, operating_point=operating_point, device=device, **kwargs)
        except ValueError as err:
            raise PackageError(str(err)) from err

    @property
    def labels(self) -> list[str]:
        """Class names: two for binary packages (negative, positive), else one per output."""
        names = list(self.card.labels or self.card.architecture.labels or [])
        k = 2 if self.num_outputs == 1 else self.num_outputs
        if len(names) == k:
            return names
        return ["negative", "positive"] if k == 2 else [f"class_{i}" for i in range(k)]

    def _choose_point(self, name: str | None) -> Any:
        points = [p for p in self.card.operating_points if p.threshold is not None]
        if name is not None:
            for p in points:
                if p.name == name:
                    return p
            known = ", ".join(p.name for p in points) or "none"
            raise ValueError(f"no operating point {name!r} in {self.card.ref} (known: {known})")
        if self.num_outputs != 1 or not points:
            return None
        return next((p for p in points if p.name == _DEFAULT_POINT), points[0])

    # ------------------------------------------------------------------ pieces

    def preprocess(self, scan: Any) -> torch.Tensor:
        """The recorded preprocessing: scan -> ``(C, *spatial_size)`` float32 tensor (2D).

        Args:
            scan: a 2D :class:`medtl.io.Scan` (or a single-slice volume).

        Returns:
            The network input without batch axis.
        """
        if self._transform is None:
            from medtl.data.preprocessing import build_preprocessing

            self._transform = build_preprocessing(self.spec)
        return self._channels(self._transform(_image_array(scan, self.spatial_dims)[None]))

    def _channels(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 1 and self.spec.in_channels > 1:
            x = x.expand(self.spec.in_channels, *x.shape[1:])
        return x.to(self.device)

    def calibrate(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of logits.

        Args:
            logits: ``(n,)`` binary or ``(n, k)`` multi-class logits.

        Returns:
            ``(n,)`` positive-class or ``(n, k)`` probabilities.
        """
        z = np.asarray(logits, dtype=np.float64)
        if self.calibrator is not None:
            return np.asarray(self.calibrator.transform(z), dtype=np.float64)
        from scipy.special import expit, softmax

        return expit(z) if z.ndim == 1 else softmax(z, axis=1)

    def embed(self, scan: Any, layer: str = "layer4", backend: str | None = None) -> Any:
        """The whole scan's pooled embedding: :func:`medtl.inference.embed.embed_scan`.

        ``backend``: :mod:`medtl.inference.embed_backend` (default: the benchmark's choice);
        the runner is kept per (layer, backend), so exported sessions are reused.
        Raises ``medtl.io.ScanError`` (unreadable) or ``ScanRefusedError`` (out of domain).
        """
        from medtl.inference.embed import embed_scan
        from medtl.inference.embed_backend import EmbedRunner, resolve_backend

        key = (layer, resolve_backend(backend))
        runners = self._embed_runners
        if key not in runners:
            runners[key] = EmbedRunner(self.model, *key)
        return embed_scan(
            self.model, self.spec, scan, guard=self.guard, layer=layer,
            package=self.card.ref, device=self.device, runner=runners[key],
        )  # fmt: skip

    # ------------------------------------------------------------------ predict

    def predict(
        self,
        scan: Any,
        *,
        operating_point: str | None = None,
        saliency: bool = True,
    ) -> PredictionResult:
        """Predict on one scan.

        Args:
            scan: a :class:`medtl.io.Scan`, or a path / bytes for :func:`medtl.io.load_scan`.
            operating_point: operating point name for this call (default: the predictor's).
            saliency: compute the Grad-CAM heat map.

        Returns:
            The result; ``result.refused`` when the domain guard refused the scan.

        Raises:
            medtl.io.ScanError: the file could not be loaded.
            ValueError: unknown operating point.
        """
        t_total = time.perf_counter()
        timings = Timings()
        if not hasattr(scan, "array"):
            from medtl.io import load_scan

            t0 = time.perf_counter()
            scan = load_scan(scan)
            timings.decode = _ms(t0)
        point = self._choose_point(operating_point) if operating_point else self.operating_point
        t0 = time.perf_counter()
        domain = self.guard.check_scan(scan)
        timings.domain = _ms(t0)
        result = PredictionResult(
            package=self.card.ref,
            task=self.card.target_task,
            labels=self.labels,
            kind="binary" if self.num_outputs == 1 else "multiclass",
            calibrated=self.calibrator is not None,
            domain=domain,
            scan=ScanInfo.from_scan(scan),
            warnings=list(scan.warnings),
        )
        if domain.status == "refuse":
            timings.total = _ms(t_total)
            result.timings_ms = timings
            return result
        if self.spatial_dims == 3 and _has_geometry(self.spec):
            from medtl.inference.whole_scan import predict_whole_scan

            predict_whole_scan(self, scan, result, timings, saliency)
        elif self.spatial_dims == 3:
            from medtl.inference.windows import predict_volume

            predict_volume(self, scan, result, timings, saliency)
        else:
            self._predict_image(scan, result, timings, saliency)
        if result.probabilities is not None:
            self._decide(result, point)
        timings.total = _ms(t_total)
        result.timings_ms = timings
        return result

    def _predict_image(
        self, scan: Any, result: PredictionResult, timings: Timings, saliency: bool
    ) -> None:
        t0 = time.perf_counter()
        x = self.preprocess(scan)[None]
        timings.preprocess = _ms(t0)
        t0 = time.perf_counter()
        with torch.no_grad():
            feats = self.model.forward_features(x)
            logits = self.model.forward_head(feats)
        timings.forward = _ms(t0)
        logits_np = logits.detach().cpu().double().numpy()
        self._probabilities(result, logits_np, timings)
        if result.probabilities is None:
            return
        t0 = time.perf_counter()
        pooled = self.model.head.pool(feats).detach().cpu().double().numpy()
        result.domain = result.domain.merge(self.guard.check_features(pooled))
        timings.domain += _ms(t0)
        if saliency:
            t0 = time.perf_counter()
            target = 0 if self.num_outputs == 1 else result.top_class_index
            cam = gradcam(self.model, x, class_idx=target, features=feats)
            image_shape = _image_array(scan, 2).shape
            result.heatmap, peak = heatmap_on_grid(cam.cam, image_shape)
            result.heatmap_info = heat_info(result, self.labels, target, peak)
            timings.saliency = _ms(t0)

    def _probabilities(
        self, result: PredictionResult, logits: np.ndarray, timings: Timings
    ) -> None:
        """Fill logits and calibrated probabilities from ``(1, k)`` logits."""
        if not np.isfinite(logits).all():
            refuse_invalid(result)
            return
        t0 = time.perf_counter()
        if self.num_outputs == 1:
            p = float(self.calibrate(logits[:, 0])[0])
            probs = np.array([1.0 - p, p])
        else:
            probs = self.calibrate(logits)[0]
        timings.calibration = _ms(t0)
        self._fill(result, probs, logits[0])

    def _fill(self, result: PredictionResult, probs: np.ndarray, logits: np.ndarray) -> None:
        labels = self.labels
        top = int(np.argmax(probs))
        result.logits = [float(v) for v in np.atleast_1d(logits)]
        result.probabilities = {name: float(p) for name, p in zip(labels, probs, strict=True)}
        result.top_class_index = top
        result.top_class = labels[top]
        result.probability = float(probs[1]) if self.num_outputs == 1 else float(probs[top])

    def _decide(self, result: PredictionResult, point: Any) -> None:
        if point is None or result.kind != "binary" or result.probability is None:
            return
        positive = result.probability >= float(point.threshold)
        result.decision = Decision(
            operating_point=point.name,
            threshold=float(point.threshold),
            positive=bool(positive),
            label=self.labels[1] if positive else self.labels[0],
            expected_sensitivity=point.sensitivity,
            expected_specificity=point.specificity,
            goal=point.goal,
        )


def _has_geometry(spec: Any) -> bool:
    """Whether the spec reorients/resamples (the merlin preset): then one whole-scan pass."""
    from medtl.data.scan_input import needs_geometry

    return needs_geometry(spec)


def _image_array(scan: Any, spatial_dims: int) -> np.ndarray:
    array = np.asarray(scan.array, dtype=np.float32)
    if spatial_dims == 2 and array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    return array
