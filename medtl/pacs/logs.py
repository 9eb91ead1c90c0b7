"""Keep identifiers out of the logs of the libraries medtl drives for the PACS.

pynetdicom's INFO and DEBUG records dump whole requests and responses (patient names, IDs,
UIDs); dicomweb-client logs study and series UIDs at INFO; urllib3 logs request URLs, query
strings included (``PatientID=...``), at DEBUG; highdicom names the source instances' UIDs at
INFO when it builds an SR or a Secondary Capture. Their loggers are raised to WARNING unless
someone set a level on purpose (their child loggers inherit it), so ``medtl -v`` never
writes PHI to a log. The PACS tests run every command with debug logs on and look for the
identifiers in what was printed.
"""

from __future__ import annotations

import logging

CLIENT_LOGGERS = ("pynetdicom", "dicomweb_client", "urllib3", "highdicom")


def quiet_client_logs() -> None:
    """Raise the client libraries' loggers to WARNING when no level was set (idempotent)."""
    for name in CLIENT_LOGGERS:
        log = logging.getLogger(name)
        if log.level == logging.NOTSET:
            log.setLevel(logging.WARNING)
