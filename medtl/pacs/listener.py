"""``medtl pacs listen``: a C-STORE SCP that turns series sent by the PACS or a modality
into cases.

Each instance is de-identified in memory as it arrives and written into a spool folder
under ``MEDTL_HOME/spool`` (names are pseudonymous UIDs); the original UIDs stay in memory
until the series is sealed into the case's link. A series is complete once no instance of
it has arrived for ``quiet_seconds``; it is then routed to a model by modality and body
part (:meth:`~medtl.pacs.settings.PacsSettings.route`) and analysed (or queued for
``medtl worker``).

DIMSE statuses: image storage classes medtl cannot analyse are refused with ``0x0122``
(SOP class not supported); a dataset that cannot be decoded or de-identified gets
``0xC000`` (cannot understand), a full disk or other storage failure ``0xA700`` (out of
resources), so the sender keeps the study and retries.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medtl.pacs.dimse import IMAGE_STORAGE, quiet_pynetdicom
from medtl.pacs.types import StudyRefusedError

if TYPE_CHECKING:  # pragma: no cover
    from medtl.pacs.ingest import AnalysisOutcome, SeriesBatch
    from medtl.pacs.settings import PacsSettings
    from medtl.review import ReviewStore

logger = logging.getLogger(__name__)

STATUS_OK = 0x0000
STATUS_SOP_CLASS_NOT_SUPPORTED = 0x0122
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000


class Listener:
    """A C-STORE SCP bound to ``settings.listen_port`` as ``settings.local_ae_title``.

    Args:
        store: the review store cases are created in.
        settings: PACS settings (AE title, port, quiet time, routes).
        key: the site secret (default ``MEDTL_HOME/secrets/deid.key``).
        queue: queue each series for ``medtl worker`` instead of analysing it here.
        host: the address to bind (default all interfaces).
    """

    def __init__(
        self,
        store: ReviewStore,
        settings: PacsSettings,
        *,
        key: bytes | None = None,
        queue: bool = False,
        host: str = "",
    ) -> None:
        self.store = store
        self.settings = settings
        self.key = key
        self.queue = queue
        self.host = host
        self.outcomes: list[AnalysisOutcome] = []
        self.failures: list[str] = []
        #: series the model refused (no case, no result): the reasons, one line each.
        self.refusals: list[str] = []
        self.skipped: int = 0
        self._batches: dict[str, SeriesBatch] = {}
        self._last_seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._spool: Path | None = None

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Start the SCP and the series-closing thread (returns at once)."""
        import tempfile

        from pynetdicom import AE, StoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        from medtl.pacs.ingest import site_key
        from medtl.paths import home_subdir

        quiet_pynetdicom()
        self.key = site_key(self.key)
        self._spool = Path(tempfile.mkdtemp(prefix="listen-", dir=home_subdir("spool")))
        ae = AE(ae_title=self.settings.local_ae_title)
        ae.require_called_aet = True
        if self.settings.allowed_calling_aets:
            ae.require_calling_aet = list(self.settings.allowed_calling_aets)
        else:
            logger.warning("pacs listener: any AE title may send (set allowed_calling_aets)")
        ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = self.settings.timeout_s
        ae.supported_contexts = StoragePresentationContexts
        ae.add_supported_context(Verification)
        self._server = ae.start_server(
            (self.host, self.settings.listen_port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._on_store)],
        )
        self._thread = threading.Thread(target=self._close_loop, name="medtl-series", daemon=True)
        self._thread.start()
        logger.info(
            "pacs listener: %s on port %d", self.settings.local_ae_title, self.settings.listen_port
        )

    def serve(self, max_series: int | None = None) -> None:
        """Start and block until stopped (or until ``max_series`` series were handled)."""
        self.start()
        while not self._stop.is_set():
            if max_series is not None and self.handled >= max_series:
                break
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop accepting, close pending series, stop the thread, remove the spool."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        self._close_ready(force=True)
        if self._spool is not None:
            shutil.rmtree(self._spool, ignore_errors=True)

    @property
    def handled(self) -> int:
        """Series analysed, queued, refused or failed so far."""
        return len(self.outcomes) + len(self.failures) + len(self.refusals)

    # --- C-STORE ----------------------------------------------------------------------------
    def _on_store(self, event: Any) -> int:
        from medtl.pacs.ingest import add_instance

        sop_class = str(event.request.AffectedSOPClassUID)
        if sop_class not in IMAGE_STORAGE:
            logger.info("pacs listener: refused an object of an unsupported SOP class")
            return STATUS_SOP_CLASS_NOT_SUPPORTED
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            with self._lock:
                series = str(ds.SeriesInstanceUID)
                assert self._spool is not None and self.key is not None
                add_instance(self._batches, ds, self._spool, self.key, "dimse")
                self._last_seen[series] = time.monotonic()
        except OSError:
            logger.exception("pacs listener: could not store an instance")
            return STATUS_OUT_OF_RESOURCES
        except Exception as err:  # undecodable or malformed dataset
            logger.warning("pacs listener: could not read an instance (%s)", type(err).__name__)
            return STATUS_CANNOT_UNDERSTAND
        return STATUS_OK

    # --- series -------------------------------------------------------------------------------
    def _close_loop(self) -> None:
        while not self._stop.is_set():
            self._close_ready(force=False)
            self._stop.wait(min(0.2, self.settings.quiet_seconds / 4))

    def _close_ready(self, *, force: bool) -> None:
        now = time.monotonic()
        with self._lock:
            ready = [
                s
                for s, t in self._last_seen.items()
                if force or now - t >= self.settings.quiet_seconds
            ]
            batches = [(s, self._batches.pop(s)) for s in ready]
            for s in ready:
                del self._last_seen[s]
        for _, batch in batches:
            self._handle(batch)

    def _handle(self, batch: SeriesBatch) -> None:
        from medtl.pacs.ingest import analyse_batch

        model = self.settings.route(batch.modality, batch.body_part)
        if model is None:
            self.skipped += 1
            logger.warning(
                "pacs listener: no route for a %s series; not analysed", batch.modality or "unknown"
            )
            shutil.rmtree(batch.folder, ignore_errors=True)
            return
        try:
            if self.queue:
                from medtl.pacs.jobs import queue_batch

                queue_batch(self.store, batch, model, key=self.key)
                self.outcomes.append(_queued(batch, model))
            else:
                self.outcomes.append(analyse_batch(self.store, batch, model, key=self.key))
        except StudyRefusedError as err:  # the model's answer, not a fault: no case
            logger.warning("pacs listener: a %s series was refused by %s", batch.modality, model)
            self.refusals.append("; ".join(err.reasons))
        except Exception as err:  # one bad series must not stop the listener
            logger.exception("pacs listener: a %s series failed", batch.modality or "")
            self.failures.append(f"{type(err).__name__}: {err}")
        finally:
            if not self.queue:
                shutil.rmtree(batch.folder, ignore_errors=True)


def _queued(batch: SeriesBatch, model: str) -> AnalysisOutcome:
    from medtl.pacs.ingest import AnalysisOutcome

    return AnalysisOutcome(
        case_id="(queued)",
        prediction_id=0,
        model=model,
        summary=f"queued {batch.n_instances} instances",
        new_case=False,
    )
