"""One call for the whole validation report: ``report.json``, ``report.html`` and the PDF."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from medtl.reports.builder import build_report_data, write_report_json
from medtl.reports.html import render_html

logger = logging.getLogger(__name__)

__all__ = ["REPORT_FILES", "write_report"]

#: File names written by :func:`write_report`.
REPORT_FILES = {"json": "report.json", "html": "report.html", "pdf": "report.pdf"}


def write_report(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    pdf: bool = True,
    **options: Any,
) -> dict[str, Path]:
    """Build a run's validation report and write it as JSON, HTML and (optionally) PDF.

    Args:
        run_dir: the run folder (evaluated first if it has no ``evaluation.json``).
        out_dir: destination folder (default: the run folder).
        pdf: also print the PDF (needs WeasyPrint and Pango).
        **options: passed to :func:`~medtl.reports.builder.build_report_data` (``against``,
            ``comparison``, ``learning_curves``, ``transferability``, ``baselines``,
            ``intended_use``, ``failure_cases``, ``saliency``, ``title``).

    Returns:
        ``{"json": path, "html": path[, "pdf": path]}``.

    Raises:
        medtl.reports.pdf.PdfUnavailableError: ``pdf`` is true and WeasyPrint cannot be
            loaded (the JSON and HTML are written before).
    """
    out = Path(out_dir) if out_dir is not None else Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = build_report_data(run_dir, **options)
    paths = {"json": write_report_json(data, out / REPORT_FILES["json"])}
    html = render_html(data)
    paths["html"] = out / REPORT_FILES["html"]
    paths["html"].write_text(html, encoding="utf-8")
    if pdf:
        from medtl.reports.pdf import html_to_pdf

        paths["pdf"] = html_to_pdf(html, out / REPORT_FILES["pdf"])
    logger.info("validation report written to %s", out)
    return paths
