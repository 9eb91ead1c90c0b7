"""Decode untrusted uploads in a small pool of worker processes, fairly between users.

Compressed-DICOM decoders are C/C++/Rust libraries. A crafted or damaged file can crash one
(python-gdcm has terminated the interpreter on corrupt JPEG headers in our fuzzing), hang it,
or make it ask for gigabytes. In a server that must not take down, block or starve the other
clinicians, so :class:`DecoderPool` runs :func:`medtl.io.load_scan` in worker processes:

* **several workers** (``MEDTL_DECODE_WORKERS``, default 2), started with ``spawn`` (no
  inherited threads or locks);
* **a per-upload timeout** (``MEDTL_DECODE_TIMEOUT``, default 120 s): a decode that takes
  longer is abandoned and *only its worker* is killed and replaced;
* **a memory limit per worker** (``RLIMIT_AS``, ``MEDTL_DECODE_MEMORY_LIMIT``, default
  ``3G``): an allocation past it fails inside that worker (reported as
  :class:`~medtl.io.errors.ImageTooLargeError`) or kills it, never the server;
* **fair queueing**: each user (the ``user`` the app passes) holds at most ``per_user``
  workers at a time (default 1), and a free worker goes to the waiting user served least
  recently, so one user's queue of uploads, or one hung upload, cannot delay another's.

Scan errors raised in a worker reach the caller unchanged; any other exception there is a
bug: its PHI-free traceback is logged here and :class:`DecoderBugError` is raised.

**Test hook** (never enabled in production): a pool built with ``test_hooks=True`` treats
uploads that start with ``MEDTL-TEST-HANG`` (sleep forever), ``MEDTL-TEST-CRASH`` (the
worker exits at once), ``MEDTL-TEST-BUG`` (a TypeError, as a bug would raise) or
``MEDTL-TEST-ALLOC:<bytes>`` (allocate that much, as a bomb would) specially, so tests can
show that one stuck upload does not delay another user's.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import multiprocessing
import os
import threading
from collections import Counter, deque
from typing import Any

import numpy as np

from medtl.io.errors import CorruptScanError, ImageTooLargeError, ScanError
from medtl.io.limits import parse_size
from medtl.io.scan import Scan

logger = logging.getLogger(__name__)

DEFAULT_WORKERS = 2
DEFAULT_MEMORY_LIMIT = 3 * 1024**3
DEFAULT_TIMEOUT = 120.0


class DecoderBugError(RuntimeError):
    """An unexpected exception (a bug, not a bad file) in a decoder worker; see the log."""


# ----------------------------------------------------------------------------- worker side


def _limit_memory(limit: int | None) -> None:
    if not limit:
        return
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


_TEST_BUG_MESSAGE = "MEDTL-TEST-BUG: a simulated bug in the decoder's own code"


def _test_hook(source: bytes | str) -> None:
    import time

    if not isinstance(source, bytes) or not source.startswith(b"MEDTL-TEST-"):
        return
    if source.startswith(b"MEDTL-TEST-HANG"):
        time.sleep(10**6)
    elif source.startswith(b"MEDTL-TEST-CRASH"):
        os._exit(134)
    elif source.startswith(b"MEDTL-TEST-BUG"):
        raise TypeError(_TEST_BUG_MESSAGE)
    elif source.startswith(b"MEDTL-TEST-ALLOC:"):
        size = int(source.split(b":", 1)[1].split(b"\n", 1)[0])
        try:
            block = np.ones(size, dtype=np.uint8)  # touched, so it is resident
        except MemoryError as exc:
            raise ImageTooLargeError(
                "The scan is too large to load into memory on this machine."
            ) from exc
        del block


def _peak_rss(resource: Any) -> int:
    """This worker's own peak resident bytes.

    ``ru_maxrss`` is kept across ``execve`` on Linux, so a spawned worker would report the
    parent's size at spawn time; ``VmHWM`` belongs to the worker's own address space.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _preload() -> None:
    """Import the whole decode stack now, so a fresh worker's first upload is not slowed by
    a second of imports (a replaced worker would otherwise charge them to the next user)."""
    import importlib

    for name in (
        "medtl.io.series",
        "medtl.io.dicom_pixels",
        "medtl.io.deid",
        "medtl.io.archive",
        "medtl.io.nifti",
        "medtl.io.raster",
        "pydicom.pixels",
    ):
        importlib.import_module(name)  # fmt: skip


