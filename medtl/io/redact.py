"""Keep header values out of logs and stderr when libraries complain about them.

pydicom and highdicom report a dubious value *with the value*: pydicom logs and warns
``Invalid value for VR DA: '19450317x'``, highdicom warns ``The string "Bartholomew" is
unlikely to represent the intended person name`` for any one-word person name (a patient or
referring physician whose name has a single component). Printed by Python's default warning
handler, such a message puts a name on stderr, in a terminal, a container log or a worker's
journal.

Two pieces, used wherever medtl reads or builds DICOM:

* :func:`redact_values` replaces every quoted value (``'...'`` or ``"..."``) of a message by
  ``<redacted>``; :class:`RedactQuotedValues` is the logging filter that does it to a
  logger's records, and :func:`redact_pydicom_logs` installs it on the ``pydicom`` logger;
* :func:`redacted_warnings` is a context manager around a call: the warnings raised inside
  are captured (a local ``warnings.catch_warnings``, never a global filter) and re-emitted
  through :mod:`logging`, redacted, on the caller's logger.

Both only rewrite message text; what the libraries decide is unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
REDACTED = "<redacted>"
#: Warning categories that describe medtl's own code, not data: logged at DEBUG.
_DEVELOPER_CATEGORIES = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def redact_values(text: str) -> str:
    """``text`` with every quoted value replaced by ``<redacted>``.

    Args:
        text: a library's message.

    Returns:
        The message without quoted values.

    Example:
        >>> redact_values('The string "Bartholomew" is unlikely to represent a name')
        'The string <redacted> is unlikely to represent a name'
    """
    return _QUOTED.sub(REDACTED, text)


class RedactQuotedValues(logging.Filter):
    """A logging filter that redacts quoted values in the records it sees (never drops
    one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error handling
            return True
        redacted = redact_values(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def redact_logger(name: str) -> None:
    """Install (once) :class:`RedactQuotedValues` on the logger ``name``.

    Args:
        name: a logger name, e.g. ``"pydicom"`` or ``"highdicom"``.
    """
    log = logging.getLogger(name)
    if not any(isinstance(f, RedactQuotedValues) for f in log.filters):
        log.addFilter(RedactQuotedValues())


def redact_pydicom_logs() -> None:
    """Install (once) the redacting filter on the ``pydicom`` logger.

    pydicom logs value-validation problems with the offending value, e.g. a malformed
    PatientBirthDate. medtl calls this before reading headers; it is idempotent.
    """
    redact_logger("pydicom")


def _level(item: warnings.WarningMessage) -> int:
    """WARNING for a data warning; DEBUG for deprecations (about code, not data) and for
    pydicom's own warnings, which pydicom also logs (redacted by the filter)."""
    if issubclass(item.category, _DEVELOPER_CATEGORIES):
        return logging.DEBUG
    if "pydicom" in Path(str(item.filename)).parts:
        return logging.DEBUG
    return logging.WARNING


@contextlib.contextmanager
def redacted_warnings(logger: logging.Logger, what: str) -> Iterator[None]:
    """Capture the warnings raised inside the block and log them redacted.

    Each distinct warning becomes one record on ``logger``: ``"<what>: <Category>:
    <message>"`` with quoted values replaced (:func:`redact_values`) and a count when it
    repeated; at WARNING, or at DEBUG for deprecation and future warnings and for pydicom's
    warnings (pydicom logs those itself, redacted by :func:`redact_pydicom_logs`). Nothing
    reaches stderr through :func:`warnings.showwarning`.

    Args:
        logger: where the warnings go (the caller's module logger).
        what: what the block does, e.g. ``"building the heat-map image"``.

    Example:
        >>> with redacted_warnings(logger, "building the SR"):  # doctest: +SKIP
        ...     sr = hd.sr.Comprehensive3DSR(...)
    """
    redact_pydicom_logs()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            seen: dict[tuple[str, str], list[int]] = {}
            for item in caught:
                text = f"{item.category.__name__}: {redact_values(str(item.message))}"
                seen.setdefault((text, ""), [_level(item), 0])[1] += 1
            for (text, _), (level, count) in seen.items():
                suffix = f" ({count} times)" if count > 1 else ""
                logger.log(level, "%s: %s%s", what, text, suffix)
