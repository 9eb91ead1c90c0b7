"""The session cookie: how a browser stays signed in across a reload.

Streamlit keeps ``st.session_state`` per WebSocket connection, and a reload opens a new
one, so a token kept only there is lost. The browser therefore keeps the session token in
a cookie (:data:`medtl.review.sessions.COOKIE_NAME`) and presents it when it connects; the
app reads it from ``st.context.cookies`` and has the review store check it like any other
token (expiry, idle timeout, revocation, disabled account). The server decides: a cookie
whose session was revoked or expired signs nobody in, and is then cleared.

Streamlit can read cookies but has no API to set one (``st.login`` is for OpenID Connect
only, and the checkout serves no static files). The cookie is written by a tiny
``st.components.v2`` component: its JavaScript is a constant of this module (no data from
outside becomes code), runs in the app's own page, so ``document.cookie`` sets a
first-party cookie of the app's origin (a ``components.v1.html`` frame would be another
document), with ``SameSite=Strict`` (never sent by requests from other sites), ``Path=/``,
a ``Max-Age`` equal to the session lifetime, and ``Secure`` when the page came over HTTPS.
It cannot be ``HttpOnly`` (set by script); the app shows no outside markup
(:mod:`app.components.safe_text`), so no injected script runs to read it.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import streamlit as st

_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{20,128}$")
_JS = """
export default function (component) {
  const data = component.data || {};
  if (!/^[A-Za-z0-9_]+$/.test(data.name || "")) return;
  const value = /^[A-Za-z0-9_-]*$/.test(data.value || "") ? data.value || "" : "";
  const parts = [data.name + "=" + value, "Path=/", "SameSite=Strict"];
  parts.push(value ? "Max-Age=" + Math.max(0, Math.floor(data.max_age || 0)) : "Max-Age=0");
  if (window.location.protocol === "https:") parts.push("Secure");
  document.cookie = parts.join("; ");
}
"""


def cookie_name() -> str:
    """The name of the session cookie."""
    from medtl.review.sessions import COOKIE_NAME

    return COOKIE_NAME


@functools.cache
def _component() -> Any:
    return st.components.v2.component("medtl_session_cookie", js=_JS)


def presented_token() -> str | None:
    """The session token the browser presented when it connected, if it looks like one."""
    try:
        value = st.context.cookies.get(cookie_name())
    except Exception:  # no browser connection (AppTest)
        return None
    return value if isinstance(value, str) and _TOKEN_RE.match(value) else None


def _write(value: str, max_age_s: int) -> None:
    _component()(
        key="medtl_session_cookie",
        data={"name": cookie_name(), "value": value, "max_age": int(max_age_s)},
        height="content",
    )


def sync(token: str | None, max_age_s: int) -> None:
    """Make the browser's cookie hold ``token`` (``None``: no session, clear it).

    Writes only when the cookie the browser presented differs, so a reload that presented
    the right token draws nothing.
    """
    from app.components.session import CLEAR_COOKIE_KEY

    presented = presented_token()
    if token:
        st.session_state.pop(CLEAR_COOKIE_KEY, None)
        if token != presented:
            _write(token, max_age_s)
    elif presented or st.session_state.get(CLEAR_COOKIE_KEY):
        _write("", 0)
