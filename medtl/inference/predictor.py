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

**Volumes** (3D packages) are read with MONAI's ``sliding_window_inference``: the recorded
intensity preprocessing is applied to the whole volume on its own grid (optionally resampled
to ``volume_spacing_mm``), then windows of the training input size are classified one by
one. Each window's Grad-CAM is blended into a volume heat map, its calibrated probabilities
are recorded as a region, and the volume result aggregates them: **binary**: the most
suspicious window (max probability) decides; **multi-class**: the mean of window
probabilities. A volume no larger than one window is one window, identical to the 2D path.

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
from medtl.inference.result import (
    Decision,
    HeatmapInfo,
    PredictionResult,
    ScanInfo,
    Timings,
    region_map,
    top_regions,
)
from medtl.inference.saliency import gradcam, heatmap_on_grid, normalize_map, upsample_map

__all__ = ["Predictor"]

logger = logging.getLogger(__name__)

_DEFAULT_POINT = "youden"
_TOP_REGIONS = 5


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


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

    def embed(self, scan: Any, layer: str = "layer4") -> Any:
        """The whole scan's pooled embedding: :func:`medtl.inference.embed.embed_scan`.

        Raises ``medtl.io.ScanError`` (unreadable) or ``ScanRefusedError`` (out of domain).
        """
        from medtl.inference.embed import embed_scan

        return embed_scan(
            self.model, self.spec, scan, guard=self.guard, layer=layer,
            package=self.card.ref, device=self.device,
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
            self._predict_volume(scan, result, timings, saliency)
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
            result.heatmap_info = _heat_info(result, self.labels, target, peak)
            timings.saliency = _ms(t0)

    def _probabilities(
        self, result: PredictionResult, logits: np.ndarray, timings: Timings
    ) -> None:
        """Fill logits and calibrated probabilities from ``(1, k)`` logits."""
        if not np.isfinite(logits).all():
            _refuse_invalid(result)
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

    # ------------------------------------------------------------------ volumes

    def _volume_input(self, scan: Any) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Intensity-preprocessed ``(1, C, *grid)`` volume and its grid shape."""
        from medtl.data.preprocessing import build_preprocessing

        array = np.asarray(scan.array, dtype=np.float32)
        grid = tuple(int(s) for s in array.shape)
        if self.volume_spacing_mm is not None:
            grid = tuple(
                max(1, round(n * s / t))
                for n, s, t in zip(array.shape, scan.spacing, self.volume_spacing_mm, strict=True)
            )
        # Same recorded transform, with the output size set to the volume's own grid: the
        # intensity step is exactly training's, the resize is identity (or the resampling).
        spec = self.spec.model_copy(update={"spatial_size": list(grid)})
        x = self._channels(build_preprocessing(spec)(array[None]))
        return x[None], grid

    def _predict_volume(
        self, scan: Any, result: PredictionResult, timings: Timings, saliency: bool
    ) -> None:
        from monai.inferers import sliding_window_inference

        t0 = time.perf_counter()
        x, grid = self._volume_input(scan)
        timings.preprocess = _ms(t0)
        roi = tuple(int(s) for s in self.spec.spatial_size)
        pad_front = [max(r - g, 0) // 2 for r, g in zip(roi, grid, strict=True)]
        windows: list[dict[str, Any]] = []
        clock = {"forward": 0.0, "saliency": 0.0}

        def run_windows(win: torch.Tensor, slices: list[Any]) -> torch.Tensor:
            t = time.perf_counter()
            with torch.no_grad():
                feats = self.model.forward_features(win)
                logits = self.model.forward_head(feats)
            clock["forward"] += _ms(t)
            for i, sl in enumerate(slices):
                # MONAI pads volumes smaller than a window: window corners back to the grid
                box = [(s.start - p, s.stop - p) for s, p in zip(sl[2:], pad_front, strict=True)]
                windows.append(
                    {
                        "start": [max(a, 0) for a, _ in box],
                        "stop": [min(b, g) for (_, b), g in zip(box, grid, strict=True)],
                        "logits": logits[i].detach().cpu().double().numpy(),
                        "pooled": self.model.head.pool(feats[i : i + 1])[0]
                        .detach()
                        .cpu()
                        .double()
                        .numpy(),
                    }
                )
            if not saliency:
                return torch.zeros((win.shape[0], 1, *win.shape[2:]), device=win.device)
            t = time.perf_counter()
            target = 0 if self.num_outputs == 1 else None
            cam = gradcam(self.model, win, class_idx=target, features=feats).cam
            out = upsample_map(cam, win.shape[2:])
            clock["saliency"] += _ms(t)
            return out

        heat = sliding_window_inference(
            x,
            roi_size=roi,
            sw_batch_size=self.sw_batch_size,
            predictor=run_windows,
            overlap=self.overlap,
            mode="gaussian",
            with_coord=True,
        )
        timings.forward = clock["forward"]
        logits = np.stack([w["logits"] for w in windows])
        if not np.isfinite(logits).all():
            _refuse_invalid(result)
            return
        t0 = time.perf_counter()
        binary = self.num_outputs == 1
        if binary:
            p = self.calibrate(logits[:, 0])
            probs = np.stack([1.0 - p, p], axis=1)
            best = int(np.argmax(p))
            volume_probs = probs[best]
        else:
            probs = self.calibrate(logits)
            volume_probs = probs.mean(axis=0)
        timings.calibration = _ms(t0)
        self._fill(result, volume_probs, logits.mean(axis=0))
        result.n_windows = len(windows)
        result.regions = top_regions(
            windows, probs, self.labels, grid, scan.shape, binary, _TOP_REGIONS
        )
        result.region_map = region_map(windows, probs, grid, roi, binary)
        if len(windows) > 1 and self.num_outputs == 1:
            result.warnings.append(
                f"The volume was read as {len(windows)} overlapping windows; the operating "
                "point's sensitivity and specificity were measured on single windows."
            )
        t0 = time.perf_counter()
        pooled = np.stack([w["pooled"] for w in windows])
        result.domain = result.domain.merge(self.guard.check_features(pooled, reduce="median"))
        timings.domain += _ms(t0)
        if saliency:
            t0 = time.perf_counter()
            cam_vol = upsample_map(heat[:, :1].float(), tuple(scan.shape))
            result.heatmap = normalize_map(cam_vol[0, 0], inplace=True)
            target = 0 if self.num_outputs == 1 else None
            result.heatmap_info = _heat_info(result, self.labels, target)
            if target is None:
                result.heatmap_info.target_class = "top class of each window"
            timings.saliency = clock["saliency"] + _ms(t0)


def _has_geometry(spec: Any) -> bool:
    """Whether the spec reorients/resamples (the merlin preset): then one whole-scan pass."""
    from medtl.data.scan_input import needs_geometry

    return needs_geometry(spec)


def _refuse_invalid(result: PredictionResult) -> None:
    result.domain.add(
        "values",
        "refuse",
        "The image contains invalid pixel values (not numbers), so the model cannot read it.",
    )


def _image_array(scan: Any, spatial_dims: int) -> np.ndarray:
    array = np.asarray(scan.array, dtype=np.float32)
    if spatial_dims == 2 and array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    return array


def _heat_info(
    result: PredictionResult,
    labels: list[str],
    target: int | None,
    peak: list[int] | str | None = "search",
) -> HeatmapInfo:
    heat = result.heatmap
    assert heat is not None
    if peak == "search":
        flat = not heat.size or float(heat.max()) <= 0
        peak = (
            None if flat else [int(i) for i in np.unravel_index(int(np.argmax(heat)), heat.shape)]
        )
    if target is None:
        name = result.top_class
    else:
        name = labels[1] if result.kind == "binary" else labels[target]
    return HeatmapInfo(method="gradcam", target_class=name, shape=list(heat.shape), peak_index=peak)
