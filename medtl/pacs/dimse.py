"""DIMSE path to the PACS (C-ECHO, C-FIND, C-GET, C-STORE) through ``pynetdicom``.

C-GET retrieves by default (the archive sends the instances back over the same association,
so no inbound port has to be opened); ``retrieve = "move"`` uses C-MOVE to medtl's own AE
title instead, for archives that do not offer C-GET (they must know medtl's AE title, host
and ``listen_port``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from medtl.pacs.types import EchoResult, PacsError, StudyHit, StudyQuery

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.dataset import Dataset

    from medtl.pacs.settings import PacsSettings

logger = logging.getLogger(__name__)

#: Image storage SOP classes medtl can analyse (what C-GET asks for and the listener keeps).
IMAGE_STORAGE = {
    "1.2.840.10008.5.1.4.1.1.1": "CR",
    "1.2.840.10008.5.1.4.1.1.1.1": "DX",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "DX (processing)",
    "1.2.840.10008.5.1.4.1.1.2": "CT",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT",
    "1.2.840.10008.5.1.4.1.1.4": "MR",
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.1.2": "Mammography",
}
_STATUS = {
    0xA700: "out of resources",
    0xA900: "data set does not match SOP class",
    0xC000: "cannot understand",
    0x0122: "SOP class not supported",
    0xA701: "out of resources (sub-operations)",
    0xA801: "move destination unknown",
}


def quiet_pynetdicom() -> None:
    """Keep PHI out of the logs (see :mod:`medtl.pacs.logs`)."""
    from medtl.pacs.logs import quiet_client_logs

    quiet_client_logs()


def _ae(settings: PacsSettings) -> Any:
    from pynetdicom import AE

    quiet_pynetdicom()

    ae = AE(ae_title=settings.local_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = settings.timeout_s
    return ae


def _why_not_established(settings: PacsSettings, assoc: Any) -> str:
    """Why an association failed, as precisely as the network allows."""
    import socket

    hint = f"is medtl's AE title {settings.local_ae_title!r} registered in the PACS?"
    if assoc.is_rejected:
        return f"DIMSE association rejected by {settings.ae_title}: {hint}"
    where = f"{settings.host}:{settings.port}"
    # pynetdicom reports a refused connection, a timeout and a peer that closes the
    # socket right after its A-ASSOCIATE-RJ (a race under load) all as "aborted": probe
    # the port to tell them apart.
    try:
        with socket.create_connection(
            (settings.host, int(settings.port)), timeout=min(settings.timeout_s, 5.0)
        ):
            pass
    except ConnectionRefusedError:
        return f"DIMSE connection to {where} refused: is the PACS running, is the port right?"
    except OSError:
        return f"DIMSE connection to {where} timed out or the host is unreachable"
    return (
        f"DIMSE association to {where} rejected or aborted by the PACS ({settings.ae_title})"
        f": {hint}"
    )


@contextmanager
def _association(settings: PacsSettings, ae: Any, **kwargs: Any) -> Iterator[Any]:
    if not settings.has_dimse:
        raise PacsError("DIMSE is not configured (MEDTL_PACS_AE_TITLE, _HOST and _PORT)")
    assoc = ae.associate(settings.host, int(settings.port), ae_title=settings.ae_title, **kwargs)
    if not assoc.is_established:
        raise PacsError(_why_not_established(settings, assoc))
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def _status_text(status: Any) -> str:
    code = int(getattr(status, "Status", -1))
    return f"0x{code:04X} {_STATUS.get(code, '')}".strip()


def echo(settings: PacsSettings) -> EchoResult:
    """Test the DIMSE path with a C-ECHO."""
    from pynetdicom.sop_class import Verification

    ae = _ae(settings)
    ae.add_requested_context(Verification)
    try:
        with _association(settings, ae) as assoc:
            status = assoc.send_c_echo()
    except PacsError as err:
        return EchoResult("dimse", False, str(err))
    if not status or int(status.Status) != 0:
        return EchoResult(
            "dimse", False, "C-ECHO failed: " + (_status_text(status) if status else "no answer")
        )
    return EchoResult(
        "dimse", True, f"C-ECHO answered by {settings.ae_title} at {settings.host}:{settings.port}"
    )


def _find(settings: PacsSettings, identifier: Dataset) -> list[Dataset]:
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as Model

    ae = _ae(settings)
    ae.add_requested_context(Model)
    found: list[Dataset] = []
    with _association(settings, ae) as assoc:
        for status, answer in assoc.send_c_find(identifier, Model):
            if status is None:
                raise PacsError("C-FIND got no answer (association aborted or timed out)")
            code = int(status.Status)
            if code in (0xFF00, 0xFF01) and answer is not None:
                found.append(answer)
            elif code not in (0x0000, 0xFF00, 0xFF01):
                raise PacsError(f"C-FIND failed: {_status_text(status)}")
    return found


def find(settings: PacsSettings, query: StudyQuery) -> list[StudyHit]:
    """Search studies with a study-level C-FIND (Study Root)."""
    from pydicom.dataset import Dataset

    from medtl.pacs.dicomweb import hit_from_dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = ""
    ds.PatientID = query.patient_id or ""
    ds.PatientName = ""
    ds.StudyDate = f"{query.since:%Y%m%d}-" if query.since else ""
    ds.AccessionNumber = query.accession or ""
    ds.ModalitiesInStudy = query.modality or ""
    ds.StudyDescription = ""
    ds.NumberOfStudyRelatedSeries = ""
    ds.NumberOfStudyRelatedInstances = ""
    from medtl.io.redact import redacted_warnings

    answers = _find(settings, ds)
    with redacted_warnings(logger, "reading the C-FIND answers"):  # values quoted
        return [hit_from_dataset(a) for a in answers][: query.limit]


def study_header(settings: PacsSettings, study_uid: str) -> Dataset:
    """The patient and study attributes of one study (study-level C-FIND)."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = study_uid
    for keyword in (
        "PatientID",
        "PatientName",
        "PatientBirthDate",
        "PatientSex",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyID",
        "ReferringPhysicianName",
    ):
        setattr(ds, keyword, "")
    found = _find(settings, ds)
    if not found:
        raise PacsError("the study is not in the PACS (C-FIND found nothing)")
    return found[0]


