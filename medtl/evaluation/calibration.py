"""Post-hoc calibration estimators and calibration measures.

Estimators follow scikit-learn: ``__init__`` stores parameters, ``fit(logits, labels)``
returns ``self``, fitted attributes end in ``_``, and ``transform(logits)`` returns
probabilities. **Fit them on the calibration split, never on the test split**: these
functions take arrays and cannot tell which split they see. Each estimator serialises to a
small JSON-ready dict (``to_dict`` / ``from_dict``; :func:`calibrator_from_dict` dispatches),
which the model card stores.

- :class:`TemperatureScaler` (Guo et al. 2017): ``p = sigmoid(z / T)`` for binary logits
  ``(n,)``, ``softmax(z / T)`` for multi-class logits ``(n, k)``.
- :class:`PlattScaler` (Platt 1999): ``p = sigmoid(a z + b)``, binary only.
- :class:`IsotonicCalibrator` (Zadrozny & Elkan 2002): monotone step map, binary only.

Measures (binary ``probs`` are positive-class probabilities, shape ``(n,)``, and each bin
compares the mean probability with the fraction of positives, the torchmetrics/netcal binary
convention; multi-class ``probs`` of shape ``(n, k)`` use the top-label confidence and
accuracy): :func:`expected_calibration_error` (``strategy="uniform"`` equal-width bins, or
``"quantile"`` equal-mass bins, the adaptive ECE), :func:`maximum_calibration_error`,
:func:`brier_score`, :func:`negative_log_likelihood`, :func:`reliability_curve` and
:func:`calibration_table`.

Binning follows scikit-learn's ``calibration_curve`` (and Guo et al. 2017): bins are
``(e_i, e_{i+1}]`` with the first bin closed at its left edge; quantile edges are the
percentiles of the confidences.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax, softmax
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

__all__ = [
    "IsotonicCalibrator",
    "PlattScaler",
    "ReliabilityCurve",
    "TemperatureScaler",
    "brier_score",
    "calibration_table",
    "calibrator_from_dict",
    "expected_calibration_error",
    "maximum_calibration_error",
    "negative_log_likelihood",
    "reliability_curve",
]

logger = logging.getLogger(__name__)
Strategy = Literal["uniform", "quantile"]
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


# ---------------------------------------------------------------------------- measures


def _conf_target(probs: ArrayLike, labels: ArrayLike) -> tuple[NDArray, NDArray]:
    """(confidence, target) pairs: binary p vs y; multi-class top-label p vs correctness."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim not in (1, 2) or p.shape[0] == 0:
        raise ValueError(f"probs must be (n,) or (n, k), got shape {p.shape}")
    if not np.isfinite(p).all() or p.min() < 0 or p.max() > 1:
        raise ValueError("probs must be finite and lie in [0, 1]")
    y = _labels(labels, p.shape[0])
    if p.ndim == 1:
        if y.size and y.max() > 1:
            raise ValueError("binary probs need 0/1 labels")
        return p, y.astype(np.float64)
    return p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)


def _edges(conf: NDArray, n_bins: int, strategy: Strategy) -> NDArray[np.float64]:
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, n_bins + 1)
    if strategy == "quantile":
        return np.percentile(conf, np.linspace(0.0, 100.0, n_bins + 1))
    raise ValueError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")


@dataclass(frozen=True)
class ReliabilityCurve:
    """Per-bin calibration statistics (NaN means for empty bins).

    Attributes:
        mean_predicted: mean probability (binary) or confidence (multi-class) per bin.
        fraction_positive: fraction of positives (binary) or accuracy (multi-class) per bin.
        counts: cases per bin.
        edges: ``n_bins + 1`` bin edges.
    """

    mean_predicted: NDArray[np.float64]
    fraction_positive: NDArray[np.float64]
    counts: NDArray[np.int64]
    edges: NDArray[np.float64]

    @property
    def gaps(self) -> NDArray[np.float64]:
        """``|mean_predicted - fraction_positive|`` per bin (NaN for empty bins)."""
        return np.abs(self.mean_predicted - self.fraction_positive)


