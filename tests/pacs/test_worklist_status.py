"""The worklist shows each case's analysis job and SR push, and the analyses that have no
case yet (queued, running, failed with the reason); the data comes in two queries for the
page shown, whatever its size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import event

from medtl.io.scan import Scan
from medtl.pacs.records import mark_push
from medtl.pacs.worklist import case_pacs_status, open_jobs
from medtl.review.jobs import JobQueue
from tests.pacs.conftest import cheap_store

PAGE = Path(__file__).resolve().parents[2] / "app" / "pages" / "worklist.py"
PW = "Qv7-plover-Tandem-91x"


def _scan(seed: int) -> Scan:
    rng = np.random.default_rng(seed)
    return Scan(
        array=rng.normal(size=(6, 5)).astype(np.float32),
        spacing=(0.5, 0.5),
        affine=np.eye(4),
        modality="CR",
        source_format="dicom",
        meta={"patient_pseudonym": "PSN-0A1B2C3D4E"},
    )


@pytest.fixture
def worklist(home):
    """Cases with a done job and a failed push, a running job, a sent SR; and case-less
    jobs: one queued, one failed for good."""
    with cheap_store() as store:
        store.accounts.add_user("ada", PW, "admin")
        ada = store.accounts.get_user("ada")
        cases = []
        for i in range(4):
            case = store.create_case(ada, _scan(i)).case_id
            pred = store.record_prediction(
                ada, case, model_name="m", model_version="1", label="nodule", probability=0.6
            )
            cases.append((case, pred.id))
        queue = JobQueue(store.db)
        (a, pa), (b, pb), _, _ = cases
        # a: analysed by a job, its SR failed twice; b: pushed twice, the second one sent
        job, _ = queue.enqueue("pacs-study", "JOB-A", "m@1", "sealed")
        queue.claim("w1", 60)
        queue.complete(job.id, "w1", a)
        mark_push(store.db, a, pa, "failed", error="HTTP 503 Service Unavailable", attempted=True)
        mark_push(store.db, a, pa, "failed", error="HTTP 503 Service Unavailable", attempted=True)
        mark_push(store.db, b, pb, "failed", error="timeout", attempted=True)
        pb2 = store.record_prediction(
            ada, b, model_name="m", model_version="2", label="nodule", probability=0.7
        ).id
        mark_push(store.db, b, pb2, "done", attempted=True)
        # case-less jobs: one failed for good, one queued
        bad, _ = queue.enqueue("pacs-study", "JOB-BAD", "m@1", "sealed", max_attempts=1)
        queue.claim("w1", 60)
        queue.fail(bad.id, "w1", "PacsError: the study holds no image")
        queue.enqueue("pacs-study", "JOB-Q", "m@1", "sealed")
        store.submit_review(ada, b, "agree")
    return {"cases": [x[0] for x in cases], "admin": ada}


def test_status_of_a_page_in_two_queries(worklist) -> None:
    a, b, c, d = worklist["cases"]
    with cheap_store() as store:
        statements: list[str] = []
        event.listen(
            store.db.engine, "before_cursor_execute", lambda *args: statements.append(args[2])
        )
        status = case_pacs_status(store.db, [a, b, c, d])
        assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 2
        counts, waiting = open_jobs(store.db)
    assert status[a].job_label == "done"
    assert status[a].push_label == "send failed (2 attempts): HTTP 503 Service Unavailable"
    assert status[b].job_label == "" and status[b].push_label == "sent"  # the latest push
    assert (status[c].job_label, status[c].push_label) == ("", "")
    assert counts == {"queued": 1, "running": 0, "failed": 1, "refused": 0}
    assert [(j.key, j.status, j.last_error) for j in waiting] == [
        ("JOB-Q", "queued", None),
        ("JOB-BAD", "failed", "PacsError: the study holds no image"),
    ]
    with cheap_store() as store:
        assert case_pacs_status(store.db, []) == {}


def test_worklist_page_shows_job_and_push_status(worklist) -> None:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    a, b, c, _ = worklist["cases"]
    st.cache_resource.clear()
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.session_state["medtl_user"] = worklist["admin"]
    at.run()
    assert not at.exception
    at.multiselect(key="wl_status").set_value(["awaiting_review", "agreed"]).run()
    table = at.dataframe[-1].value.set_index("Case")
    assert table.loc[a, "Analysis"] == "done"
    assert table.loc[a, "PACS send"].startswith("send failed (2 attempts): HTTP 503")
    assert table.loc[b, "PACS send"] == "sent"
    assert table.loc[c, "PACS send"] == "" and table.loc[c, "Analysis"] == ""

    (expander,) = at.expander
    assert expander.label == "PACS analyses without a case: 1 queued, 1 failed"
    jobs = at.dataframe[0].value
    assert list(jobs["Status"]) == ["queued", "failed"]
    assert list(jobs["Problem"]) == ["", "PacsError: the study holds no image"]
    st.cache_resource.clear()
