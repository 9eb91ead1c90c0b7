"""Uploads decoded in a worker process: same result, errors kept, a crash is contained."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from medtl.io import CorruptScanError, UnsupportedFormatError, isolated, load_scan
from medtl.io.isolated import load_scan_isolated


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.arange(256, dtype=np.uint16) * 200).reshape(16, 16)).save(buf, "PNG")
    return buf.getvalue()


def test_isolated_matches_in_process_and_keeps_errors() -> None:
    data = _png()
    a, b = load_scan_isolated(data), load_scan(data)
    assert np.array_equal(a.array, b.array) and a.spacing == b.spacing
    with pytest.raises(UnsupportedFormatError, match="PDF"):
        load_scan_isolated(b"%PDF-1.4\n" + b"0" * 2000)


def _die(source, kwargs):  # runs in the worker: simulates a decoder killing the process
    os._exit(134)


def test_worker_crash_becomes_scan_error_and_recovers(monkeypatch) -> None:
    monkeypatch.setattr(isolated, "_worker_load", _die)
    with pytest.raises(CorruptScanError, match="crashed"):
        load_scan_isolated(_png())
    monkeypatch.undo()
    assert load_scan_isolated(_png()).shape == (16, 16)
