"""PACS in and out: DICOMweb/DIMSE client, ingest and analysis of studies, DICOM SR results
written back into the original study, and a C-STORE listener.

Public API::

    from medtl.pacs import load_pacs_settings, echo, find, StudyQuery
    from medtl.pacs import analyse_study, push_case, Listener

Names are resolved lazily: importing :mod:`medtl.pacs` imports neither pynetdicom nor
dicomweb-client (they come with the ``pacs`` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medtl._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from medtl.pacs.client import echo, find
    from medtl.pacs.ingest import AnalysisOutcome, analyse_study
    from medtl.pacs.listener import Listener
    from medtl.pacs.push import PushOutcome, push_case, retry_failed
    from medtl.pacs.settings import PacsSettings, PacsSettingsError, Route, load_pacs_settings
    from medtl.pacs.types import EchoResult, PacsError, StudyHit, StudyQuery

_LAZY = {
    **dict.fromkeys(("echo", "find"), "medtl.pacs.client"),
    **dict.fromkeys(("AnalysisOutcome", "analyse_study"), "medtl.pacs.ingest"),
    "Listener": "medtl.pacs.listener",
    **dict.fromkeys(("PushOutcome", "push_case", "retry_failed"), "medtl.pacs.push"),
    **dict.fromkeys(
        ("PacsSettings", "PacsSettingsError", "Route", "load_pacs_settings"), "medtl.pacs.settings"
    ),
    **dict.fromkeys(("EchoResult", "PacsError", "StudyHit", "StudyQuery"), "medtl.pacs.types"),
}

__all__ = [
    "AnalysisOutcome",
    "EchoResult",
    "Listener",
    "PacsError",
    "PacsSettings",
    "PacsSettingsError",
    "PushOutcome",
    "Route",
    "StudyHit",
    "StudyQuery",
    "analyse_study",
    "echo",
    "find",
    "load_pacs_settings",
    "push_case",
    "retry_failed",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