def series_headers(settings: PacsSettings, study_uid: str, series_uid: str) -> list[Dataset]:
    """Minimal headers of a series' instances (C-FIND at image level plus study level)."""
    from pydicom.dataset import Dataset

    study = study_header(settings, study_uid)
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = ""
    ds.SOPClassUID = ""
    ds.Modality = ""
    ds.Rows = ds.Columns = None  # highdicom wants image attributes in SR source images
    out = []
    for answer in _find(settings, ds):
        header = Dataset()
        header.update(study)
        header.update(answer)
        del header.QueryRetrieveLevel
        out.append(header)
    return out


def iter_study(settings: PacsSettings, study_uid: str) -> Iterator[Dataset]:
    """Retrieve a study with C-GET, or C-MOVE when ``settings.retrieve`` is ``move``;
    yields the received instances (with PHI)."""
    if settings.retrieve == "move":
        yield from _move_study(settings, study_uid)
    else:
        yield from _get_study(settings, study_uid)


def _move_study(settings: PacsSettings, study_uid: str) -> Iterator[Dataset]:
    """C-MOVE the study to medtl's own AE title: a storage SCP on ``listen_port`` receives
    it for the duration of the move (the PACS must know medtl's AE title, host and port)."""
    from pydicom.dataset import Dataset
    from pynetdicom import StoragePresentationContexts, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as Model

    received: list[Dataset] = []

    def on_store(event: Any) -> int:
        # Every storage class is accepted so the move succeeds (a study may hold SRs or
        # presentation states); only images are kept.
        if str(event.request.AffectedSOPClassUID) in IMAGE_STORAGE:
            ds = event.dataset
            ds.file_meta = event.file_meta
            received.append(ds)
        return 0x0000

    scp = _ae(settings)
    scp.supported_contexts = StoragePresentationContexts
    scp.require_called_aet = True
    server = scp.start_server(
        ("", settings.listen_port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        ae = _ae(settings)
        ae.add_requested_context(Model)
        ident = Dataset()
        ident.QueryRetrieveLevel = "STUDY"
        ident.StudyInstanceUID = study_uid
        with _association(settings, ae) as assoc:
            for status, _ in assoc.send_c_move(ident, settings.local_ae_title, Model):
                if status is None:
                    raise PacsError("C-MOVE got no answer (association aborted or timed out)")
                code = int(status.Status)
                if code not in (0x0000, 0xFF00, 0xB000):
                    raise PacsError(f"C-MOVE failed: {_status_text(status)}")
    finally:
        server.shutdown()
    if not received:
        raise PacsError("C-MOVE delivered no images for this study")
    yield from received


def _get_study(settings: PacsSettings, study_uid: str) -> Iterator[Dataset]:
    """Retrieve a study with C-GET (the instances come back on the same association).

    Only the image storage classes of :data:`IMAGE_STORAGE` are requested; other objects
    in the study (SR, presentation states) are not needed for analysis.
    """
    from pydicom.dataset import Dataset
    from pynetdicom import build_role, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as Model

    received: list[Dataset] = []

    def on_store(event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        received.append(ds)
        return 0x0000

    ae = _ae(settings)
    ae.add_requested_context(Model)
    roles = []
    for uid in IMAGE_STORAGE:
        ae.add_requested_context(uid)
        roles.append(build_role(uid, scp_role=True))
    ident = Dataset()
    ident.QueryRetrieveLevel = "STUDY"
    ident.StudyInstanceUID = study_uid
    with _association(
        settings, ae, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    ) as assoc:
        for status, _ in assoc.send_c_get(ident, Model):
            if status is None:
                raise PacsError("C-GET got no answer (association aborted or timed out)")
            code = int(status.Status)
            if code not in (0x0000, 0xFF00, 0xB000):
                raise PacsError(f"C-GET failed: {_status_text(status)}")
    if not received:
        raise PacsError("C-GET returned no images for this study")
    yield from received


def store(settings: PacsSettings, datasets: list[Dataset]) -> None:
    """Send instances with C-STORE (raises :class:`PacsError` on a failure status)."""
    ae = _ae(settings)
    for uid in {str(ds.SOPClassUID) for ds in datasets}:
        ae.add_requested_context(uid)
    with _association(settings, ae) as assoc:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            if not status or int(status.Status) not in (0x0000, 0xB000, 0xB007, 0xB006):
                raise PacsError(
                    "C-STORE failed: " + (_status_text(status) if status else "no answer")
                )