def _worker_main(conn: Any, memory_limit: int | None, test_hooks: bool) -> None:
    """Serve decode requests on ``conn`` until it closes (runs in the worker process)."""
    import resource

    _limit_memory(memory_limit)
    logging.getLogger("medtl").addHandler(logging.NullHandler())
    logging.getLogger("medtl").propagate = False  # bugs are reported to the parent instead
    from medtl.io.errors import phi_free_traceback
    from medtl.io.load import load_scan

    _preload()

    while True:
        try:
            source, kwargs = conn.recv()
        except (EOFError, OSError):
            return
        try:
            if test_hooks:
                _test_hook(source)
            scan = load_scan(source, **kwargs)
        except ScanError as exc:
            reply: tuple[Any, ...] = ("scan_error", exc)
        except MemoryError:
            reply = ("scan_error", _too_large(memory_limit))
        except Exception as exc:  # a bug: report it, the parent logs it
            reply = ("bug", type(exc).__qualname__, phi_free_traceback(exc))
        else:
            array = np.ascontiguousarray(scan.array)
            fields = {
                f.name: getattr(scan, f.name) for f in dataclasses.fields(scan) if f.name != "array"
            }
            reply = ("ok", fields, array.shape, array.dtype.str)
        conn.send((*reply, _peak_rss(resource)))
        if reply[0] == "ok":
            conn.send_bytes(memoryview(array).cast("B"))
            del array, scan


def _too_large(memory_limit: int | None) -> ImageTooLargeError:
    limit = f" ({memory_limit / 1024**3:.1f} GiB)" if memory_limit else ""
    return ImageTooLargeError(
        f"The scan needs more memory than an image decoder may use{limit}, so it was refused. "
        "It is too large (or a decompression bomb); upload a smaller series."
    )


# ----------------------------------------------------------------------------- parent side


class _Worker:
    """One decoder process and the parent's end of its pipe."""

    def __init__(self, ctx: Any, memory_limit: int | None, test_hooks: bool) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=_worker_main,
            args=(child, memory_limit, test_hooks),
            name="medtl-decoder",
            daemon=True,
        )
        self.process.start()
        child.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.join(10)
        self.conn.close()


