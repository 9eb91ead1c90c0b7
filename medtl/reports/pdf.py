"""PDF of the validation report, printed from the same HTML with WeasyPrint.

WeasyPrint is imported lazily: it needs Pango (a system library) besides the Python
package, and the HTML report works without it.
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["PdfUnavailableError", "count_page_objects", "count_pdf_pages", "html_to_pdf"]

INSTALL_HINT = (
    "PDF output needs WeasyPrint: `pip install weasyprint` (the Python package) and the Pango "
    "library (Debian/Ubuntu: `apt-get install libpango-1.0-0 libpangoft2-1.0-0`; macOS: "
    "`brew install pango`). The HTML report does not need it."
)


class PdfUnavailableError(RuntimeError):
    """WeasyPrint (or the Pango library it needs) cannot be loaded."""


def _weasyprint():
    try:
        import weasyprint
    except ImportError as err:  # missing package
        raise PdfUnavailableError(f"{INSTALL_HINT} ({err})") from err
    except OSError as err:  # package present, Pango/GObject shared library missing
        raise PdfUnavailableError(f"{INSTALL_HINT} ({err})") from err
    return weasyprint


def html_to_pdf(html: str, path: str | Path) -> Path:
    """Print report HTML to a PDF file (A4, page numbers from the report's print style).

    Args:
        html: the self-contained report HTML.
        path: destination PDF file.

    Returns:
        The path written.

    Raises:
        PdfUnavailableError: WeasyPrint or Pango is not installed (the message says what to
            install).
    """
    weasyprint = _weasyprint()
    path = Path(path)
    # No base_url: the report is self-contained, so nothing may be fetched from anywhere.
    weasyprint.HTML(string=html, **_data_only_fetcher()).write_pdf(str(path))
    logger.info("wrote %s", path)
    return path


def _data_only_fetcher() -> dict[str, object]:
    """A URL fetcher limited to ``data:`` URLs, where this WeasyPrint supports it."""
    try:
        from weasyprint.urls import URLFetcher

        return {"url_fetcher": URLFetcher(allowed_protocols={"data"})}
    except (ImportError, TypeError):  # older WeasyPrint: the report has no external URLs
        return {}


def count_pdf_pages(path: str | Path) -> int:
    """Number of pages of a PDF (pypdf when installed, else ``/Type /Page`` objects).

    Without pypdf, page objects are counted in the file and inside its Flate-compressed
    streams (WeasyPrint stores objects in compressed object streams).

    Args:
        path: a PDF file.

    Returns:
        The page count.
    """
    try:
        from pypdf import PdfReader
    except ImportError:
        return count_page_objects(Path(path).read_bytes())
    return len(PdfReader(str(path)).pages)


def count_page_objects(data: bytes) -> int:
    """Count ``/Type /Page`` objects in PDF bytes, inside Flate-compressed streams too.

    Args:
        data: the PDF file content.

    Returns:
        The number of page objects.
    """
    import re
    import zlib

    chunks = [data]
    for match in re.finditer(rb"(?<!end)stream\r?\n(.*?)\r?\nendstream", data, re.S):
        try:
            chunks.append(zlib.decompress(match.group(1)))
        except zlib.error:
            continue
    page = re.compile(rb"/Type\s*/Page(?![s\w])")
    return sum(len(page.findall(chunk)) for chunk in chunks)
