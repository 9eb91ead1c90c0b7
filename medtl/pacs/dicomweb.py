"""DICOMweb path to the PACS (QIDO-RS, WADO-RS, STOW-RS) through ``dicomweb-client``.

Every function takes :class:`~medtl.pacs.settings.PacsSettings` and raises
:class:`~medtl.pacs.types.PacsError` with a message that says what failed (HTTP status,
refused connection, timeout) and never quotes a returned identifier.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from medtl.pacs.types import EchoResult, PacsError, StudyHit, StudyQuery

if TYPE_CHECKING:  # pragma: no cover
    from dicomweb_client.api import DICOMwebClient
    from pydicom.dataset import Dataset

    from medtl.pacs.settings import PacsSettings

logger = logging.getLogger(__name__)

_STUDY_FIELDS = [
    "PatientID",
    "PatientName",
    "StudyDate",
    "AccessionNumber",
    "ModalitiesInStudy",
    "StudyDescription",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
]
_PIXEL_TAGS = {"7FE00010", "7FE00008", "7FE00009"}


def client(settings: PacsSettings) -> DICOMwebClient:
    """A DICOMweb client with basic or bearer authentication from the settings."""
    from dicomweb_client.api import DICOMwebClient

    from medtl.pacs.logs import quiet_client_logs

    if not settings.dicomweb_url:
        raise PacsError("DICOMweb is not configured (MEDTL_PACS_DICOMWEB_URL)")
    quiet_client_logs()
    import requests

    session = requests.Session()
    if settings.token is not None:
        session.headers["Authorization"] = f"Bearer {settings.token.get_secret_value()}"
    elif settings.username:
        password = settings.password.get_secret_value() if settings.password else ""
        session.auth = (settings.username, password)
    web = DICOMwebClient(
        url=settings.dicomweb_url.rstrip("/"), session=session, timeout=settings.timeout_s
    )
    # dicomweb-client would retry every failed request (timeouts included) 5 times with
    # back-off, turning a 30 s timeout into minutes; medtl retries at its own level
    # (failed pushes, queued jobs) and reports each failure at once.
    web.set_http_retry_params(retry=False)
    return web


def explain(err: BaseException) -> str:
    """A one-line reason for a failed request (status code or connection problem)."""
    import requests

    if isinstance(err, requests.HTTPError) and err.response is not None:
        code = err.response.status_code
        hint = {
            401: "wrong user name or password/token",
            403: "access denied",
            404: "not found (wrong URL or unknown study)",
        }.get(code, "")
        return f"HTTP {code} {err.response.reason or ''}".strip() + (f": {hint}" if hint else "")
    if isinstance(err, requests.Timeout):
        return "timed out"
    if isinstance(err, requests.ConnectionError):
        return "connection refused or host unreachable"
    return type(err).__name__


def _wrap(what: str, err: BaseException) -> PacsError:
    return PacsError(f"DICOMweb {what} failed: {explain(err)}")


def echo(settings: PacsSettings) -> EchoResult:
    """Test the DICOMweb path with a minimal QIDO-RS study search."""
    try:
        client(settings).search_for_studies(limit=1, fields=["StudyInstanceUID"])
    except PacsError as err:
        return EchoResult("dicomweb", False, str(err))
    except Exception as err:  # requests and dicomweb-client raise many types
        return EchoResult("dicomweb", False, f"QIDO-RS search failed: {explain(err)}")
    return EchoResult("dicomweb", True, f"QIDO-RS answered at {settings.dicomweb_url}")


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    return str(value) if value not in (None, "") else None


def _int(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def hit_from_dataset(ds: Dataset) -> StudyHit:
    """A :class:`StudyHit` from a study-level QIDO or C-FIND answer."""
    modalities = ds.get("ModalitiesInStudy") or ()
    if isinstance(modalities, str):
        modalities = [m for m in modalities.split("\\") if m]
    return StudyHit(
        study_uid=str(ds.StudyInstanceUID),
        patient_id=_text(ds, "PatientID"),
        patient_name=_text(ds, "PatientName"),
        study_date=_text(ds, "StudyDate"),
        accession=_text(ds, "AccessionNumber"),
        modalities=tuple(str(m) for m in modalities),
        description=_text(ds, "StudyDescription"),
        n_series=_int(ds, "NumberOfStudyRelatedSeries"),
        n_instances=_int(ds, "NumberOfStudyRelatedInstances"),
    )


def find(settings: PacsSettings, query: StudyQuery) -> list[StudyHit]:
    """Search studies with QIDO-RS.

    Args:
        settings: the PACS settings.
        query: the search keys.

    Returns:
        The studies found (identifiers included: show them, do not store them).
    """
    from pydicom.dataset import Dataset

    filters: dict[str, Any] = {}
    if query.patient_id:
        filters["PatientID"] = query.patient_id
    if query.accession:
        filters["AccessionNumber"] = query.accession
    if query.modality:
        filters["ModalitiesInStudy"] = query.modality
    if query.since:
        filters["StudyDate"] = f"{query.since:%Y%m%d}-"
    try:
        found = client(settings).search_for_studies(
            search_filters=filters, fields=_STUDY_FIELDS, limit=query.limit
        )
    except PacsError:
        raise
    except Exception as err:
        raise _wrap("study search", err) from None
    from medtl.io.redact import redacted_warnings

    with redacted_warnings(logger, "reading the study search results"):  # values quoted
        return [hit_from_dataset(Dataset.from_json(item)) for item in found]


def iter_study(settings: PacsSettings, study_uid: str) -> Iterator[Dataset]:
    """Yield the instances of a study (WADO-RS), one at a time, as received (with PHI)."""
    try:
        yield from client(settings).iter_study(study_uid)
    except PacsError:
        raise
    except Exception as err:
        raise _wrap("study retrieval", err) from None


def _strip_bulk(item: dict[str, Any]) -> dict[str, Any]:
    return {
        tag: value
        for tag, value in item.items()
        if tag not in _PIXEL_TAGS and "BulkDataURI" not in value
    }


def series_headers(settings: PacsSettings, study_uid: str, series_uid: str) -> list[Dataset]:
    """The headers (no pixels) of a series' instances, from WADO-RS metadata."""
    from pydicom.dataset import Dataset

    try:
        items = client(settings).retrieve_series_metadata(study_uid, series_uid)
    except Exception as err:
        raise _wrap("metadata retrieval", err) from None
    from medtl.io.redact import redacted_warnings

    with redacted_warnings(logger, "reading the series metadata"):  # values quoted
        return [Dataset.from_json(_strip_bulk(item)) for item in items]


def store(settings: PacsSettings, datasets: list[Dataset]) -> None:
    """Store instances with STOW-RS (raises :class:`PacsError` on any failure)."""
    try:
        client(settings).store_instances(datasets)
    except Exception as err:
        raise _wrap("store (STOW-RS)", err) from None
