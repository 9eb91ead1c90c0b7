"""Entry point of the clinician app: ``streamlit run app/main.py`` (or ``medtl app``).

Checks the session on every rerun, then shows only the pages the user's role allows:

* signed out: Sign in;
* clinician: Upload and analyse, Worklist, Case review, PACS, Models and reports;
* researcher: Worklist, Case review (read only), Models and reports;
* admin: everything, plus Admin.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run app/main.py` puts app/ on sys.path, not the checkout root that holds the
# `app` package; add it so pages can import app.components.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import logging  # noqa: E402

import streamlit as st  # noqa: E402

from app.components import browser_session, errors, session  # noqa: E402
from app.components.safe_text import md_escape  # noqa: E402

logger = logging.getLogger("app.main")
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")

_PAGES = Path(__file__).resolve().parent / "pages"


def _page(name: str, title: str, icon: str, default: bool = False) -> st.Page:
    return st.Page(
        str(_PAGES / f"{name}.py"), title=title, icon=icon, url_path=name, default=default
    )


@st.cache_resource(show_spinner=False)
def warn_if_listening_wide() -> str:
    """Log a warning (once per server process) when the server is not bound to loopback.

    The checkout's ``.streamlit/config.toml`` binds 127.0.0.1; a wider address must be a
    deliberate choice, behind the reverse proxy of ``docs/deploy/nginx.conf``.
    """
    address = str(st.get_option("server.address") or "")
    if address not in _LOOPBACK:
        logger.warning(
            "the app listens on %s, not only on this machine: put it behind the TLS reverse "
            "proxy of docs/deploy/nginx.conf (Streamlit cannot check the Host header)",
            address or "every interface",
        )
    return address


def main() -> None:
    """Route to the pages of the signed-in user's role."""
    warn_if_listening_wide()
    st.set_page_config(
        # An emoji icon: Streamlit draws it as a data: SVG. A ":material/...:" page icon
        # makes every browser fetch the favicon from a third-party font server.
        page_title="medtl · clinical AI review",
        page_icon="🩻",
        layout="wide",
    )
    user = session.current_user()
    st.session_state["medtl_user"] = user
    if user is None:
        nav = st.navigation(
            [_page("sign_in", "Sign in", ":material/login:", default=True)], position="hidden"
        )
        with errors.guard("showing the sign-in page"):
            nav.run()
        browser_session.sync(None, 0)  # a refused or signed-out session: clear the cookie
        return
    pages = []
    if user.role in ("clinician", "admin"):
        pages.append(
            _page("upload_analyse", "Upload and analyse", ":material/upload_file:", default=True)
        )
    pages.append(
        _page("worklist", "Worklist", ":material/checklist:", default=user.role == "researcher")
    )
    pages.append(_page("case_review", "Case review", ":material/stethoscope:"))
    if user.role in ("clinician", "admin"):
        pages.append(_page("pacs", "PACS", ":material/cloud_download:"))
    pages.append(_page("models_reports", "Models and reports", ":material/description:"))
    if user.role == "admin":
        pages.append(_page("admin", "Admin", ":material/admin_panel_settings:"))
    nav = st.navigation(pages)
    with st.sidebar:
        st.markdown(f"Signed in as **{md_escape(user.username)}** ({user.role})")
        if st.button("Sign out", key="sign_out"):
            session.sign_out()
            st.rerun()
        st.caption(
            "Decision support only. Case IDs are pseudonyms; no patient identifiers "
            "are shown or stored."
        )
        # The browser keeps the session for a reload (app/components/browser_session.py).
        browser_session.sync(
            st.session_state.get(session.TOKEN_KEY), session.settings().session_minutes * 60
        )
    with errors.guard("showing a page"):
        nav.run()


# A failure before a page runs (e.g. the database cannot be opened) is reported the same way.
with errors.guard("opening the app"):
    main()
