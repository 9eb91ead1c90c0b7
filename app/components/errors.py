"""How pages report failures: a scan problem as a scan problem, a bug as a bug.

* :class:`medtl.io.ScanError` (and the review store's errors) carry a message a clinician
  can act on: :func:`show_scan_problem` shows it, escaped (it may quote header values).
* Anything else is a bug in medtl or its libraries: :func:`show_internal_error` logs the
  traceback with a short reference ID (``logger.exception``; scans are de-identified
  before any page sees them, and the log line names no file or patient) and shows only
  "internal error, reference ID ..." in the page, so the clinician can quote it and the
  administrator can find the traceback, and nobody is told a bug is "a bad scan".

``app/main.py`` wraps every page in :func:`guard`, so an exception a page did not expect
ends the same way instead of as Streamlit's traceback box.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Iterator

import streamlit as st

from app.components.safe_text import md_escape

logger = logging.getLogger("app.errors")


def new_reference() -> str:
    """A short random reference ID, e.g. ``E-7K3Q9D2A`` (quoted by users, found in the log)."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "E-" + "".join(secrets.choice(alphabet) for _ in range(8))


def show_internal_error(what: str) -> str:
    """Log the exception being handled and show an "internal error" box with its reference.

    Call it inside an ``except`` block.

    Args:
        what: what the app was doing, in words of our own (e.g. "analysing a scan"); never
            a header value or file name.

    Returns:
        The reference ID.
    """
    ref = new_reference()
    logger.exception("internal error %s while %s", ref, what)
    st.error(
        f"Internal error while {what}, reference ID {ref}. This is a fault in the software, "
        "not in your scan: please tell your administrator the reference ID.",
        icon=":material/bug_report:",
    )
    return ref


def show_scan_problem(err: BaseException, prefix: str = "This file cannot be used") -> None:
    """Show the message of a :class:`~medtl.io.ScanError` as plain text."""
    message = str(err).strip() or type(err).__name__
    st.error(f"{md_escape(prefix)}: {md_escape(message)}")


@contextlib.contextmanager
def guard(what: str) -> Iterator[None]:
    """Turn an unexpected exception inside the block into :func:`show_internal_error`.

    Streamlit's own control flow (``st.stop``, ``st.rerun``, ``st.switch_page``) derives
    from ``BaseException``, not ``Exception``, and passes through untouched.
    """
    try:
        yield
    except Exception:
        show_internal_error(what)
