"""Show a model package's ``report.html`` without letting it act on the app.

A package may come from another site, and its report is HTML that registration copied
verbatim: it can carry ``<style>`` that hides or covers the app, a look-alike sign-in form
posting to another host, remote images that tell a third party who opened it, or a
``<meta http-equiv="refresh">``. ``st.html`` strips scripts but none of that. So every
package report (built here or not: the app cannot tell) is shown

* in an ``<iframe sandbox="">`` (no scripts, no forms, no plugins, no pop-ups, an opaque
  origin, no navigation of the app's window, no automatic refresh), via ``srcdoc``;
* with a Content-Security-Policy as the first thing in the document that blocks every
  load except inline styles and ``data:`` images/fonts (medtl's own reports embed their
  figures as ``data:`` PNG): no remote image, style sheet, font or frame is fetched.

The markup around it is built here: the report text is entity-encoded (``&``, quotes,
``<``, ``>`` and line breaks, so the Markdown renderer sees one single-line HTML block).
"""

from __future__ import annotations

import html

import streamlit as st

#: The policy put first in every shown report.
REPORT_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; "
    "form-action 'none'; base-uri 'none'; frame-src 'none'"
)
#: ``sandbox=""``: every restriction on (no ``allow-*`` token).
SANDBOX = ""


def framed_document(report_html: str) -> str:
    """The report with the CSP ``<meta>`` in front (the parser puts it in ``<head>``)."""
    meta = f'<meta http-equiv="Content-Security-Policy" content="{REPORT_CSP}">'
    return meta + report_html


def iframe_markup(report_html: str, height: int = 700, title: str = "Validation report") -> str:
    """The ``<iframe>`` element that shows ``report_html`` sandboxed.

    Args:
        report_html: the package's report, untrusted.
        height: frame height in CSS pixels.
        title: accessible title of the frame (escaped).

    Returns:
        One line of HTML.
    """
    doc = html.escape(framed_document(report_html), quote=True)
    doc = doc.replace("\r", "&#13;").replace("\n", "&#10;")
    return (
        f'<iframe sandbox="{SANDBOX}" referrerpolicy="no-referrer" loading="lazy" '
        f'title="{html.escape(title, quote=True)}" class="medtl-report-frame" '
        f'style="width:100%;height:{int(height)}px;border:1px solid #ddd;background:#fff" '
        f'srcdoc="{doc}"></iframe>'
    )


def show_report(report_html: str, height: int = 700) -> None:
    """Show an untrusted report in a sandboxed, CSP-locked frame."""
    st.markdown(iframe_markup(report_html, height), unsafe_allow_html=True)
