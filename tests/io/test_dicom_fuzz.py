"""Property test: damaged DICOM bytes only ever raise ScanError (never another exception)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from medtl.io.dicom import read_dataset
from medtl.io.errors import ScanError
from medtl.io.scan import Scan
from medtl.io.series import load_dicom
from tests.io import dicom_factory as f


@functools.cache
def _seeds() -> tuple[bytes, ...]:
    px = ((np.add.outer(np.arange(32), np.arange(32)) * 37) % 3000).astype(np.int16)
    ct = f.ct_slice(px, window=(40, 400))
    grey8 = f.cr_image((px % 256).astype(np.uint8), photometric="MONOCHROME1")
    vol = np.stack([px, px[::-1], px[:, ::-1]])
    return (
        f.to_bytes(ct),
        f.to_bytes(ct, preamble=False),
        f.to_bytes(ct, file_meta=False),
        f.to_bytes(f.encode(ct, ImplicitVRLittleEndian)),
        f.to_bytes(f.encode(ct, ExplicitVRBigEndian)),
        f.to_bytes(f.encode(ct, DeflatedExplicitVRLittleEndian)),
        f.to_bytes(f.encode(ct, RLELossless)),
        f.to_bytes(f.encode(ct, JPEG2000Lossless)),
        f.to_bytes(f.encode(ct, JPEGLSLossless)),
        f.to_bytes(f.encode(grey8, JPEGBaseline8Bit)),
        f.to_bytes(f.gdcm_encode(ct, JPEGLosslessSV1)),
        f.to_bytes(f.enhanced_multiframe(vol, per_frame_rescale=[(1, 0), (2, 0), (1, 5)])),
        f.to_bytes(f.multiframe(vol.astype(np.uint16))),
    )


_mutation = st.tuples(
    st.sampled_from(["flip", "truncate", "insert", "overwrite"]),
    st.floats(min_value=0.0, max_value=1.0),
    st.binary(min_size=1, max_size=8),
)


def _mutate(data: bytes, mutations: list[tuple[str, float, bytes]]) -> bytes:
    buf = bytearray(data)
    for op, where, payload in mutations:
        pos = min(int(where * len(buf)), max(len(buf) - 1, 0))
        if op == "flip" and buf:
            buf[pos] ^= payload[0] or 0xFF
        elif op == "truncate":
            del buf[pos:]
        elif op == "insert":
            buf[pos:pos] = payload
        elif op == "overwrite":
            buf[pos : pos + len(payload)] = payload
    return bytes(buf)


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDTL_HOME", str(tmp_path / "home"))


def test_seeds_are_valid():
    for seed in _seeds():
        assert isinstance(load_dicom([seed]), Scan)


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(min_value=0, max_value=12),
    mutations=st.lists(_mutation, min_size=1, max_size=4),
)
def test_mutated_files_raise_only_scan_errors(seed, mutations):
    data = _mutate(_seeds()[seed], mutations)
    for call in (
        lambda: read_dataset(data),
        lambda: load_dicom([data]),
        lambda: load_dicom([data, _seeds()[0]]),
    ):
        try:
            result = call()
        except ScanError as exc:
            assert str(exc)
        else:
            assert result is not None
            if isinstance(result, Scan):
                assert result.array.dtype == np.float32
