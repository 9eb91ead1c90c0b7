"""Uploads decoded in a pool of worker processes: same results, errors kept, and one user's
hung, crashing or exploding upload neither blocks nor delays another user's."""

from __future__ import annotations

import io
import logging
import statistics
import threading
import time
import zipfile
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from PIL import Image

from medtl.io import (
    CorruptScanError,
    ImageTooLargeError,
    ScanError,
    UnsupportedFormatError,
    load_scan,
)
from medtl.io.isolated import DecoderBugError, DecoderPool, load_scan_isolated, shutdown
from tests.io import bombs
from tests.io import dicom_factory as f

GIB = 1024**3


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.arange(256, dtype=np.uint16) * 200).reshape(16, 16)).save(buf, "PNG")
    return buf.getvalue()


def _series_zip(n: int = 24, size: int = 128) -> bytes:
    """A normal upload: a zipped CT series."""
    vol = (np.arange(n * size * size, dtype=np.int64).reshape(n, size, size) % 3000).astype(
        np.int16
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, ds in enumerate(f.ct_series(vol)):
            zf.writestr(f"series/{i:03d}.dcm", f.to_bytes(ds))
    return buf.getvalue()


@pytest.fixture
def pool() -> Iterator[DecoderPool]:
    p = DecoderPool(2, timeout=60, test_hooks=True).start()
    yield p
    p.shutdown()


def _solo_seconds(pool: DecoderPool, data: bytes, user: str) -> float:
    # Warm both workers (two users at once), then time this user's upload alone.
    warm = [_in_thread(lambda u=u: pool.load(data, user=u)) for u in ("warm-1", "warm-2")]
    for thread, _ in warm:
        thread.join(60)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        pool.load(data, user=user)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _in_thread(call: Callable[[], object]) -> tuple[threading.Thread, dict[str, object]]:
    out: dict[str, object] = {}

    def run() -> None:
        t0 = time.perf_counter()
        try:
            out["result"] = call()
        except Exception as exc:
            out["error"] = exc
        out["seconds"] = time.perf_counter() - t0

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_isolated_matches_in_process_and_keeps_errors() -> None:
    data = _png()
    try:
        a, b = load_scan_isolated(data, user="u1"), load_scan(data)
        assert np.array_equal(a.array, b.array) and a.spacing == b.spacing
        assert a.warnings == b.warnings and a.modality == b.modality
        with pytest.raises(UnsupportedFormatError, match="PDF"):
            load_scan_isolated(b"%PDF-1.4\n" + b"0" * 2000)
    finally:
        shutdown()


def test_a_hung_upload_does_not_delay_another_users_upload(pool: DecoderPool) -> None:
    normal = _series_zip()
    solo = _solo_seconds(pool, normal, "clinician-b")
    # Clinician A has two uploads stuck in the decoder. A holds at most one worker, so the
    # second waits in A's own queue and B's upload takes the other worker.
    stuck = [_in_thread(lambda: pool.load(b"MEDTL-TEST-HANG", user="clinician-a"))
             for _ in range(2)]  # fmt: skip
    time.sleep(0.5)
    t0 = time.perf_counter()
    scan = pool.load(normal, user="clinician-b")
    took = time.perf_counter() - t0
    assert scan.shape == (24, 128, 128)
    assert all(thread.is_alive() for thread, _ in stuck), "A's uploads are still hung"
    assert took < 4 * solo + 1.5, (took, solo)  # its own time, not A's 60 s timeout
    pool.shutdown()
    for thread, out in stuck:
        thread.join(20)
        assert isinstance(out.get("error"), ScanError), out  # stopped, or refused at shutdown


def test_timeout_kills_and_replaces_only_the_hung_worker(pool: DecoderPool) -> None:
    pool.load(_png(), user="a")
    before = set(pool.worker_pids())
    with pytest.raises(CorruptScanError, match="longer than 2 s"):
        pool.load(b"MEDTL-TEST-HANG", user="a", timeout=2)
    after = set(pool.worker_pids())
    assert len(after) == 2 and len(before & after) == 1, (before, after)
    assert pool.load(_png(), user="a").shape == (16, 16)


def test_worker_crash_becomes_scan_error_and_only_that_worker_is_replaced(
    pool: DecoderPool,
) -> None:
    before = set(pool.worker_pids())
    with pytest.raises(CorruptScanError, match="crashed"):
        pool.load(b"MEDTL-TEST-CRASH", user="a")
    after = set(pool.worker_pids())
    assert len(after) == 2 and len(before & after) == 1, (before, after)
    assert pool.load(_png(), user="a").shape == (16, 16)


def test_a_bug_in_the_worker_is_logged_and_raised_as_a_bug(pool: DecoderPool, caplog) -> None:
    caplog.set_level(logging.ERROR, logger="medtl")
    with pytest.raises(DecoderBugError, match="TypeError"):
        pool.load(b"MEDTL-TEST-BUG", user="a")
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    text = record.getMessage()
    assert "TypeError" in text and "_test_hook" in text and "simulated bug" not in text


def test_memory_limit_refuses_the_upload_and_keeps_the_worker() -> None:
    pool = DecoderPool(1, memory_limit=GIB, test_hooks=True).start()
    try:
        pool.load(_png(), user="a")
        pid = pool.worker_pids()
        with pytest.raises(ImageTooLargeError, match="too large"):
            pool.load(b"MEDTL-TEST-ALLOC:%d" % (2 * GIB), user="a")
        assert pool.worker_pids() == pid, "MemoryError inside the limit: same worker"
        assert max(pool.peak_rss.values()) < GIB
        assert pool.load(_png(), user="a").shape == (16, 16)
    finally:
        pool.shutdown()


def test_bombs_are_refused_in_bounded_memory_while_another_user_is_served(
    pool: DecoderPool, tmp_path
) -> None:
    zip_bomb = bombs.zip_of_zeros(tmp_path / "bomb.zip", 3 * GIB).read_bytes()
    dicom_bomb = bombs.deflated_dicom_of_zeros(20000, 20000)
    normal = _series_zip()
    solo = _solo_seconds(pool, normal, "clinician-b")
    for bomb, message in ((zip_bomb, "times its own size"), (dicom_bomb, "20000 x 20000")):
        thread, out = _in_thread(lambda b=bomb: pool.load(b, user="clinician-a"))
        time.sleep(0.05)
        t0 = time.perf_counter()
        assert pool.load(normal, user="clinician-b").shape == (24, 128, 128)
        took = time.perf_counter() - t0
        thread.join(60)
        error = out.get("error")
        assert isinstance(error, ImageTooLargeError) and message in str(error), error
        assert took < 4 * solo + 1.5, (took, solo)
    assert pool.peak_rss and max(pool.peak_rss.values()) < 2 * GIB, pool.peak_rss


def test_a_worker_killed_while_idle_is_replaced_before_the_next_upload(
    pool: DecoderPool,
) -> None:
    import os
    import signal

    pool.load(_png(), user="a")
    for pid in pool.worker_pids():
        os.kill(pid, signal.SIGKILL)  # e.g. the kernel's OOM killer
    time.sleep(0.2)
    assert pool.load(_png(), user="a").shape == (16, 16)


def test_a_free_worker_goes_to_the_user_served_least_recently() -> None:
    pool = DecoderPool(1, timeout=60, test_hooks=True).start()
    done: list[str] = []
    try:
        pool.load(_png(), user="warm")
        hung, _ = _in_thread(lambda: pool.load(b"MEDTL-TEST-HANG", user="a", timeout=3))
        time.sleep(0.3)
        threads = []
        for name, user in (("a2", "a"), ("a3", "a"), ("b1", "b")):  # A queues first
            thread, _ = _in_thread(lambda u=user, n=name: (pool.load(_png(), user=u),
                                                           done.append(n)))  # fmt: skip
            threads.append(thread)
            time.sleep(0.2)
        for thread in (hung, *threads):
            thread.join(60)
    finally:
        pool.shutdown()
    assert done == ["b1", "a2", "a3"], done
