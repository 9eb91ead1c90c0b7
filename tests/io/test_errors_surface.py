"""Damaged files become ScanError; bugs in medtl's own decode path propagate, logged once.

A catch-all that turned every exception into "the file is probably damaged" hid bugs in
medtl's own code. These tests inject a bug (a function of the decode path replaced by one
that raises RuntimeError or TypeError) and check it surfaces with its traceback in the log,
without the exception message (which may quote header values).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from medtl.io import CorruptScanError, ScanError, dicom, dicom_pixels, load_scan, series
from medtl.io.dicom import read_dataset
from medtl.io.errors import is_decoder_failure
from medtl.io.series import load_dicom
from tests.io import dicom_factory as f


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDTL_HOME", str(tmp_path / "home"))


def _ct_bytes() -> bytes:
    px = (np.arange(16 * 16, dtype=np.int16).reshape(16, 16) * 7) % 2000
    return f.to_bytes(f.ct_slice(px))


# What a careless message might quote (PHI); it must not reach the log.
_SECRET = f"injected bug near {f.PATIENT_NAME} {f.PATIENT_ID}"


def _bug(*args, **kwargs):
    raise RuntimeError(_SECRET)


def _type_bug(*args, **kwargs):
    raise TypeError(_SECRET)


def test_truncated_and_garbled_files_still_give_a_clear_scan_error() -> None:
    data = _ct_bytes()
    with pytest.raises(CorruptScanError, match=r"truncated|damaged"):
        load_scan(data[: len(data) - 300])
    garbled = bytearray(data)
    garbled[140:400] = b"\xff" * 260  # file meta and the first elements overwritten
    with pytest.raises(ScanError):
        load_scan(bytes(garbled))


@pytest.mark.parametrize(
    ("module", "name", "bug", "kind"),
    [
        (dicom_pixels, "_apply_modality", _bug, RuntimeError),  # pixel decoding
        (dicom_pixels, "_window", _type_bug, TypeError),
        (dicom, "_touch_header", _type_bug, TypeError),  # header parsing
        (series, "stack_positioned", _bug, RuntimeError),  # series assembly
    ],
)
def test_bug_in_the_decode_path_propagates_and_is_logged_without_phi(
    monkeypatch, caplog, module, name, bug, kind
) -> None:
    vol = np.arange(3 * 16 * 16, dtype=np.int16).reshape(3, 16, 16)
    blobs = [f.to_bytes(ds) for ds in f.ct_series(vol)]
    monkeypatch.setattr(module, name, bug)
    caplog.set_level(logging.ERROR, logger="medtl")
    with pytest.raises(kind, match="injected"):
        load_scan(blobs[0] if name != "stack_positioned" else _zip(blobs))
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, "logged once, not once per wrapper"
    text = errors[0].getMessage()
    assert "internal error" in text and kind.__name__ in text and name in text
    assert f.PATIENT_NAME not in text and f.PATIENT_ID not in text and "injected" not in text


def _zip(blobs: list[bytes]) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, blob in enumerate(blobs):
            zf.writestr(f"s{i}.dcm", blob)
    return buf.getvalue()


def test_the_same_exception_types_from_decoders_are_file_failures() -> None:
    # pydicom raising on a damaged value is a file failure; medtl raising is a bug.
    ds = read_dataset(_ct_bytes())
    ds.Rows = 0
    with pytest.raises(CorruptScanError):
        dicom_pixels.decode_frames(ds)
    from pydicom.errors import InvalidDicomError

    assert is_decoder_failure(InvalidDicomError("x"))
    assert is_decoder_failure(ValueError("x"))
    try:
        _bug()
    except RuntimeError as exc:
        assert not is_decoder_failure(exc)
    try:
        import numpy.lib.stride_tricks as st

        st.as_strided(np.zeros(1), shape=(-1,))  # raised inside numpy's own Python code
    except ValueError as exc:
        assert is_decoder_failure(exc)


def test_load_dicom_does_not_wrap_keyboard_interrupt(monkeypatch) -> None:
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dicom_pixels, "_apply_modality", interrupt)
    with pytest.raises(KeyboardInterrupt):
        load_dicom([_ct_bytes()])
