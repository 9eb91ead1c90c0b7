"""The domain guard: does a scan belong to the domain the model was trained on?

Three kinds of evidence, checked in this order (cheapest first, so a refused scan never
reaches the network):

1. **Headers** (``scan.modality``, ``scan.meta["body_part"]``): a known modality the model was
   not trained on (a CT slice sent to a chest radiograph model) is **refused**; a file that
   does not record its modality (PNG/JPEG: ``OT``), or a body part other than expected,
   gives a **warning** (BodyPartExamined is often missing or wrong in practice).
2. **Geometry**: a volume sent to a 2D model, or an image to a 3D model, is **refused**; an
   unusual aspect ratio or pixel spacing (when the file states one) gives a **warning**.
3. **Features**: the Mahalanobis distance of the scan's pooled features to the training
   features, with a Ledoit-Wolf shrunk covariance (scikit-learn; the sample covariance of a
   few hundred 512-dimensional vectors is singular), warns above a threshold set on
   validation data (default: the 99th percentile of validation distances, so about 1 in 100
   in-domain scans is flagged).

The header and geometry checks live in :mod:`medtl.inference.domain_checks`; this module
holds the guard, its feature statistics and its files. A fitted guard lives in the model
package as ``domain_guard.safetensors`` (mean, precision matrix, validation distances) and
``domain_guard.json`` (threshold and expectations).

Example:
    >>> guard = fit_domain_guard(train_feats, val_feats, modalities=["CR", "DX"])  # doctest: +SKIP
    >>> guard.save(package_dir)  # doctest: +SKIP
    >>> check = load_domain_guard(package_dir).check_scan(scan)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import ValidationError

from medtl.artifacts.guard import DomainGuardFile
from medtl.inference.domain_checks import (
    check_body_part,
    check_geometry,
    check_modality,
    default_expectations,
)
from medtl.inference.result import DomainCheck

__all__ = [
    "GUARD_ARRAYS_FILE",
    "GUARD_JSON_FILE",
    "DomainGuard",
    "default_expectations",
    "fit_domain_guard",
    "load_domain_guard",
]

logger = logging.getLogger(__name__)

GUARD_ARRAYS_FILE = "domain_guard.safetensors"
GUARD_JSON_FILE = "domain_guard.json"
GUARD_FORMAT_VERSION = 1


def _as_features(features: ArrayLike | str | Path) -> NDArray[np.float64]:
    if isinstance(features, (str, Path)):
        from safetensors.numpy import load_file

        features = load_file(str(features))["features"]
    arr = np.asarray(features, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2:
        raise ValueError(f"features must be (n, d), got shape {arr.shape}")
    return arr


class DomainGuard:
    """Header, geometry and feature-distance checks of a model's input domain.

    scikit-learn conventions: ``__init__`` stores the expectations, :meth:`fit` learns the
    feature distribution and returns ``self``; fitted attributes end in ``_``. An unfitted
    guard still runs the header and geometry checks (``check_features`` then says "not
    checked").

    Args:
        spatial_dims: 2 or 3, the model's input dimensionality.
        modalities: accepted DICOM modality codes (empty: any).
        body_parts: expected BodyPartExamined values, e.g. ``["CHEST"]`` (empty: any).
        spacing_range_mm: plausible in-plane pixel spacing ``(lo, hi)`` (``None``: any).
        aspect_ratio_range: plausible rows/columns ratio ``(lo, hi)`` (``None``: any).
        quantile: quantile of validation distances used as the threshold.
        assumed_modality: the modality a file that records none (PNG, JPEG, NIfTI) is
            taken as, without a caution (``None``: such a file gets one).

    Attributes:
        mean_: training feature mean ``(d,)``.
        precision_: inverse of the Ledoit-Wolf covariance ``(d, d)``.
        shrinkage_: the Ledoit-Wolf shrinkage coefficient.
        threshold_: distance above which the guard warns.
        reference_distances_: the distances the threshold was set on (validation, or
            training when no validation features were given).
        n_train_: number of training vectors.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        modalities: Sequence[str] = (),
        body_parts: Sequence[str] = (),
        spacing_range_mm: tuple[float, float] | None = None,
        aspect_ratio_range: tuple[float, float] | None = None,
        quantile: float = 0.99,
        assumed_modality: str | None = None,
    ) -> None:
        self.spatial_dims = spatial_dims
        self.modalities = modalities
        self.assumed_modality = assumed_modality
        self.body_parts = body_parts
        self.spacing_range_mm = spacing_range_mm
        self.aspect_ratio_range = aspect_ratio_range
        self.quantile = quantile

    # ------------------------------------------------------------------ fitting

    @property
    def fitted(self) -> bool:
        """True once :meth:`fit` (or :meth:`load`) set the feature statistics."""
        return hasattr(self, "precision_")

    def fit(self, train_features: ArrayLike, val_features: ArrayLike | None = None) -> DomainGuard:
        """Fit mean and shrunk covariance on training features; set the threshold.

        Args:
            train_features: ``(n, d)`` pooled training features.
            val_features: ``(m, d)`` pooled validation features; the threshold is their
                ``quantile``-th distance. Without them the training distances are used
                (optimistic: the threshold will be too low, so the guard warns more).

        Returns:
            ``self``.
        """
        from sklearn.covariance import LedoitWolf

        if not 0.0 < self.quantile <= 1.0:
            raise ValueError("quantile must be in (0, 1]")
        train = _as_features(train_features)
        if train.shape[0] < 2:
            raise ValueError("the domain guard needs at least 2 training feature vectors")
        lw = LedoitWolf().fit(train)
        self.mean_ = np.asarray(lw.location_, dtype=np.float64)
        self.precision_ = np.asarray(lw.precision_, dtype=np.float64)
        self.shrinkage_ = float(lw.shrinkage_)
        self.n_train_ = int(train.shape[0])
        if val_features is not None and _as_features(val_features).shape[0] > 0:
            reference = self.distance(_as_features(val_features))
            self.threshold_source_ = "validation"
        else:
            logger.warning("domain guard threshold set on training features (no validation set)")
            reference = self.distance(train)
            self.threshold_source_ = "training"
        self.reference_distances_ = np.sort(reference)
        self.threshold_ = float(np.quantile(reference, self.quantile))
        return self

    def distance(self, features: ArrayLike) -> NDArray[np.float64]:
        """Mahalanobis distances (not squared) of feature vectors to the training mean.

        Args:
            features: ``(n, d)`` or ``(d,)`` pooled features.

        Returns:
            ``(n,)`` distances.
        """
        self._check_fitted()
        x = _as_features(features)
        if x.shape[1] != self.mean_.shape[0]:
            raise ValueError(
                f"features have {x.shape[1]} dimensions, the guard was fitted on "
                f"{self.mean_.shape[0]}"
            )
        centred = x - self.mean_
        sq = np.einsum("ij,jk,ik->i", centred, self.precision_, centred)
        return np.sqrt(np.clip(sq, 0.0, None))

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError("DomainGuard is not fitted; call fit() first")

    # ------------------------------------------------------------------ checks

    def check_scan(self, scan: Any) -> DomainCheck:
        """Header and geometry checks (no model needed).

        Args:
            scan: a :class:`medtl.io.Scan`.

        Returns:
            The verdict; ``"refuse"`` for a wrong modality or dimensionality.
        """
        check = DomainCheck()
        check_modality(scan, self.modalities, check, self.assumed_modality)
        check_body_part(scan, self.body_parts, check)
        check_geometry(
            scan, self.spatial_dims, self.spacing_range_mm, self.aspect_ratio_range, check
        )
        return check

    def check_features(self, features: ArrayLike, reduce: str = "max") -> DomainCheck:
        """Feature-distance check of one scan's pooled features.

        Args:
            features: ``(d,)`` or ``(n, d)`` pooled features (one image, or the windows of
                a volume).
            reduce: how the distances of several vectors are combined: ``"max"`` or
                ``"median"`` (volumes: one unusual window among hundreds is expected at a
                99th-percentile threshold, so the typical window decides).

        Returns:
            ``"warn"`` above the threshold, else ``"ok"``; ``"not checked"`` when unfitted.
        """
        check = DomainCheck()
        if not self.fitted:
            check.add("features", "not checked")
            return check
        distances = self.distance(features)
        if reduce not in ("max", "median"):
            raise ValueError("reduce must be 'max' or 'median'")
        dist = float(np.max(distances) if reduce == "max" else np.median(distances))
        check.feature_distance = dist if math.isfinite(dist) else None
        check.distance_threshold = self.threshold_
        if not math.isfinite(dist) or dist > self.threshold_:
            pct = self.quantile * 100
            check.add(
                "features",
                "warn",
                "The image looks unlike the images the model learned from (its features are "
                f"further from them than {pct:g}% of validation images): treat the result "
                "with caution.",
            )
        else:
            check.add("features", "ok")
        return check

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready expectations and threshold (the arrays go to safetensors)."""
        d: dict[str, Any] = {
            "format_version": GUARD_FORMAT_VERSION,
            "spatial_dims": int(self.spatial_dims),
            "modalities": [str(m) for m in self.modalities],
            "assumed_modality": self.assumed_modality,
            "body_parts": [str(b) for b in self.body_parts],
            "spacing_range_mm": list(self.spacing_range_mm) if self.spacing_range_mm else None,
            "aspect_ratio_range": list(self.aspect_ratio_range)
            if self.aspect_ratio_range
            else None,
            "quantile": float(self.quantile),
        }
        if self.fitted:
            d.update(
                {
                    "threshold": self.threshold_,
                    "threshold_source": getattr(self, "threshold_source_", "unknown"),
                    "shrinkage": self.shrinkage_,
                    "n_train": self.n_train_,
                    "n_reference": int(self.reference_distances_.size),
                    "feature_dim": int(self.mean_.shape[0]),
                }
            )
        return d

    def save(self, folder: str | Path) -> Path:
        """Write ``domain_guard.json`` (and ``domain_guard.safetensors`` when fitted).

        Args:
            folder: the model package folder.

        Returns:
            The JSON file written.
        """
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        if self.fitted:
            from safetensors.numpy import save_file

            save_file(
                {
                    "mean": np.ascontiguousarray(self.mean_),
                    "precision": np.ascontiguousarray(self.precision_),
                    "reference_distances": np.ascontiguousarray(self.reference_distances_),
                },
                str(out / GUARD_ARRAYS_FILE),
                metadata={"medtl": "domain_guard", "format_version": str(GUARD_FORMAT_VERSION)},
            )
        path = out / GUARD_JSON_FILE
        record = DomainGuardFile.model_validate(self.to_dict())  # the schema's shape, or fail
        path.write_text(json.dumps(record.model_dump(exclude_none=True), indent=2), "utf-8")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> DomainGuard:
        """Read a guard saved by :meth:`save`.

        Args:
            folder: the folder holding ``domain_guard.json``.

        Returns:
            The guard (fitted when the arrays file is present).
        """
        folder = Path(folder)
        path = folder / GUARD_JSON_FILE
        raw = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(raw, dict) and int(raw.get("format_version", 1)) > GUARD_FORMAT_VERSION:
            raise ValueError("domain_guard.json is newer than this medtl; upgrade medtl")
        try:
            d = DomainGuardFile.model_validate(raw)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(x) for x in first["loc"]) or "(top level)"
            raise ValueError(f"{path}: field {where}: {first['msg']}") from err
        guard = cls(
            spatial_dims=d.spatial_dims,
            modalities=d.modalities,
            body_parts=d.body_parts,
            spacing_range_mm=tuple(d.spacing_range_mm) if d.spacing_range_mm else None,
            aspect_ratio_range=tuple(d.aspect_ratio_range) if d.aspect_ratio_range else None,
            quantile=d.quantile,
            assumed_modality=d.assumed_modality,
        )
        arrays = folder / GUARD_ARRAYS_FILE
        if d.threshold is not None and arrays.is_file():
            from safetensors.numpy import load_file

            tensors = load_file(str(arrays))
            guard.mean_ = tensors["mean"].astype(np.float64)
            guard.precision_ = tensors["precision"].astype(np.float64)
            guard.reference_distances_ = tensors["reference_distances"].astype(np.float64)
            guard.threshold_ = float(d.threshold)
            guard.threshold_source_ = d.threshold_source or "unknown"
            guard.shrinkage_ = d.shrinkage if d.shrinkage is not None else math.nan
            guard.n_train_ = d.n_train or 0
        return guard


def fit_domain_guard(
    train_features: ArrayLike | str | Path,
    val_features: ArrayLike | str | Path | None = None,
    *,
    spatial_dims: int = 2,
    modality_family: str | None = None,
    modalities: Sequence[str] | None = None,
    body_parts: Sequence[str] = (),
    spacing_range_mm: tuple[float, float] | None = None,
    aspect_ratio_range: tuple[float, float] | None = None,
    quantile: float = 0.99,
    assumed_modality: str | None = None,
) -> DomainGuard:
    """Fit a :class:`DomainGuard` from pooled features (arrays or run-folder files).

    Expectations not given default to those of ``modality_family`` (see
    :func:`default_expectations`).

    Args:
        train_features: ``(n, d)`` array, or a ``features_train.safetensors`` path.
        val_features: ``(m, d)`` array, or a ``features_val.safetensors`` path.
        spatial_dims: the model's input dimensionality.
        modality_family: ``"cxr"``, ``"ct"``, ``"mri"`` or ``"generic"`` (the package's
            ``preprocessing["modality"]``).
        modalities: accepted modality codes (default: the family's).
        body_parts: expected body parts (e.g. ``["CHEST"]``).
        spacing_range_mm: plausible in-plane spacing (default: the family's).
        aspect_ratio_range: plausible rows/columns ratio (default: the family's).
        quantile: validation quantile for the threshold.
        assumed_modality: the modality files that record none are taken as (the training
            images were such files, declared as it: :func:`medtl.data.modality.declared_modality`).

    Returns:
        The fitted guard; save it with ``guard.save(package_dir)``.

    Example:
        >>> guard = fit_domain_guard(run / "features_train.safetensors",
        ...                          run / "features_val.safetensors",
        ...                          modality_family="cxr", body_parts=["CHEST"])  # doctest: +SKIP
    """
    defaults = default_expectations(modality_family or "generic")
    guard = DomainGuard(
        spatial_dims=spatial_dims,
        modalities=list(modalities) if modalities is not None else defaults["modalities"],
        body_parts=list(body_parts),
        spacing_range_mm=spacing_range_mm or defaults["spacing_range_mm"],
        aspect_ratio_range=aspect_ratio_range or defaults["aspect_ratio_range"],
        quantile=quantile,
        assumed_modality=assumed_modality,
    )
    return guard.fit(
        _as_features(train_features),
        _as_features(val_features) if val_features is not None else None,
    )


def load_domain_guard(folder: str | Path) -> DomainGuard | None:
    """The guard saved in a package folder, or ``None`` when there is none.

    Args:
        folder: the model package folder.

    Returns:
        The guard, or ``None``.
    """
    if not (Path(folder) / GUARD_JSON_FILE).is_file():
        return None
    return DomainGuard.load(folder)
