"""Post-hoc calibrators (scikit-learn style): temperature, Platt and isotonic scaling.

Part of :mod:`medtl.evaluation.calibration` (which re-exports every public name): see its
docstring for the conventions. :func:`make_calibrator` is the one factory by method name and
:func:`calibrator_from_dict` rebuilds a fitted calibrator from a model card.
"""

from __future__ import annotations

import logging
import math
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax, softmax
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

__all__ = [
    "CALIBRATION_METHODS",
    "IsotonicCalibrator",
    "PlattScaler",
    "TemperatureScaler",
    "calibrator_from_dict",
    "make_calibrator",
]

# Same logger name as before the split, so log filters and tests keep working.
logger = logging.getLogger("medtl.evaluation.calibration")
_EPS = 1e-12


def _labels(labels: ArrayLike, n: int) -> NDArray[np.int64]:
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"labels must be 1D of length {n}, got shape {y.shape}")
    if y.size and (np.any(y < 0) or np.any(y != np.round(y))):
        raise ValueError("labels must be non-negative integers")
    return y.astype(np.int64)


def _logits(logits: ArrayLike) -> NDArray[np.float64]:
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim not in (1, 2) or z.shape[0] == 0:
        raise ValueError(f"logits must be (n,) binary or (n, k) multi-class, got {z.shape}")
    if not np.isfinite(z).all():
        raise ValueError("logits must be finite")
    return z


class _Calibrator:
    """Shared plumbing: fitted check and dict round-trip."""

    method: ClassVar[str] = ""

    def _check_fitted(self) -> None:
        if not getattr(self, "fitted_", False):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")

    def fit_transform(self, logits: ArrayLike, labels: ArrayLike) -> NDArray[np.float64]:
        """``fit(logits, labels).transform(logits)`` (calibration split only)."""
        return self.fit(logits, labels).transform(logits)  # type: ignore[attr-defined]


