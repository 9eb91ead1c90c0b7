"""MONAI wrappers that mark where the cache ends (imported lazily: MONAI is slow to import).

MONAI's cached datasets cache everything up to the first transform that is randomizable or
not a MONAI ``Transform``. :class:`CachedStage` is a deterministic ``Transform`` around any
callable; :class:`RandomStage` is ``Randomizable`` around any callable, so the split falls
exactly between the two. Unlike MONAI's ``Lambda``/``RandLambda`` they pass dicts, tuples
and tensors through untouched (no MetaTensor conversion).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from monai.transforms import Randomizable, Transform


class CachedStage(Transform):
    """Deterministic stage: its output is what the dataset caches.

    Args:
        func: the deterministic preprocessing callable.
    """

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func

    def __call__(self, data: Any) -> Any:
        """Apply ``func``."""
        return self.func(data)


class RandomStage(Randomizable, Transform):
    """Random stage: applied after the cache on every access.

    ``func`` draws from the global RNGs, which :func:`medtl.training.seed.worker_init_fn`
    seeds per worker and epoch.

    Args:
        func: the augmentation callable.
    """

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func

    def randomize(self, data: Any) -> None:
        """No own parameters: ``func`` draws them itself."""

    def __call__(self, data: Any) -> Any:
        """Apply ``func``."""
        return self.func(data)