class DecoderPool:
    """Worker processes that run ``load_scan`` with a timeout, a memory limit and fair queues.

    Args:
        workers: number of worker processes (default ``MEDTL_DECODE_WORKERS`` or 2).
        memory_limit: address-space limit of each worker in bytes, ``0`` for none (default
            ``MEDTL_DECODE_MEMORY_LIMIT`` or 3 GiB).
        timeout: seconds one decode may take (default ``MEDTL_DECODE_TIMEOUT`` or 120).
        per_user: most workers one user may hold at a time.
        test_hooks: enable the test-only upload prefixes described in the module docstring.

    Example:
        >>> pool = DecoderPool(workers=2)  # doctest: +SKIP
        >>> scan = pool.load(upload_bytes, user="dr-a")  # doctest: +SKIP
        >>> pool.shutdown()  # doctest: +SKIP
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        memory_limit: int | None = None,
        timeout: float | None = None,
        per_user: int = 1,
        test_hooks: bool = False,
    ) -> None:
        self.workers = workers
        self.memory_limit = memory_limit
        self.timeout = timeout
        self.per_user = per_user
        self.test_hooks = test_hooks
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._waiting: dict[str, deque[object]] = {}
        self._turns: list[str] = []  # users with waiting uploads, by arrival
        self._active: Counter[str] = Counter()
        self._last_served: dict[str, int] = {}
        self._serial = itertools.count()
        self._closed = False
        self._uploads = itertools.count()
        self.peak_rss: dict[int, int] = {}  # worker pid -> peak resident bytes (last seen)

    # -- configuration resolved at first use (no work in __init__)
    def _size(self) -> int:
        if self.workers is None:
            self.workers = int(os.environ.get("MEDTL_DECODE_WORKERS", DEFAULT_WORKERS))
        return max(1, self.workers)

    def _memory(self) -> int | None:
        if self.memory_limit is None:
            text = os.environ.get("MEDTL_DECODE_MEMORY_LIMIT", "")
            self.memory_limit = parse_size(text) if text else DEFAULT_MEMORY_LIMIT
        return self.memory_limit or None

    def _timeout(self, timeout: float | None) -> float:
        if timeout is not None:
            return timeout
        if self.timeout is None:
            self.timeout = float(os.environ.get("MEDTL_DECODE_TIMEOUT", DEFAULT_TIMEOUT))
        return self.timeout

    def _spawn(self) -> _Worker:
        ctx = multiprocessing.get_context("spawn")  # no inherited threads and locks
        return _Worker(ctx, self._memory(), self.test_hooks)

    def start(self) -> DecoderPool:
        """Start every worker now (so the first uploads do not wait for a process start)."""
        with self._cond:
            while len(self._idle) + len(self._busy) < self._size():
                self._idle.append(self._spawn())
        return self

    # -- scheduling
    def _next_ticket(self) -> object | None:
        """The oldest upload of the waiting user served least recently (never served first;
        ties go to the user who has waited longest) among users under ``per_user``."""
        eligible = [u for u in self._turns if self._active[u] < self.per_user]
        if not eligible:
            return None
        user = min(eligible, key=lambda u: self._last_served.get(u, -1))
        return self._waiting[user][0]

    def _acquire(self, user: str) -> _Worker:
        ticket = object()
        with self._cond:
            self._waiting.setdefault(user, deque()).append(ticket)
            if user not in self._turns:
                self._turns.append(user)
            try:
                while self._closed is False and not (
                    len(self._busy) < self._size() and self._next_ticket() is ticket
                ):
                    self._cond.wait()
            finally:
                self._waiting[user].remove(ticket)
                if not self._waiting[user]:
                    del self._waiting[user]
                    self._turns.remove(user)
                self._cond.notify_all()
            if self._closed:
                raise ScanError("The image decoder is shutting down; try again in a moment.")
            self._active[user] += 1
            self._last_served[user] = next(self._serial)
            worker = self._idle.pop() if self._idle else self._spawn()
            if not worker.process.is_alive():  # died while idle (e.g. killed from outside)
                worker.kill()
                worker = self._spawn()
            self._busy.add(worker)
            return worker

    def _release(self, worker: _Worker, user: str, healthy: bool) -> None:
        with self._cond:
            self._active[user] -= 1
            if not self._active[user]:
                del self._active[user]
                if user not in self._waiting:  # idle users are forgotten
                    self._last_served.pop(user, None)
            self._busy.discard(worker)
            if healthy and not self._closed:
                self._idle.append(worker)
            elif not self._closed:
                # Replace it now, so its start-up is not charged to the next upload.
                self._idle.append(self._spawn())
            self._cond.notify_all()

    # -- one decode
    def load(
        self,
        source: bytes | str | os.PathLike[str],
        *,
        user: str | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Scan:
        """:func:`medtl.io.load_scan` in a worker; waits for a free worker fairly.

        Args:
            source: upload bytes or a path.
            user: who uploads (a user id or session id); uploads of one user are queued
                behind each other, not behind other users'. Pass it: without one, each
                upload counts as its own user.
            timeout: seconds the decode may take (default: the pool's).
            **kwargs: passed to ``load_scan`` (``series_uid``, ``modality``, ``limits``...).

        Returns:
            The :class:`~medtl.io.scan.Scan`.

        Raises:
            ScanError: as ``load_scan`` does; ``CorruptScanError`` when the worker crashed
                or took longer than ``timeout`` (the worker is then replaced).
            DecoderBugError: an unexpected exception in the worker (logged here).
        """
        arg = source if isinstance(source, bytes) else os.fspath(source)
        seconds = self._timeout(timeout)
        # Without a user id every upload is its own queue: fair between uploads, not users.
        user = user or f"upload-{next(self._uploads)}"
        worker = self._acquire(user)
        healthy = False
        try:
            scan = self._run(worker, arg, kwargs, seconds)
            healthy = True
            return scan
        except (ScanError, DecoderBugError) as exc:
            healthy = not getattr(exc, "_worker_lost", False)
            raise
        finally:
            if not healthy:
                worker.kill()
            self._release(worker, user, healthy)

    def _run(self, worker: _Worker, arg: bytes | str, kwargs: dict[str, Any], seconds: float,
             ) -> Scan:  # fmt: skip
        try:
            worker.conn.send((arg, kwargs))
            if not worker.conn.poll(seconds):
                raise _lost(CorruptScanError(
                    f"Decoding took longer than {seconds:.0f} s and was stopped. Upload a "
                    "smaller series or an uncompressed export."
                ))  # fmt: skip
            reply = worker.conn.recv()
        except (EOFError, OSError) as exc:
            worker.process.join(1)
            code = worker.process.exitcode
            logger.warning("image decoder process died (exit code %s); it is replaced", code)
            raise _lost(CorruptScanError(
                "The image decoder stopped on this file (it crashed or exceeded its memory "
                "limit), so the file is damaged, uses an unusual encoding or is too large. "
                "Export it again (uncompressed DICOM if possible) and retry."
            )) from exc  # fmt: skip
        kind, *rest, peak = reply
        self.peak_rss[worker.process.pid or 0] = peak
        if kind == "scan_error":
            raise rest[0]
        if kind == "bug":
            name, frames = rest
            logger.error(
                "internal error in an image decoder worker: %s (a bug in medtl, not a damaged "
                "file; message withheld)\nTraceback (most recent call last):\n%s",
                name,
                frames,
            )
            raise DecoderBugError(f"Internal error in the image decoder ({name}); see the log.")
        fields, shape, dtype = rest
        array = np.empty(shape, dtype=np.dtype(dtype))
        worker.conn.recv_bytes_into(memoryview(array).cast("B"))
        return Scan(array=array, **fields)

    def shutdown(self) -> None:
        """Stop every worker (e.g. at server exit); waiting uploads get a ScanError."""
        with self._cond:
            self._closed = True
            workers = [*self._idle, *self._busy]
            self._idle.clear()
            self._cond.notify_all()
        for worker in workers:
            worker.kill()

    def worker_pids(self) -> list[int]:
        """Process ids of the running workers (for monitoring and tests)."""
        with self._cond:
            return [w.process.pid for w in (*self._idle, *self._busy) if w.process.pid]


def _lost(exc: ScanError) -> ScanError:
    exc._worker_lost = True  # type: ignore[attr-defined]
    return exc


# ----------------------------------------------------------------------------- module API

_lock = threading.Lock()
_pool: DecoderPool | None = None


def default_pool() -> DecoderPool:
    """The process-wide pool (configured from ``MEDTL_DECODE_*``), created on first use."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = DecoderPool()
        return _pool


def load_scan_isolated(
    source: bytes | str | os.PathLike[str],
    *,
    user: str | None = None,
    timeout: float | None = None,
    **kwargs: Any,
) -> Scan:
    """:func:`medtl.io.load_scan` in the default :class:`DecoderPool`.

    Args:
        source: upload bytes or a path.
        user: the uploading user's id (fair queueing between users).
        timeout: seconds before the decode is abandoned (its worker is replaced).
        **kwargs: passed to ``load_scan`` (``series_uid``, ``modality``, ``limits``...).

    Returns:
        The :class:`~medtl.io.scan.Scan`.

    Raises:
        ScanError: as ``load_scan`` does; ``CorruptScanError`` when the decoder crashed or
            took longer than ``timeout``.
    """
    return default_pool().load(source, user=user, timeout=timeout, **kwargs)


def shutdown() -> None:
    """Stop the default pool's workers (e.g. at server exit); a later call starts anew."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown()


__all__ = ["DecoderBugError", "DecoderPool", "default_pool", "load_scan_isolated", "shutdown"]