class TemperatureScaler(_Calibrator):
    """Temperature scaling: one scalar ``T > 0`` dividing the logits, fitted by minimum NLL.

    The NLL is minimised over ``log T`` with bounded Brent search (scipy); the NLL is convex in
    ``1/T``, so the 1D search finds the global optimum inside the bounds.

    Args:
        bounds: search interval for ``T``.

    Example:
        >>> ts = TemperatureScaler().fit(val_logits, val_labels)  # doctest: +SKIP
        >>> probs = ts.transform(test_logits)  # doctest: +SKIP
    """

    method: ClassVar[str] = "temperature"

    def __init__(self, bounds: tuple[float, float] = (0.01, 100.0)) -> None:
        self.bounds = bounds

    @staticmethod
    def _nll(z: NDArray, y: NDArray, t: float) -> float:
        if z.ndim == 1:
            zt = z / t
            # -log sigmoid(zt) for y=1, -log(1 - sigmoid(zt)) for y=0, stably
            return float(np.mean(np.logaddexp(0.0, -zt) * y + np.logaddexp(0.0, zt) * (1 - y)))
        return float(-np.mean(log_softmax(z / t, axis=1)[np.arange(y.size), y]))

    def fit(self, logits: ArrayLike, labels: ArrayLike) -> TemperatureScaler:
        """Fit ``T`` on calibration-split logits.

        Args:
            logits: ``(n,)`` binary logits or ``(n, k)`` multi-class logits.
            labels: ``(n,)`` integer labels (0/1 for binary).

        Returns:
            ``self``, with ``temperature_``, ``n_classes_`` and ``nll_`` set.
        """
        z = _logits(logits)
        y = _labels(labels, z.shape[0])
        k = 2 if z.ndim == 1 else z.shape[1]
        if y.size and y.max() >= k:
            raise ValueError(f"labels reach {y.max()}, logits have {k} classes")
        lo, hi = (math.log(b) for b in self.bounds)
        res = minimize_scalar(
            lambda lt: self._nll(z, y, math.exp(lt)),
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-7},
        )
        self.temperature_ = float(math.exp(res.x))
        if min(abs(res.x - lo), abs(res.x - hi)) < 1e-3:
            # e.g. perfectly separated calibration data drives T to 0
            logger.warning(
                "temperature %.4g is at the search bound %s", self.temperature_, self.bounds
            )
        self.n_classes_ = k
        self.nll_ = float(res.fun)
        self.fitted_ = True
        return self

    def transform(self, logits: ArrayLike) -> NDArray[np.float64]:
        """Calibrated probabilities: ``(n,)`` positive-class for binary, ``(n, k)`` otherwise."""
        self._check_fitted()
        z = _logits(logits)
        return expit(z / self.temperature_) if z.ndim == 1 else softmax(z / self.temperature_, 1)

    def to_dict(self) -> dict[str, Any]:
        """``{"method": "temperature", "temperature": T, "n_classes": k}``."""
        self._check_fitted()
        return {
            "method": self.method,
            "temperature": self.temperature_,
            "n_classes": self.n_classes_,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TemperatureScaler:
        """Rebuild a fitted scaler from :meth:`to_dict` output."""
        _expect(d, cls.method)
        obj = cls()
        obj.temperature_ = float(d["temperature"])
        if not obj.temperature_ > 0:
            raise ValueError("temperature must be positive")
        obj.n_classes_ = int(d.get("n_classes", 2))
        obj.nll_ = math.nan
        obj.fitted_ = True
        return obj


def _binary_logits(logits: ArrayLike) -> NDArray[np.float64]:
    z = _logits(logits)
    if z.ndim != 1:
        raise ValueError("this calibrator is binary: pass 1D positive-class logits")
    return z


class PlattScaler(_Calibrator):
    """Platt scaling: logistic regression of the labels on the logit, ``sigmoid(a z + b)``.

    Uses scikit-learn's ``LogisticRegression`` with a very weak penalty (``C=1e6``), which is
    the unregularised maximum-likelihood fit for any practical data.

    Args:
        C: inverse regularisation strength passed to ``LogisticRegression``.
    """

    method: ClassVar[str] = "platt"

    def __init__(self, C: float = 1e6) -> None:
        self.C = C

    def fit(self, logits: ArrayLike, labels: ArrayLike) -> PlattScaler:
        """Fit ``a`` and ``b`` on calibration-split binary logits.

        Args:
            logits: ``(n,)`` binary logits (any monotone score works).
            labels: ``(n,)`` 0/1 labels with both classes present.

        Returns:
            ``self``, with ``a_`` and ``b_`` set.
        """
        z = _binary_logits(logits)
        y = _labels(labels, z.shape[0])
        lr = LogisticRegression(C=self.C, max_iter=1000).fit(z[:, None], y)
        self.a_ = float(lr.coef_[0, 0])
        self.b_ = float(lr.intercept_[0])
        self.fitted_ = True
        return self

    def transform(self, logits: ArrayLike) -> NDArray[np.float64]:
        """Calibrated positive-class probabilities, shape ``(n,)``."""
        self._check_fitted()
        return expit(self.a_ * _binary_logits(logits) + self.b_)

    def to_dict(self) -> dict[str, Any]:
        """``{"method": "platt", "a": a, "b": b}``."""
        self._check_fitted()
        return {"method": self.method, "a": self.a_, "b": self.b_}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PlattScaler:
        """Rebuild a fitted scaler from :meth:`to_dict` output."""
        _expect(d, cls.method)
        obj = cls()
        obj.a_, obj.b_ = float(d["a"]), float(d["b"])
        obj.fitted_ = True
        return obj


class IsotonicCalibrator(_Calibrator):
    """Isotonic regression of the labels on the logit (scikit-learn ``IsotonicRegression``).

    Fitting uses scikit-learn; the fitted map is kept as its knots (``x_``, ``y_``) and applied
    with linear interpolation clipped at the ends, which is what ``IsotonicRegression.predict``
    does with ``out_of_bounds="clip"``, so a map restored from a dict gives identical output
    without pickling a scikit-learn object.
    """

    method: ClassVar[str] = "isotonic"

    def fit(self, logits: ArrayLike, labels: ArrayLike) -> IsotonicCalibrator:
        """Fit the monotone map on calibration-split binary logits.

        Args:
            logits: ``(n,)`` binary logits.
            labels: ``(n,)`` 0/1 labels.

        Returns:
            ``self``, with knots ``x_`` and ``y_`` set.
        """
        z = _binary_logits(logits)
        y = _labels(labels, z.shape[0])
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(z, y)
        self.x_ = np.asarray(iso.X_thresholds_, dtype=np.float64)
        self.y_ = np.asarray(iso.y_thresholds_, dtype=np.float64)
        self.fitted_ = True
        return self

    def transform(self, logits: ArrayLike) -> NDArray[np.float64]:
        """Calibrated positive-class probabilities, shape ``(n,)``."""
        self._check_fitted()
        return np.interp(_binary_logits(logits), self.x_, self.y_)

    def to_dict(self) -> dict[str, Any]:
        """``{"method": "isotonic", "x": [...], "y": [...]}``."""
        self._check_fitted()
        return {"method": self.method, "x": self.x_.tolist(), "y": self.y_.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IsotonicCalibrator:
        """Rebuild a fitted calibrator from :meth:`to_dict` output."""
        _expect(d, cls.method)
        obj = cls()
        obj.x_ = np.asarray(d["x"], dtype=np.float64)
        obj.y_ = np.asarray(d["y"], dtype=np.float64)
        if obj.x_.ndim != 1 or obj.x_.shape != obj.y_.shape or obj.x_.size == 0:
            raise ValueError("isotonic knots x and y must be equal-length non-empty lists")
        if np.any(np.diff(obj.x_) < 0):
            raise ValueError("isotonic knots x must be sorted")
        obj.fitted_ = True
        return obj


_CALIBRATORS: dict[str, type[_Calibrator]] = {
    c.method: c for c in (TemperatureScaler, PlattScaler, IsotonicCalibrator)
}


def _expect(d: dict[str, Any], method: str) -> None:
    if d.get("method") != method:
        raise ValueError(f"expected a {method!r} calibration dict, got {d.get('method')!r}")


def calibrator_from_dict(d: dict[str, Any]) -> TemperatureScaler | PlattScaler | IsotonicCalibrator:
    """Rebuild whichever fitted calibrator a dict describes (by its ``"method"`` key).

    Args:
        d: output of a calibrator's ``to_dict()``.

    Returns:
        The fitted calibrator.
    """
    cls = _CALIBRATORS.get(str(d.get("method")))
    if cls is None:
        raise ValueError(
            f"unknown calibration method {d.get('method')!r}; known: {sorted(_CALIBRATORS)}"
        )
    return cls.from_dict(d)  # type: ignore[attr-defined,no-any-return]


#: Method names accepted by :func:`make_calibrator` (and written in ``to_dict()["method"]``).
CALIBRATION_METHODS = tuple(_CALIBRATORS)


def make_calibrator(method: str) -> TemperatureScaler | PlattScaler | IsotonicCalibrator:
    """A fresh (unfitted) calibrator for ``method``.

    Args:
        method: ``"temperature"``, ``"platt"`` or ``"isotonic"``.

    Returns:
        The estimator, ready for ``fit(logits, labels)``.

    Raises:
        ValueError: unknown method.
    """
    cls = _CALIBRATORS.get(method)
    if cls is None:
        raise ValueError(f"unknown calibration method {method!r}; known: {sorted(_CALIBRATORS)}")
    return cls()  # type: ignore[return-value]
