"""medtl.inference: the Predictor, Grad-CAM saliency and the domain guard.

Public API::

    from medtl.inference import Predictor, PredictionResult, saliency_map, DomainGuard

Names are resolved lazily: importing :mod:`medtl.inference` loads neither torch nor MONAI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medtl._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from medtl.inference.domain import DomainGuard, fit_domain_guard, load_domain_guard
    from medtl.inference.predictor import Predictor
    from medtl.inference.result import DomainCheck, PredictionResult
    from medtl.inference.saliency import (
        GradCamResult,
        gradcam,
        normalize_map,
        saliency_map,
        upsample_map,
    )

_LAZY = {
    "GradCamResult": "medtl.inference.saliency",
    "gradcam": "medtl.inference.saliency",
    "normalize_map": "medtl.inference.saliency",
    "saliency_map": "medtl.inference.saliency",
    "upsample_map": "medtl.inference.saliency",
    "DomainCheck": "medtl.inference.result",
    "DomainGuard": "medtl.inference.domain",
    "fit_domain_guard": "medtl.inference.domain",
    "load_domain_guard": "medtl.inference.domain",
    "Predictor": "medtl.inference.predictor",
    "PredictionResult": "medtl.inference.result",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


__all__ = [
    "DomainCheck",
    "DomainGuard",
    "GradCamResult",
    "PredictionResult",
    "Predictor",
    "fit_domain_guard",
    "gradcam",
    "load_domain_guard",
    "normalize_map",
    "saliency_map",
    "upsample_map",
]
