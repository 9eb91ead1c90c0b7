"""medtl.reports: validation report (HTML, PDF, JSON), model card and model package.

Re-exports only (lazily, so ``import medtl.reports`` stays cheap):

- :func:`build_report_data` (:mod:`~medtl.reports.builder`): run folder -> :class:`ReportData`;
- :func:`render_html` / :func:`write_html` (:mod:`~medtl.reports.html`);
- :func:`html_to_pdf` (:mod:`~medtl.reports.pdf`, WeasyPrint);
- :func:`write_report` (:mod:`~medtl.reports.report`): JSON + HTML (+ PDF) in one call;
- :func:`report_schema` (:mod:`~medtl.reports.schema`): JSON Schema of ``report.json``;
- :func:`build_card` (:mod:`~medtl.reports.card`) and :func:`build_package`
  (:mod:`~medtl.reports.package`).
"""

from __future__ import annotations

from medtl._lazy import lazy_exports

_EXPORTS = {
    "ReportData": "schema",
    "report_schema": "schema",
    "SECTION_IDS": "schema",
    "build_report_data": "builder",
    "load_run": "builder",
    "read_learning_curves": "builder",
    "write_report_json": "builder",
    "render_html": "html",
    "write_html": "html",
    "html_to_pdf": "pdf",
    "count_pdf_pages": "pdf",
    "PdfUnavailableError": "pdf",
    "fill_checklist": "checklist",
    "write_report": "report",
    "build_card": "card",
    "build_package": "package",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
