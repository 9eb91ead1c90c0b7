"""Plain text for everything that came from outside the app.

DICOM header values, file names, domain-guard messages (which quote header values), model
card text, comments and anything a user typed are shown as *text*, never as Markdown or
HTML: a ``![](//host/x)`` in a header must not become an image every reader's browser
fetches. Every page builds its Markdown with :func:`md_escape` (or :func:`plain` for
whole lines) around each outside value; nothing else in ``app/`` escapes by hand.

Streamlit renders the body of ``st.markdown``, ``st.caption``, ``st.error`` /
``st.warning`` / ``st.info`` / ``st.success``, titles, subheaders, metric and widget
labels as GitHub-flavoured Markdown with its own extras (``:red[...]`` colours,
``:material/...:`` icons, emoji short codes, ``$...$`` LaTeX) and autolinks bare
``www.`` / ``https://`` text. CommonMark lets a backslash escape *any* ASCII punctuation
character, so escaping all of them disarms every one of those constructs at once.
"""

from __future__ import annotations

import re
import string
import unicodedata

import streamlit as st

# Every ASCII punctuation character is escapable in CommonMark (spec 2.4); escaping all of
# them covers images, links, autolinks (``:`` and ``.``), raw HTML (``<``, ``>``, ``&``),
# emphasis, code spans, tables, headings, lists and Streamlit's ``:directive[...]`` syntax.
_PUNCTUATION = frozenset(string.punctuation)
# Line breaks and other control characters would start new Markdown blocks (a heading, a
# list, a fenced HTML block): outside text is always shown on one line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\u0085]+")


def one_line(value: object, max_chars: int = 2000) -> str:
    """``value`` as a single line of text: control characters become spaces, long text is cut.

    Args:
        value: anything (``None`` becomes an empty string).
        max_chars: the longest text kept (an ellipsis marks the cut).

    Returns:
        NFC-normalised text without line breaks.
    """
    text = "" if value is None else str(value)
    text = _CONTROL.sub(" ", unicodedata.normalize("NFC", text)).strip()
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return text


# Streamlit's GitHub-flavoured Markdown finds bare links ("www.x.y", "https://...",
# "name@host.tld") in the *rendered* text, after backslash escapes are resolved, so
# escaping cannot stop them. An invisible WORD JOINER (U+2060) inside each pattern can.
_WORD_JOINER = "\u2060"
_WWW = re.compile(r"(?i)(www)(\.)")


def _break_autolinks(text: str) -> str:
    text = _WWW.sub(lambda m: m.group(1) + _WORD_JOINER + m.group(2), text)
    return text.replace("://", ":" + _WORD_JOINER + "//").replace("@", "@" + _WORD_JOINER)


def md_escape(value: object, max_chars: int = 2000) -> str:
    """Text that Streamlit's Markdown renders literally, character for character.

    Example: ``md_escape("![x](y)")`` is ``\\!\\[x\\]\\(y\\)``, which shows as the
    original text and fetches nothing. Bare links (``www.``, ``://``,
    ``@``) also get an invisible word joiner that keeps them from being auto-linked.

    Args:
        value: outside text (header value, file name, comment, model card field...).
        max_chars: the longest text kept.

    Returns:
        The escaped single-line text, safe to put inside Markdown.
    """
    text = _break_autolinks(one_line(value, max_chars))
    return "".join("\\" + ch if ch in _PUNCTUATION else ch for ch in text)


def plain(value: object, *, caption: bool = False) -> None:
    """Show outside text as plain text (a paragraph, or a caption when ``caption``)."""
    if caption:
        st.caption(md_escape(value))
    else:
        st.markdown(md_escape(value))


def bullet_list(items: list[object] | tuple[object, ...]) -> str:
    """A Markdown bullet list whose items are escaped outside text."""
    return "\n".join(f"- {md_escape(item)}" for item in items)


def safe_file_name(name: str, default: str = "download") -> str:
    """A download file name of letters, digits, ``.``, ``_`` and ``-`` only."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", one_line(name, 120)).strip("._")
    return cleaned or default
