"""Library messages lose the header values they quote (medtl.io.redact)."""

from __future__ import annotations

import logging
import warnings

import pydicom
import pytest

from medtl.io.deid import deidentify
from medtl.io.redact import RedactQuotedValues, redact_values, redacted_warnings
from tests.io.test_deid import KEY, make_ct

logger = logging.getLogger("tests.io.redact")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('The string "Bartholomew" is unlikely', "The string <redacted> is unlikely"),
        ("Invalid value for VR DA: '1945031X'", "Invalid value for VR DA: <redacted>"),
        ('Invalid value for VR PN: "O\'Brien"', "Invalid value for VR PN: <redacted>"),
        ("no value here", "no value here"),
    ],
)
def test_redact_values(text: str, expected: str) -> None:
    assert redact_values(text) == expected


def test_warnings_inside_are_logged_redacted_once_each(
    caplog: pytest.LogCaptureFixture, recwarn
) -> None:
    caplog.set_level(logging.DEBUG, logger="tests.io.redact")
    with redacted_warnings(logger, "building"):
        for _ in range(3):
            warnings.warn('The string "Quintessa" is a name', UserWarning, stacklevel=1)
        warnings.warn("old API", DeprecationWarning, stacklevel=1)
    assert len(recwarn) == 0  # nothing left for the warning machinery (stderr)
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (
        logging.WARNING,
        "building: UserWarning: The string <redacted> is a name (3 times)",
    ) in messages
    assert (logging.DEBUG, "building: DeprecationWarning: old API") in messages
    assert "Quintessa" not in caplog.text


def test_warnings_are_logged_when_the_block_raises(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="tests.io.redact")
    with pytest.raises(RuntimeError), redacted_warnings(logger, "reading"):
        warnings.warn("value 'Quintessa'", UserWarning, stacklevel=1)
        raise RuntimeError("boom")
    assert "reading: UserWarning: value <redacted>" in caplog.text


def test_filter_redacts_records() -> None:
    record = logging.LogRecord("pydicom", logging.WARNING, __file__, 1, "bad %s", ("'X'",), None)
    assert RedactQuotedValues().filter(record) is True
    assert record.getMessage() == "bad <redacted>"


def test_deidentify_leaves_no_value_warning_for_stderr(
    tmp_path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], recwarn
) -> None:
    """pydicom warns (and logs) about an invalid UID read from a file, quoting the UID."""
    caplog.set_level(logging.DEBUG)
    ds = make_ct()
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.999.12345"
    path = tmp_path / "bad_uid.dcm"
    ds.save_as(path, enforce_file_format=True)
    invalid = b"1.2.826.0.1.3680043.10.999.1234X"  # same length, invalid on disk
    path.write_bytes(path.read_bytes().replace(b"1.2.826.0.1.3680043.10.999.12345", invalid))
    deidentify(pydicom.dcmread(path), key=KEY)
    out, err = capfd.readouterr()
    assert "Invalid value for VR UI" in caplog.text  # pydicom did complain...
    assert not [w for w in recwarn if "1234X" in str(w.message)]  # ...not to stderr
    assert "1234X" not in out + err + caplog.text
