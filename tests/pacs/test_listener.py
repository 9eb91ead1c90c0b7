"""``medtl pacs listen``: a real C-STORE SCP receiving a 40-slice CT series from dcmtk's
storescu, refusing what it cannot analyse, and reporting a storage failure."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from medtl.pacs.settings import PacsSettings, Route
from tests.io.dicom_factory import non_image, write
from tests.pacs.conftest import (
    CT_SLICES,
    PHI_ACCESSION,
    PHI_ID,
    PHI_NAME,
    SCU_AET,
    cheap_store,
    free_port,
    make_cr,
    make_ct,
)
from tests.pacs.test_pacs import assert_no_phi

STORESCU = shutil.which("storescu")


def _settings(packages, **kw) -> PacsSettings:
    return PacsSettings(
        listen_port=free_port(),
        quiet_seconds=1.0,
        routes=[Route(modality="CT", model=str(packages["CT"]))],
        **kw,
    )


def _wait(predicate, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def _send(port: int, datasets, *, called: str = "MEDTL") -> list[int]:
    """C-STORE each dataset with pynetdicom; the status of each."""
    from pynetdicom import AE

    ae = AE(ae_title=SCU_AET)
    for uid in {str(d.SOPClassUID) for d in datasets}:
        ae.add_requested_context(uid)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(d).Status) for d in datasets]
    finally:
        assoc.release()


@pytest.mark.skipif(STORESCU is None, reason="dcmtk's storescu is installed by make test")
def test_ct_series_from_storescu_becomes_one_case(home, packages, tmp_path, caplog) -> None:
    import logging

    caplog.set_level(logging.DEBUG)  # every record of every logger, pynetdicom's included
    from medtl.pacs.listener import Listener

    if STORESCU is None:  # pragma: no cover - make test installs dcmtk
        pytest.fail("storescu (dcmtk) is needed")
    study = generate_uid()
    series = make_ct(study)
    files = [write(ds, tmp_path / "sent" / f"{i:03d}.dcm") for i, ds in enumerate(series)]
    uids = [study, str(series[0].SeriesInstanceUID), *(str(d.SOPInstanceUID) for d in series)]
    settings = _settings(packages)
    with cheap_store() as store:
        listener = Listener(store, settings, host="127.0.0.1")
        listener.start()
        try:
            sent = subprocess.run(
                [
                    STORESCU,
                    "-aet",
                    SCU_AET,
                    "-aec",
                    settings.local_ae_title,
                    "127.0.0.1",
                    str(settings.listen_port),
                    *map(str, files),
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert sent.returncode == 0, sent.stderr
            # a CR with no route, and a non-image object the listener must refuse
            cr = make_cr(generate_uid())
            statuses = _send(settings.listen_port, [cr, non_image("SR")])
            assert statuses == [0x0000, 0x0122]
            _wait(lambda: listener.handled >= 1 and listener.skipped >= 1)
            time.sleep(1.5)  # nothing else may turn up
        finally:
            listener.stop()
        assert listener.failures == []
        (outcome,) = listener.outcomes
        cases = store.worklist(None)
        assert [c.case_id for c in cases] == [outcome.case_id]
        detail = store.open_case(None, outcome.case_id)
        assert detail.case.modality == "CT"
        scan = store.load_image(detail.images[0])
        assert scan.shape[0] == CT_SLICES
        assert detail.predictions[0].model_name == "pacs-ct"
    for secret in [PHI_NAME, PHI_ID, *uids]:
        assert secret not in caplog.text
    assert "pacs listener" in caplog.text  # the capture worked
    assert not list((home / "spool").rglob("*.dcm"))
    assert_no_phi(home, [PHI_NAME, PHI_ID, PHI_ACCESSION, *uids])


def test_wrong_called_ae_title_is_rejected_and_storage_failure_is_reported(home, packages) -> None:
    from pynetdicom import AE

    from medtl.pacs.listener import Listener

    settings = _settings(packages, allowed_calling_aets=[SCU_AET])
    with cheap_store() as store:
        listener = Listener(store, settings, host="127.0.0.1")
        listener.start()
        try:
            ae = AE(ae_title=SCU_AET)
            ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2")
            assoc = ae.associate("127.0.0.1", settings.listen_port, ae_title="NOTMEDTL")
            assert assoc.is_rejected
            stranger = AE(ae_title="STRANGER")  # not in allowed_calling_aets
            stranger.add_requested_context("1.2.840.10008.5.1.4.1.1.2")
            assoc = stranger.associate("127.0.0.1", settings.listen_port, ae_title="MEDTL")
            assert assoc.is_rejected
            # the spool folder becomes unusable (a file where the folder was): out of resources
            spool = listener._spool
            assert spool is not None
            shutil.rmtree(spool)
            spool.write_bytes(b"not a folder")
            ct = make_ct(generate_uid(), n=2)
            assert _send(settings.listen_port, ct[:1]) == [0xA700]
            Path(spool).unlink()
        finally:
            listener.stop()
        assert listener.outcomes == [] and store.worklist(None) == []


@pytest.mark.skipif(STORESCU is None, reason="dcmtk's storescu is installed by make test")
def test_medtl_pacs_listen_command_routes_by_app_toml(home, packages, tmp_path) -> None:
    """The command as a process: routes from app.toml, AE title and port from the
    environment, a CR series from storescu, one case, then exit after --max-series 1."""
    import os
    import socket
    import sys

    home.mkdir(parents=True, exist_ok=True)
    (home / "app.toml").write_text(
        f'[pacs]\nquiet_seconds = 0.5\n\n[[pacs.routes]]\nmodality = "CR"\n'
        f'body_part = "CHEST"\nmodel = "{packages["CR"]}"\n'
    )
    port = free_port()
    env = {**os.environ, "MEDTL_LISTEN_PORT": str(port), "MEDTL_AE_TITLE": "SITEAI"}
    cr = make_cr(generate_uid())
    sent = write(cr, tmp_path / "cr.dcm")
    proc = subprocess.Popen(
        [sys.executable, "-m", "medtl.cli", "pacs", "listen", "--max-series", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        _wait(listening, timeout=120)
        done = subprocess.run(
            [STORESCU, "-aet", SCU_AET, "-aec", "SITEAI", "127.0.0.1", str(port), str(sent)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out.startswith("case CASE-"), out
    for secret in (PHI_NAME, PHI_ID, str(cr.StudyInstanceUID)):
        assert secret not in out + err
    with cheap_store() as store:
        (case,) = store.worklist(None)
        assert case.modality == "CR"
