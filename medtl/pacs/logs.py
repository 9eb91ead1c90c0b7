"""Keep identifiers out of the logs of the libraries medtl drives for the PACS.

pynetdicom's INFO and DEBUG records dump whole requests and responses (patient names, IDs,
UIDs); dicomweb-client logs study and series UIDs at INFO; urllib3 logs request URLs, query
strings included (``PatientID=...``), at DEBUG; highdicom names the source instances' UIDs at
INFO when it builds an SR or a Secondary Capture. Their loggers are raised to WARNING unless
someone set a level on purpose (their child loggers inherit it), so ``medtl -v`` never
writes PHI to a log.

What they still log at WARNING and above, and what pydicom logs about dubious values
(``Invalid value for VR PN: '...'``), has its quoted values redacted by
:class:`medtl.io.redact.RedactQuotedValues`, installed on each library logger and on the
child loggers it has created so far (a logger's filters do not apply to its children's
records). Warnings raised through :mod:`warnings` (highdicom's "unlikely to represent the
intended person name", which quotes the name) are a separate path: the code that builds or
reads DICOM runs inside :func:`medtl.io.redact.redacted_warnings`.

The PACS tests run every command with debug logs on and look for the identifiers in what
was printed; ``tests/pacs/test_no_names.py`` pushes a study whose person names are one word
and looks for them in every log record, stream and file.
"""

from __future__ import annotations

import logging

CLIENT_LOGGERS = ("pynetdicom", "dicomweb_client", "urllib3", "highdicom")
#: Loggers whose records get quoted values redacted (the clients and pydicom).
REDACTED_LOGGERS = (*CLIENT_LOGGERS, "pydicom")


def _with_children(name: str) -> list[str]:
    """``name`` and the names of the child loggers created so far."""
    prefix = name + "."
    known = [n for n in logging.Logger.manager.loggerDict if n.startswith(prefix)]
    return [name, *sorted(known)]


def quiet_client_logs() -> None:
    """Raise the client libraries' loggers to WARNING when no level was set, and redact
    quoted values in what they and pydicom log (idempotent; call it after importing them,
    so their child loggers get the filter too)."""
    from medtl.io.redact import redact_logger

    for name in CLIENT_LOGGERS:
        log = logging.getLogger(name)
        if log.level == logging.NOTSET:
            log.setLevel(logging.WARNING)
    for name in REDACTED_LOGGERS:
        for child in _with_children(name):
            redact_logger(child)
