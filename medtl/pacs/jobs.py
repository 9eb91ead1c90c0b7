"""PACS analyses through the job queue (:mod:`medtl.review.jobs`) and ``medtl worker``.

A queued study carries only a sealed payload (the original StudyInstanceUID, encrypted
under the site secret and bound to the job key); the job key is a keyed pseudonym of study
and model, so queuing the same study for the same model twice gives one job. Series the
listener received wait de-identified under ``MEDTL_HOME/spool/jobs`` until a worker
analyses them.

Example::

    queue_study(store, study_uid, "cxr-nodule@1.0")
    Worker(store, load_pacs_settings()).run(until_empty=True)
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from medtl.pacs.types import SourceLink, StudyRefusedError

if TYPE_CHECKING:  # pragma: no cover
    from medtl.pacs.ingest import AnalysisOutcome, SeriesBatch
    from medtl.pacs.settings import PacsSettings
    from medtl.review import ReviewStore
    from medtl.review.jobs import JobInfo, JobQueue

logger = logging.getLogger(__name__)

KIND_STUDY = "pacs-study"
KIND_SERIES = "pacs-series"


def job_queue(store: ReviewStore) -> JobQueue:
    """The job queue on the store's database."""
    from medtl.review.jobs import JobQueue

    return JobQueue(store.db)


def _job_key(identity: str, model: str, key: bytes) -> str:
    from medtl.io.deid import pseudonym

    return pseudonym(f"{identity}|{model}", key=key, prefix="JOB")


def queue_study(
    store: ReviewStore, study_uid: str, model: str, *, key: bytes | None = None
) -> JobInfo:
    """Queue the analysis of a PACS study (idempotent by study and model).

    Returns:
        The job (the existing one when this study and model were queued before).
    """
    from medtl.pacs.ingest import site_key
    from medtl.pacs.records import seal_json

    key = site_key(key)
    job_key = _job_key(study_uid, model, key)
    payload = seal_json({"study_uid": study_uid}, job_key, key)
    job, created = job_queue(store).enqueue(KIND_STUDY, job_key, model, payload)
    logger.info("pacs: job %d %s", job.id, "queued" if created else "already queued")
    return job


def queue_batch(
    store: ReviewStore, batch: SeriesBatch, model: str, *, key: bytes | None = None
) -> JobInfo:
    """Queue a received, de-identified series (moved under ``MEDTL_HOME/spool/jobs``)."""
    from medtl.pacs.ingest import site_key
    from medtl.pacs.records import seal_json
    from medtl.paths import home_subdir

    key = site_key(key)
    job_key = _job_key(batch.link.series_uid, model, key)
    target = home_subdir("spool") / "jobs" / job_key
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not target.exists():
        shutil.move(str(batch.folder), target)
    payload = seal_json(
        {
            "link": batch.link.__dict__,
            "folder": target.name,
            "modality": batch.modality,
            "body_part": batch.body_part,
        },
        job_key,
        key,
    )
    job, created = job_queue(store).enqueue(KIND_SERIES, job_key, model, payload)
    if not created and job.status == "done":
        shutil.rmtree(target, ignore_errors=True)
    return job


def run_job(
    store: ReviewStore, settings: PacsSettings, job: JobInfo, key: bytes
) -> AnalysisOutcome:
    """Do one job (a retried job keeps the result an earlier attempt recorded)."""
    from medtl.pacs.ingest import SeriesBatch, analyse_batch, analyse_study
    from medtl.pacs.records import unseal_json
    from medtl.paths import home_subdir

    data = unseal_json(job.payload, job.key, key)
    if job.kind == KIND_STUDY:
        return analyse_study(store, settings, data["study_uid"], job.model, key=key, reuse=True)
    if job.kind == KIND_SERIES:
        folder = home_subdir("spool") / "jobs" / Path(data["folder"]).name
        batch = SeriesBatch(
            folder, SourceLink(**data["link"]), data.get("modality"), data.get("body_part")
        )
        try:
            out = analyse_batch(store, batch, job.model, key=key, reuse=True)
        except StudyRefusedError:
            shutil.rmtree(folder, ignore_errors=True)  # final: the images are not kept
            raise
        shutil.rmtree(folder, ignore_errors=True)
        return out
    raise ValueError(f"unknown job kind {job.kind!r}")


