"""What a page would turn into markup: every element whose text Streamlit renders as
Markdown is parsed with a real CommonMark parser (markdown-it-py), and anything that would
become an element (image, link, raw HTML) or a Streamlit directive is reported.

The app's own markup is recognised exactly: the inline viewer picture (``st.html`` with one
``data:`` PNG) and the sandboxed report frame (``st.markdown`` with one ``<iframe>`` whose
document is entity-encoded in ``srcdoc``).
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt

_PARSER = MarkdownIt("commonmark").enable(["table", "strikethrough"])
_FORBIDDEN = {"image", "link_open", "html_inline", "html_block"}
# Streamlit's own Markdown extras and GitHub's bare autolinks, when not backslash-escaped.
_EXTRAS = re.compile(
    r":(?:red|blue|green|orange|violet|gray|grey|rainbow|primary)\[|:material/"
    r"|(?<!\\)\$[^$]+(?<!\\)\$|(?i:javascript:)"
)
_OWN_IMAGE = re.compile(
    r'<img class="medtl-inline-image" alt="[^"<>]*" '
    r'src="data:image/png;base64,[A-Za-z0-9+/=]+" style="[^"<>]*" />'
)
_OWN_FRAME = re.compile(r'<iframe sandbox="" [^<>]* srcdoc="[^"<>]*"></iframe>')

MARKDOWN_KINDS = (
    "title",
    "header",
    "subheader",
    "markdown",
    "caption",
    "error",
    "warning",
    "info",
    "success",
    "toast",
)
WIDGET_KINDS = (
    "button",
    "selectbox",
    "radio",
    "text_input",
    "text_area",
    "checkbox",
    "number_input",
    "slider",
    "multiselect",
    "toggle",
    "file_uploader",
    "date_input",
)


def _walk(tokens):
    for token in tokens:
        yield token
        if token.children:
            yield from _walk(token.children)


# GitHub's literal autolinks are found in the text *after* escapes are resolved (remark-gfm
# works on text nodes), so they are looked for there, with the same patterns.
_GFM_AUTOLINK = re.compile(r"(?i)https?://|www\.|[-.\w+]+@[-\w]+(?:\.[-\w]+)+")


def markdown_offences(source: str) -> list[str]:
    """The markup ``source`` would produce beyond text and emphasis."""
    tokens = list(_walk(_PARSER.parse(source)))
    found = [t.type for t in tokens if t.type in _FORBIDDEN]
    found += [m.group(0) for m in _EXTRAS.finditer(source)]
    for token in tokens:
        if token.type == "text":
            found += [m.group(0) for m in _GFM_AUTOLINK.finditer(token.content)]
    return found


def markdown_sources(at) -> list[str]:
    """The Markdown source of every element and label of the page."""
    sources: list[str] = []
    for kind in MARKDOWN_KINDS:
        sources += [str(getattr(e, "value", e)) for e in getattr(at, kind, [])]
    for metric in at.metric:
        sources.append(str(metric.label))
    for kind in WIDGET_KINDS:
        sources += [str(getattr(w, "label", "")) for w in getattr(at, kind, [])]
    for kind in ("expandable", "status", "tab"):
        sources += [str(getattr(block, "label", "")) for block in at.get(kind)]
    return sources


def page_offences(at) -> list[tuple[str, list[str]]]:
    """``(source, offences)`` of every element of the page that would render markup."""
    bad = []
    for source in markdown_sources(at):
        if _OWN_FRAME.fullmatch(source):
            continue
        found = markdown_offences(source)
        if found:
            bad.append((source, found))
    for element in at.get("html"):
        body = element.proto.body
        if not _OWN_IMAGE.fullmatch(body):
            bad.append((body, ["st.html"]))
    return bad
