"""Load untrusted uploads in a separate process.

Compressed-DICOM decoders are C/C++/Rust libraries. A crafted or damaged file can crash one
(python-gdcm has terminated the interpreter on corrupt JPEG headers in our fuzzing), which in
a server would take down every user's session. :func:`load_scan_isolated` decodes in a
long-lived worker process: if the worker dies, the caller gets a
:class:`~medtl.io.errors.CorruptScanError` and the next call starts a fresh worker.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from medtl.io.errors import CorruptScanError, ScanError
from medtl.io.scan import Scan

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None


def _worker_load(source: bytes | str, kwargs: dict[str, Any]) -> Scan:
    from medtl.io.load import load_scan

    return load_scan(source, **kwargs)


def _get_pool() -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            # spawn: the worker must not inherit the server's threads and locks.
            _pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn")
            )
        return _pool


def _reset_pool() -> None:
    global _pool
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


def load_scan_isolated(
    source: bytes | str | os.PathLike[str], *, timeout: float = 300.0, **kwargs: Any
) -> Scan:
    """:func:`medtl.io.load_scan` in a worker process.

    Args:
        source: upload bytes or a path.
        timeout: seconds before the decode is abandoned (the worker is replaced).
        **kwargs: passed to ``load_scan`` (``series_uid``, ``modality``, ``max_bytes``...).

    Returns:
        The :class:`~medtl.io.scan.Scan`.

    Raises:
        ScanError: as ``load_scan`` does; ``CorruptScanError`` when the decoder crashed or
            took longer than ``timeout``.
    """
    arg = source if isinstance(source, bytes) else os.fspath(source)
    future = _get_pool().submit(_worker_load, arg, kwargs)
    try:
        return future.result(timeout=timeout)
    except ScanError:
        raise
    except BrokenProcessPool as exc:
        _reset_pool()
        logger.warning("image decoder process died; a new one will be started")
        raise CorruptScanError(
            "The image decoder crashed on this file, so it is damaged or uses an unusual "
            "encoding. Export it again (uncompressed DICOM if possible) and retry."
        ) from exc
    except FutureTimeout as exc:
        _reset_pool()
        raise CorruptScanError(
            f"Decoding took longer than {timeout:.0f} s and was stopped. Upload a smaller "
            "series or an uncompressed export."
        ) from exc


def shutdown() -> None:
    """Stop the worker process (e.g. at server exit)."""
    _reset_pool()