@dataclass(frozen=True)
class JobDone:
    """What a worker did with one job."""

    job_id: int
    status: str  # "done", "failed" (queued again while attempts remain) or "refused"
    case_id: str | None = None
    error: str | None = None


class Worker:
    """Pulls jobs from the queue and runs them, renewing its lease while it works; while
    idle it retries failed SR pushes whose back-off has passed.

    Args:
        store: the review store.
        settings: PACS settings (to retrieve queued studies).
        key: the site secret.
        lease_s: lease length; renewed every third of it while a job runs.
        poll_s: wait between polls of an empty queue.
        max_backoff_s: longest wait before a failed job is tried again (2, 4, 8... s).
    """

    def __init__(
        self,
        store: ReviewStore,
        settings: PacsSettings,
        *,
        key: bytes | None = None,
        lease_s: float = 120.0,
        poll_s: float = 1.0,
        max_backoff_s: float = 300.0,
    ) -> None:
        self.store = store
        self.settings = settings
        self.key = key
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.max_backoff_s = max_backoff_s
        self.worker_id = f"{socket.gethostname()[:40]}:{os.getpid()}"

    def _renew_until(self, queue: JobQueue, job_id: int, done: threading.Event) -> None:
        while not done.wait(self.lease_s / 3):
            if not queue.renew(job_id, self.worker_id, self.lease_s):
                logger.warning("jobs: lost the lease of job %d", job_id)
                return

    def run_one(self, job: JobInfo) -> JobDone:
        """Run a claimed job to done or failed (a failure is queued again while attempts
        remain)."""
        from medtl.pacs.ingest import site_key

        queue = job_queue(self.store)
        done = threading.Event()
        renewer = threading.Thread(
            target=self._renew_until, args=(queue, job.id, done), daemon=True
        )
        renewer.start()
        try:
            out = run_job(self.store, self.settings, job, site_key(self.key))
        except StudyRefusedError as err:  # final: no case, no result, nothing to push
            reasons = "; ".join(err.reasons)
            queue.refuse(job.id, self.worker_id, reasons)
            logger.warning("jobs: job %d refused by the model: %s", job.id, reasons)
            return JobDone(job.id, "refused", error=reasons)
        except Exception as err:  # recorded on the job, shown by `medtl pacs jobs`
            reason = f"{type(err).__name__}: {err}"
            queue.fail(
                job.id,
                self.worker_id,
                reason,
                retry_after_s=min(self.max_backoff_s, 2.0**job.attempts),
            )
            logger.warning("jobs: job %d failed on attempt %d", job.id, job.attempts)
            return JobDone(job.id, "failed", error=reason)
        finally:
            done.set()
            renewer.join()
        queue.complete(job.id, self.worker_id, out.case_id)
        logger.info("jobs: job %d done (case %s)", job.id, out.case_id)
        return JobDone(job.id, "done", out.case_id)

    def run(self, *, until_empty: bool = False, max_jobs: int | None = None) -> list[JobDone]:
        """Work until stopped; with ``until_empty``, until nothing is queued or running."""
        queue = job_queue(self.store)
        results: list[JobDone] = []
        while max_jobs is None or len(results) < max_jobs:
            job = queue.claim(self.worker_id, self.lease_s)
            if job is None:
                self.retry_pushes()
                if until_empty and queue.pending() == 0:
                    break
                time.sleep(self.poll_s)
                continue
            results.append(self.run_one(job))
        return results

    def retry_pushes(self) -> int:
        """While idle: retry the failed SR pushes that are due (see
        :func:`medtl.pacs.push.retry_failed`); returns how many succeeded."""
        from medtl.pacs.push import retry_failed

        try:
            outcomes = retry_failed(self.store, self.settings, key=self.key, due_only=True)
        except Exception:  # a broken push must not stop the worker
            logger.exception("jobs: retrying failed pushes failed")
            return 0
        return sum(o.status == "done" for o in outcomes)