def reliability_curve(
    probs: ArrayLike, labels: ArrayLike, n_bins: int = 15, strategy: Strategy = "uniform"
) -> ReliabilityCurve:
    """Reliability curve with bin counts.

    Args:
        probs: ``(n,)`` positive-class probabilities or ``(n, k)`` class probabilities.
        labels: ``(n,)`` integer labels.
        n_bins: number of bins.
        strategy: ``"uniform"`` (equal width) or ``"quantile"`` (equal mass).

    Returns:
        A :class:`ReliabilityCurve` with ``n_bins`` entries (empty bins kept, count 0).
    """
    conf, target = _conf_target(probs, labels)
    edges = _edges(conf, n_bins, strategy)
    ids = np.searchsorted(edges[1:-1], conf, side="left")
    counts = np.bincount(ids, minlength=n_bins)
    sum_p = np.bincount(ids, weights=conf, minlength=n_bins)
    sum_y = np.bincount(ids, weights=target, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(counts > 0, sum_p / np.maximum(counts, 1), np.nan)
        frac = np.where(counts > 0, sum_y / np.maximum(counts, 1), np.nan)
    return ReliabilityCurve(mean_p, frac, counts.astype(np.int64), edges)


def expected_calibration_error(
    probs: ArrayLike, labels: ArrayLike, n_bins: int = 15, strategy: Strategy = "uniform"
) -> float:
    """ECE: count-weighted mean of ``|mean probability - fraction positive|`` over bins.

    ``strategy="quantile"`` gives the adaptive ECE (equal-mass bins, Nixon et al. 2019).

    Args:
        probs: ``(n,)`` positive-class probabilities or ``(n, k)`` (top-label ECE).
        labels: ``(n,)`` integer labels.
        n_bins: number of bins.
        strategy: ``"uniform"`` or ``"quantile"``.

    Returns:
        ECE in [0, 1].
    """
    rc = reliability_curve(probs, labels, n_bins, strategy)
    ok = rc.counts > 0
    return float(np.sum(rc.counts[ok] * rc.gaps[ok]) / rc.counts.sum())


def maximum_calibration_error(
    probs: ArrayLike, labels: ArrayLike, n_bins: int = 15, strategy: Strategy = "uniform"
) -> float:
    """MCE: the largest ``|mean probability - fraction positive|`` over non-empty bins.

    Args:
        probs: ``(n,)`` positive-class probabilities or ``(n, k)``.
        labels: ``(n,)`` integer labels.
        n_bins: number of bins.
        strategy: ``"uniform"`` or ``"quantile"``.

    Returns:
        MCE in [0, 1].
    """
    rc = reliability_curve(probs, labels, n_bins, strategy)
    return float(np.max(rc.gaps[rc.counts > 0]))


def brier_score(probs: ArrayLike, labels: ArrayLike) -> float:
    """Brier score: mean squared error of the probabilities.

    Binary: ``mean((p - y)^2)`` (scikit-learn's ``brier_score_loss``). Multi-class: Brier's
    original ``mean(sum_k (p_k - onehot_k)^2)``, which is twice the binary value for k = 2.

    Args:
        probs: ``(n,)`` positive-class probabilities or ``(n, k)``.
        labels: ``(n,)`` integer labels.

    Returns:
        The score (lower is better).
    """
    p = np.asarray(probs, dtype=np.float64)
    _conf_target(p, labels)
    y = np.asarray(labels).astype(np.int64)
    if p.ndim == 1:
        return float(np.mean((p - y) ** 2))
    onehot = np.eye(p.shape[1])[y]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def negative_log_likelihood(probs: ArrayLike, labels: ArrayLike, eps: float = _EPS) -> float:
    """Mean negative log-likelihood (log loss), probabilities clipped to ``[eps, 1 - eps]``.

    Args:
        probs: ``(n,)`` positive-class probabilities or ``(n, k)``.
        labels: ``(n,)`` integer labels.
        eps: clipping constant that keeps the loss finite.

    Returns:
        NLL in nats (lower is better).
    """
    p = np.asarray(probs, dtype=np.float64)
    _conf_target(p, labels)
    y = np.asarray(labels).astype(np.int64)
    py = np.where(y == 1, p, 1.0 - p) if p.ndim == 1 else p[np.arange(y.size), y]
    return float(-np.mean(np.log(np.clip(py, eps, 1.0 - eps))))


def calibration_table(
    before_probs: ArrayLike, after_probs: ArrayLike, labels: ArrayLike, n_bins: int = 15
) -> list[dict[str, Any]]:
    """Before/after calibration measures as rows for a report table.

    Args:
        before_probs: probabilities before calibration (e.g. ``sigmoid(logits)``).
        after_probs: calibrated probabilities on the same cases.
        labels: integer labels.
        n_bins: bins for ECE, adaptive ECE and MCE.

    Returns:
        Rows ``{"measure", "before", "after", "change"}`` for ECE, adaptive ECE, MCE, Brier
        and NLL (``change = after - before``; negative is an improvement for all five).
    """
    measures = [
        (
            f"ECE ({n_bins} equal-width bins)",
            lambda p: expected_calibration_error(p, labels, n_bins),
        ),
        (
            f"Adaptive ECE ({n_bins} equal-mass bins)",
            lambda p: expected_calibration_error(p, labels, n_bins, "quantile"),
        ),
        (
            f"MCE ({n_bins} equal-width bins)",
            lambda p: maximum_calibration_error(p, labels, n_bins),
        ),
        ("Brier score", lambda p: brier_score(p, labels)),
        ("NLL", lambda p: negative_log_likelihood(p, labels)),
    ]
    rows = []
    for name, fn in measures:
        b, a = fn(before_probs), fn(after_probs)
        rows.append({"measure": name, "before": b, "after": a, "change": a - b})
    return rows
