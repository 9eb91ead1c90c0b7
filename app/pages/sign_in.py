"""Sign in with a local account (argon2 passwords, rate-limited), or single sign-on."""

from __future__ import annotations

import streamlit as st

from app.components import session
from app.components.safe_text import md_escape

st.title("medtl · clinical AI review")
st.caption("Sign in to upload scans, see AI results and record your reviews.")

notice = session.pop_notice()
if notice:
    st.info(md_escape(notice))

with st.form("sign_in_form"):
    username = st.text_input("User name", key="sign_in_username", autocomplete="username")
    password = st.text_input(
        "Password", type="password", key="sign_in_password", autocomplete="current-password"
    )
    submitted = st.form_submit_button("Sign in", type="primary")

if submitted:
    from app.components.client import client_key
    from medtl.review import AuthError, ReviewStoreError, StoreBusyError

    store = session.get_store()
    try:
        # Failures make only this client (address) back off: see app/components/client.py.
        signed = store.accounts.sign_in(username, password, client=client_key())
    except StoreBusyError:
        st.error("The database is busy; please try again in a moment.")
    except AuthError as err:
        st.error(session.human_error(err))
    except ReviewStoreError as err:
        st.error(f"Sign-in failed: {session.human_error(err)}")
    else:
        st.session_state[session.TOKEN_KEY] = signed.token
        st.session_state.pop("sign_in_password", None)
        st.rerun()

if session.oidc_configured():
    st.divider()
    st.caption(
        "Or use your organisation's account (your medtl user name must match the "
        "part of your e-mail before the @)."
    )
    if st.button("Sign in with your organisation"):
        st.login()
