"""Session and auth helpers: the shared review store, the signed-in user, sign-out.

The session token lives in ``st.session_state`` and is validated against the store on
every rerun, so an expired or revoked session (or a disabled account) signs the user out
at their next click. The browser keeps it in a cookie as well
(:mod:`app.components.browser_session`), so a reload presents the same session; single
sign-on opens a store session too (:func:`medtl.review.sessions.open_sso_session`).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

import streamlit as st

from app.config import AppSettings, load_settings

if TYPE_CHECKING:  # pragma: no cover
    from medtl.review import ReviewStore, UserInfo

logger = logging.getLogger(__name__)

TOKEN_KEY = "medtl_token"
NOTICE_KEY = "medtl_notice"
#: a cookie token this browser session must not adopt again (signed out or refused).
_REFUSED_KEY = "medtl_refused_cookie"
#: set at sign-out: the next page clears the browser's cookie.
CLEAR_COOKIE_KEY = "medtl_cookie_clear"


def settings() -> AppSettings:
    """The settings of this run (read fresh: they are tiny)."""
    return load_settings()


@st.cache_resource(show_spinner=False)
def _open_store(
    url: str | None,
    home: str,
    session_minutes: int,
    idle_minutes: int,
    busy_timeout_ms: int,
    retries: int,
) -> ReviewStore:
    from medtl.review import AuthPolicy, RetryPolicy, ReviewStore

    del home  # part of the cache key only: a different MEDTL_HOME is a different store
    policy = AuthPolicy(
        session_ttl=timedelta(minutes=session_minutes), idle_timeout=timedelta(minutes=idle_minutes)
    )
    return ReviewStore.open(
        url,
        policy=policy,
        busy_timeout_ms=busy_timeout_ms,
        retry=RetryPolicy(attempts=max(1, retries)),
    )


def get_store() -> ReviewStore:
    """The review store of this app process (opened once per database and settings)."""
    import os

    from medtl.paths import medtl_home
    from medtl.review.db import ENV_DATABASE_URL

    cfg = settings()
    url = cfg.database_url or os.environ.get(ENV_DATABASE_URL) or None
    return _open_store(
        url,
        str(medtl_home()),
        cfg.session_minutes,
        cfg.idle_minutes,
        cfg.db_busy_timeout_ms,
        cfg.db_retries,
    )


def oidc_configured() -> bool:
    """True when single sign-on is switched on and ``[auth]`` secrets exist."""
    if not settings().oidc:
        return False
    try:
        return "auth" in st.secrets
    except (FileNotFoundError, KeyError, AttributeError):
        return False
    except Exception:  # a malformed secrets file must not break sign-in
        logger.warning("could not read Streamlit secrets; single sign-on is off")
        return False


def _oidc_user(store: ReviewStore) -> UserInfo | None:
    """Open a store session for the local account matching the OIDC identity (its
    e-mail's local part); ``None`` when there is no identity or no such active account."""
    try:
        if not getattr(st.user, "is_logged_in", False):
            return None
        email = str(st.user.get("email") or "")
    except Exception:  # st.user without auth configured
        return None
    from medtl.review import AccountError, AuthError
    from medtl.review.sessions import open_sso_session

    name = email.split("@", 1)[0].lower()
    try:
        info = open_sso_session(store.accounts, name, provider="oidc")
    except (AccountError, AuthError):
        st.session_state[NOTICE_KEY] = (
            "Your organisation account has no active medtl account. Ask an administrator."
        )
        return None
    st.session_state[TOKEN_KEY] = info.token
    return info.user


def current_user() -> UserInfo | None:
    """The signed-in user, or ``None`` (the token is checked against the store)."""
    from app.components import browser_session
    from medtl.review import SessionExpiredError

    store = get_store()
    token = st.session_state.get(TOKEN_KEY)
    if not token:  # a reload or a new tab: the session the browser's cookie holds
        presented = browser_session.presented_token()
        if presented and presented != st.session_state.get(_REFUSED_KEY):
            token = presented
    if token:
        try:
            user = store.accounts.validate_session(token)
        except SessionExpiredError as err:
            st.session_state.pop(TOKEN_KEY, None)
            st.session_state[_REFUSED_KEY] = token
            st.session_state[NOTICE_KEY] = str(err)
            return None
        st.session_state[TOKEN_KEY] = token
        return user
    if oidc_configured():
        return _oidc_user(store)
    return None


def sign_out() -> None:
    """Revoke the session and forget everything this browser session held."""
    token = st.session_state.get(TOKEN_KEY)
    if token:
        get_store().accounts.sign_out(token)  # revoked for every tab and cookie
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    st.session_state[NOTICE_KEY] = "You have been signed out."
    st.session_state[_REFUSED_KEY] = token
    st.session_state[CLEAR_COOKIE_KEY] = True
    if oidc_configured():
        with contextlib.suppress(Exception):  # not signed in through OIDC
            st.logout()


def require_user(*roles: str) -> UserInfo:
    """The signed-in user with one of ``roles`` (any role when empty), else stop the page."""
    user = st.session_state.get("medtl_user")
    if user is None:
        user = current_user()
    if user is None:
        st.warning("Please sign in.")
        st.stop()
    if roles and user.role not in roles:
        st.error(f"This page is not available to the {user.role} role.")
        st.stop()
    return user


def pop_notice() -> str | None:
    """A one-time message (e.g. "your session has expired") to show on the next page."""
    return st.session_state.pop(NOTICE_KEY, None)


def human_error(err: BaseException) -> str:
    """The message of a medtl error, without Python noise, escaped for Markdown.

    Messages may quote what a user typed or a header said (a user name, a case ID), so
    they are shown as plain text (:func:`app.components.safe_text.md_escape`).
    """
    from app.components.safe_text import md_escape

    text = str(err).strip()
    return md_escape(text or type(err).__name__)


def store_busy_message() -> str:
    """What to say when the database stayed locked."""
    return (
        "The database is busy and nothing was saved. Your entries are kept: "
        "wait a moment and press the button again."
    )
