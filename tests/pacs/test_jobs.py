"""The analysis queue and ``medtl worker`` against the real Orthanc: idempotent queueing,
a worker killed with SIGKILL mid-job, and series queued by the listener."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from pydicom.uid import generate_uid

from medtl.pacs.settings import PacsSettings, load_pacs_settings
from medtl.review.jobs import JobQueue
from tests.pacs.conftest import PHI_ACCESSION, PHI_ID, PHI_NAME, cheap_store, make_ct
from tests.pacs.test_listener import _send, _settings, _wait
from tests.pacs.test_pacs import assert_no_phi, medtl, medtl_json


def test_queue_is_idempotent_and_worker_empties_it(pacs_env, home, studies, packages) -> None:
    model = str(packages["CR"])
    code, first = medtl("pacs", "analyse", studies.cr_study, "--model", model, "--queue")
    assert code == 0, first
    code, second = medtl("pacs", "analyse", studies.cr_study, "--model", model, "--queue")
    assert code == 0 and first.split()[:3] == second.split()[:3]  # "queued job N"

    code, out = medtl("worker", "--until-empty", "--poll-seconds", "0.1")
    assert code == 0, out
    assert "done" in out
    (job,) = medtl_json("pacs", "jobs")
    assert job["status"] == "done" and job["attempts"] == 1 and job["case_id"]
    medtl("pacs", "analyse", studies.cr_study, "--model", model, "--queue")
    code, out = medtl("worker", "--until-empty", "--poll-seconds", "0.1")
    assert code == 0 and out.strip() == ""  # nothing new: the study was done
    with cheap_store() as store:
        assert [c.case_id for c in store.worklist(None)] == [job["case_id"]]
        (stored,) = JobQueue(store.db).list_jobs()
    assert studies.cr_study not in stored.payload and studies.cr_study not in stored.key
    assert_no_phi(home, [PHI_NAME, PHI_ID, PHI_ACCESSION, *studies.all_uids()])


def test_worker_killed_mid_job_is_retried_once(pacs_env, home, studies, packages) -> None:
    from medtl.pacs.jobs import Worker, queue_study

    with cheap_store() as store:
        job = queue_study(store, studies.ct_study, str(packages["CT"]))
        queue = JobQueue(store.db)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "medtl.cli",
                "worker",
                "--lease-seconds",
                "2",
                "--poll-seconds",
                "0.05",
            ],
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait(lambda: queue.get(job.id).status == "running", timeout=120)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        killed = queue.get(job.id)
        assert killed.status == "running" and killed.attempts == 1  # killed before it ended

        started = time.monotonic()
        done = Worker(store, load_pacs_settings(), lease_s=2, poll_s=0.1).run(until_empty=True)
        assert [d.status for d in done] == ["done"]
        assert time.monotonic() - started >= 0.5 or killed.lease_until is not None
        final = queue.get(job.id)
        assert final.status == "done" and final.attempts == 2
        cases = store.worklist(None)
        assert [c.case_id for c in cases] == [final.case_id]
        assert len(store.open_case(None, final.case_id).predictions) == 1
    assert_no_phi(home, [PHI_NAME, PHI_ID, PHI_ACCESSION, *studies.all_uids()])


def test_listener_queues_series_for_the_worker(home, packages) -> None:
    from medtl.pacs.jobs import Worker
    from medtl.pacs.listener import Listener

    settings = _settings(packages)
    series = make_ct(generate_uid(), n=12)
    with cheap_store() as store:
        listener = Listener(store, settings, host="127.0.0.1", queue=True)
        listener.start()
        try:
            assert set(_send(settings.listen_port, series)) == {0}
            _wait(lambda: listener.handled >= 1)
        finally:
            listener.stop()
        (job,) = JobQueue(store.db).list_jobs()
        assert job.status == "queued" and job.kind == "pacs-series"
        assert store.worklist(None) == []
        done = Worker(store, PacsSettings(), lease_s=30, poll_s=0.1).run(until_empty=True)
        assert [d.status for d in done] == ["done"]
        (case,) = store.worklist(None)
        assert store.load_image(store.open_case(None, case.case_id).images[0]).shape[0] == 12
    assert not list((home / "spool").rglob("*.dcm"))


def test_series_sent_while_a_worker_runs_appears_once(home, packages, tmp_path) -> None:
    """storescu sends a 40-slice CT to the listener (queueing) while `medtl worker` runs in
    another process: the case appears on the worklist once."""
    import shutil

    from medtl.pacs.listener import Listener
    from tests.io.dicom_factory import write
    from tests.pacs.conftest import SCU_AET

    storescu = shutil.which("storescu")
    assert storescu, "storescu (dcmtk) is needed: make test installs it"
    series = make_ct(generate_uid())
    files = [str(write(ds, tmp_path / f"{i:03d}.dcm")) for i, ds in enumerate(series)]
    settings = _settings(packages)
    worker = subprocess.Popen(
        [sys.executable, "-m", "medtl.cli", "worker", "--poll-seconds", "0.2"],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with cheap_store() as store:
            listener = Listener(store, settings, host="127.0.0.1", queue=True)
            listener.start()
            try:
                sent = subprocess.run(
                    [
                        storescu,
                        "-aet",
                        SCU_AET,
                        "-aec",
                        "MEDTL",
                        "127.0.0.1",
                        str(settings.listen_port),
                        *files,
                    ],
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                assert sent.returncode == 0, sent.stderr
                _wait(lambda: listener.handled >= 1)
            finally:
                listener.stop()
            queue = JobQueue(store.db)
            _wait(lambda: queue.pending() == 0, timeout=180)
            time.sleep(1.0)
            (job,) = queue.list_jobs()
            assert job.status == "done" and job.attempts == 1
            (case,) = store.worklist(None)
            assert case.case_id == job.case_id
            assert len(store.open_case(None, case.case_id).predictions) == 1
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
