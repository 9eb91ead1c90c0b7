"""Which registered model suits a scan: the default of the upload page's Model box.

Each package's domain guard (``domain_guard.json``, or the expectations of its
preprocessing family, as :class:`medtl.inference.Predictor` builds it) runs its header and
geometry checks on the scan, without loading any weights. A package that would refuse the
scan (a radiograph sent to a CT model, a volume to a 2D model) is never the default when
another one fits; among equals, one whose card names the scan's modality in its target
domain comes first, then the newest registration.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

if TYPE_CHECKING:  # pragma: no cover
    from medtl.inference.domain import DomainGuard
    from medtl.io import Scan
    from medtl.models.package import PackageInfo

logger = logging.getLogger(__name__)

_STATUS_RANK = {"ok": 2, "warn": 1, "refuse": 0}
#: Words that name a modality in a card's free-text target domain.
_MODALITY_WORDS = {
    "CR": ("cr", "dx", "radiograph", "radiography", "x-ray", "xray", "cxr"),
    "DX": ("cr", "dx", "radiograph", "radiography", "x-ray", "xray", "cxr"),
    "CT": ("ct",),
    "MR": ("mr", "mri"),
}


@st.cache_resource(show_spinner=False, max_entries=64)
def _guard(path: str, stamp: float) -> DomainGuard:
    from medtl.artifacts import PreprocessingSpec
    from medtl.inference.domain import DomainGuard, default_expectations, load_domain_guard
    from medtl.models.package import read_card

    del stamp  # cache key only: a re-registered package is read again
    card = read_card(Path(path))
    spec = PreprocessingSpec.model_validate(card.preprocessing or {})
    dims = int(card.architecture.spatial_dims) if card.architecture else spec.spatial_dims
    guard = load_domain_guard(path) or DomainGuard(
        spatial_dims=dims, **default_expectations(spec.modality)
    )
    guard.spatial_dims = dims
    return guard


def _target_domain(path: Path) -> str:
    from medtl.models.package import read_card

    return read_card(path).target_domain or ""


def _domain(package: PackageInfo) -> tuple[DomainGuard, str] | None:
    """The package's domain guard and lower-cased target domain; None when unreadable."""
    try:
        stamp = (Path(package.path) / "model.json").stat().st_mtime
        return _guard(str(package.path), stamp), _target_domain(Path(package.path)).lower()
    except Exception as err:  # a damaged registry entry must not break the page
        logger.warning("could not read the domain of package %s: %s", package.ref, err)
        return None


def _names(domain: str, modalities: set[str]) -> bool:
    """Whether a card's target domain names one of ``modalities`` (CR also as radiograph...)."""
    words = {w for m in modalities for w in _MODALITY_WORDS.get(m, ())}
    return any(re.search(rf"\b{re.escape(w)}\b", domain) for w in words)


def fit(scan: Scan, package: PackageInfo) -> tuple[int, int]:
    """How well ``package`` suits ``scan``: (guard verdict rank, names the modality).

    Higher is better; an unreadable package ranks lowest.
    """
    read = _domain(package)
    if read is None:
        return (-1, 0)
    guard, domain = read
    try:
        status = guard.check_scan(scan).status
    except Exception as err:  # a guard that cannot judge this scan must not break the page
        logger.warning("could not check the scan against package %s: %s", package.ref, err)
        return (-1, 0)
    named = _names(domain, {str(scan.modality or "").upper()})
    return (_STATUS_RANK.get(status, 0), int(named))


def default_index(scan: Scan, packages: list[PackageInfo]) -> int:
    """The index in ``packages`` of the model to preselect for ``scan``.

    Args:
        scan: the uploaded (de-identified) scan.
        packages: the registered packages, in display order.

    Returns:
        The best-fitting package's index (the last, i.e. newest, among equals).
    """
    return _best(fit(scan, p) for p in packages)


def refused(scan: Scan, package: PackageInfo) -> bool:
    """Whether ``package``'s domain guard would refuse ``scan`` on its headers or geometry."""
    return fit(scan, package)[0] == _STATUS_RANK["refuse"]


def modality_fit(modalities: list[str], package: PackageInfo) -> tuple[int, int]:
    """How well ``package`` suits a PACS study known only by its modalities (before retrieval).

    Returns:
        (its domain guard accepts one of the modalities, or accepts any; its card's target
        domain names one). An unreadable package ranks lowest.
    """
    read = _domain(package)
    if read is None:
        return (-1, 0)
    guard, domain = read
    wanted = {str(m).upper() for m in modalities}
    accepted = {str(m).upper() for m in guard.modalities}
    takes = not accepted or bool(accepted & wanted)
    return (int(takes), int(_names(domain, wanted)))


def default_index_for_study(modalities: list[str], packages: list[PackageInfo]) -> int:
    """The index of the model to preselect for a PACS study of ``modalities`` (newest
    among equals), so a CT study does not default to a radiograph model."""
    return _best(modality_fit(modalities, p) for p in packages) if packages else 0


def _best(scores) -> int:
    """The index of the best score, the last (newest registration) among equals."""
    ranked = list(scores)
    top = max(ranked)
    return max(i for i, s in enumerate(ranked) if s == top)
