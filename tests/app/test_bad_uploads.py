"""Bad uploads show a clear message and leave the app usable: a good upload that follows
is analysed normally, in the same browser session."""

from __future__ import annotations

import pytest

from medtl.review import ReviewStore

from .helpers import (
    analyse,
    bomb_png,
    dicom_bytes,
    errors,
    fake_pdf,
    new_app,
    seg_bytes,
    sign_in,
    upload,
)

BAD = {
    "pdf renamed .dcm": (fake_pdf, "report.dcm", "application/dicom"),
    "truncated DICOM": (lambda: dicom_bytes(seed=7)[:2000], "cut.dcm", "application/dicom"),
    "SEG object": (seg_bytes, "seg.dcm", "application/dicom"),
    "decompression bomb PNG": (bomb_png, "bomb.png", "image/png"),
}


def _good_upload_still_works(at) -> None:
    analyse(upload(at, dicom_bytes(seed=8), name="good.dcm"))
    assert not at.exception
    assert errors(at) == []
    assert at.metric[0].label == "Probability of nodule"
    with ReviewStore.open() as store:
        assert [c.status for c in store.worklist(None)] == ["awaiting_review"]


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_upload_shows_an_error_and_the_app_stays_usable(app_home, kind) -> None:
    make, name, mime = BAD[kind]
    at = sign_in(new_app().run(), "alice")
    upload(at, make(), name=name, mime=mime)
    assert not at.exception
    [message] = errors(at)
    assert message.startswith("This file cannot be used: ")
    assert len(message) > len("This file cannot be used: ") + 20  # says what is wrong
    assert "Traceback" not in message
    assert not [b for b in at.button if b.key == "analyse"]  # nothing to analyse
    with ReviewStore.open() as store:
        assert store.worklist(None) == []  # nothing stored
    _good_upload_still_works(at)


def test_bad_upload_messages_say_what_is_wrong(app_home) -> None:
    at = sign_in(new_app().run(), "alice")
    seen = {}
    for kind, (make, name, mime) in BAD.items():
        seen[kind] = errors(upload(at, make(), name=name, mime=mime))[0].lower()
    assert "pdf" in seen["pdf renamed .dcm"]
    assert "segmentation" in seen["SEG object"] or "seg" in seen["SEG object"]
    assert "decompression bomb" in seen["decompression bomb PNG"]
    assert len(set(seen.values())) == len(seen)  # each problem has its own message


def test_oversize_upload_is_refused_before_reading(app_home, monkeypatch) -> None:
    monkeypatch.setenv("MEDTL_APP_MAX_UPLOAD_MB", "0.01")  # about 10 kB
    at = sign_in(new_app().run(), "alice")
    big = dicom_bytes(seed=9) + b"\0" * 20_000  # a DICOM file of 28 kB
    upload(at, big, name="big.dcm")
    [message] = errors(at)
    assert message.startswith("The file is 28 kB; uploads are limited to 10 kB.")
    assert "medtl_scan" not in at.session_state
    assert len(dicom_bytes(seed=8)) < 10_000  # the next one fits the limit
    _good_upload_still_works(at)
