"""One entry point to the PACS: DICOMweb where configured, DIMSE otherwise.

Example::

    settings = load_pacs_settings()
    for result in echo(settings):
        print(result.path, result.ok, result.detail)
    hits = find(settings, StudyQuery(patient_id="12345"))
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from medtl.pacs.types import EchoResult, StudyHit, StudyQuery

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.dataset import Dataset

    from medtl.pacs.settings import PacsSettings

logger = logging.getLogger(__name__)


def _backend(settings: PacsSettings, via: str | None = None):
    settings.require_connection()
    if via is None:
        via = "dicomweb" if settings.has_dicomweb else "dimse"
    if via == "dicomweb":
        from medtl.pacs import dicomweb

        return dicomweb
    from medtl.pacs import dimse

    return dimse


def preferred_path(settings: PacsSettings) -> str:
    """``"dicomweb"`` when configured, else ``"dimse"``."""
    return "dicomweb" if settings.has_dicomweb else "dimse"


def echo(settings: PacsSettings) -> list[EchoResult]:
    """Test every configured path (DICOMweb QIDO-RS and DIMSE C-ECHO).

    Returns:
        One result per path; an unconfigured path is reported as failed with the
        settings it needs.
    """
    from medtl.pacs import dicomweb, dimse

    results = []
    if settings.has_dicomweb:
        results.append(dicomweb.echo(settings))
    else:
        results.append(EchoResult("dicomweb", False, "not configured (MEDTL_PACS_DICOMWEB_URL)"))
    if settings.has_dimse:
        results.append(dimse.echo(settings))
    else:
        results.append(
            EchoResult(
                "dimse",
                False,
                "not configured (MEDTL_PACS_AE_TITLE, MEDTL_PACS_HOST, MEDTL_PACS_PORT)",
            )
        )
    for r in results:
        logger.info("pacs echo %s: %s", r.path, "ok" if r.ok else "failed")
    return results


def find(settings: PacsSettings, query: StudyQuery) -> list[StudyHit]:
    """Search studies (QIDO-RS, or C-FIND when only DIMSE is configured)."""
    hits = _backend(settings).find(settings, query)
    logger.info("pacs find: %d studies", len(hits))  # the count only: never the hits
    return hits


def iter_study(settings: PacsSettings, study_uid: str) -> Iterator[Dataset]:
    """The instances of a study with their PHI (WADO-RS, or C-GET for DIMSE only)."""
    return _backend(settings).iter_study(settings, study_uid)


def series_headers(
    settings: PacsSettings, study_uid: str, series_uid: str, via: str | None = None
) -> list[Dataset]:
    """Headers (no pixels) of the instances of a series, read from the PACS now."""
    return _backend(settings, via).series_headers(settings, study_uid, series_uid)


def store(settings: PacsSettings, datasets: list[Dataset], via: str | None = None) -> None:
    """Store instances (STOW-RS, or C-STORE for DIMSE only)."""
    _backend(settings, via).store(settings, datasets)
