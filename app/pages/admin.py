"""Admin: users and roles, the audit log with filters, and the CSV export of reviews."""

from __future__ import annotations

from datetime import UTC, datetime, time

import streamlit as st

from app.components import exports, session
from app.components.safe_text import md_escape

admin = session.require_user("admin")
store = session.get_store()
st.title("Admin")

from medtl.review import AccountError, ReviewStoreError, StoreBusyError  # noqa: E402

ROLES = ("clinician", "researcher", "admin")


users_tab, audit_tab, export_tab = st.tabs(["Users and roles", "Audit log", "Export"])

with users_tab:
    flash = st.session_state.pop("medtl_admin_flash", None)
    if flash:
        st.success(flash)
    users = store.accounts.list_users()
    st.dataframe(
        [
            {
                "User": u.username,
                "Role": u.role,
                "Active": u.active,
                "Created (UTC)": f"{u.created_at:%Y-%m-%d %H:%M}",
            }
            for u in users
        ],
        hide_index=True,
        width="stretch",
    )

    from medtl.review.sessions import list_sessions

    open_sessions = list_sessions(store.accounts, actor=admin)
    st.caption(f"{len(open_sessions)} open session(s) (signed in, not expired or idle).")
    if open_sessions:
        st.dataframe(
            [
                {
                    "User": r.username,
                    "Signed in with": "single sign-on" if r.method == "oidc" else "password",
                    "Since (UTC)": f"{r.created_at:%Y-%m-%d %H:%M}",
                    "Last seen (UTC)": f"{r.last_seen_at:%Y-%m-%d %H:%M}",
                    "Expires (UTC)": f"{r.expires_at:%Y-%m-%d %H:%M}",
                }
                for r in open_sessions
            ],
            hide_index=True,
            width="stretch",
            key="adm_sessions",
        )

    with st.form("add_user", clear_on_submit=False):
        st.markdown("**Add a user**")
        c1, c2, c3 = st.columns(3)
        new_name = c1.text_input("User name", key="adm_new_name")
        new_pw = c2.text_input(
            "Initial password",
            type="password",
            key="adm_new_pw",
            help="At least 12 characters, not a common password; ask the user to change it.",
        )
        new_role = c3.selectbox("Role", ROLES, key="adm_new_role")
        add = st.form_submit_button("Add user")
    if add:
        try:
            made = store.accounts.add_user(new_name, new_pw, new_role, actor=admin)
        except (AccountError, StoreBusyError, ReviewStoreError) as err:
            st.error(session.human_error(err))
        else:
            st.session_state["medtl_admin_flash"] = (
                f"User {md_escape(made.username)} added ({made.role})."
            )
            st.rerun()

    st.markdown("**Change a user**")
    names = [u.username for u in users]
    c1, c2, c3 = st.columns([2, 2, 2])
    target = c1.selectbox("User", names, key="adm_target")
    chosen = next(u for u in users if u.username == target)
    role = c2.selectbox("Role", ROLES, index=ROLES.index(chosen.role), key=f"adm_role_{target}")
    if c2.button("Change role", key="adm_set_role", disabled=role == chosen.role):
        try:
            store.accounts.set_role(target, role, actor=admin)
        except (AccountError, ReviewStoreError) as err:
            st.error(session.human_error(err))
        else:
            st.session_state["medtl_admin_flash"] = f"{md_escape(target)} is now {role}."
            st.rerun()
    label = "Disable account" if chosen.active else "Enable account"
    if c3.button(label, key="adm_toggle", disabled=target == admin.username):
        try:
            store.accounts.set_active(target, not chosen.active, actor=admin)
        except (AccountError, ReviewStoreError) as err:
            st.error(session.human_error(err))
        else:
            state = "enabled" if not chosen.active else "disabled"
            st.session_state["medtl_admin_flash"] = f"{md_escape(target)} is {state}."
            st.rerun()
    if target == admin.username:
        c3.caption("You cannot disable your own account.")
    # Sign-in back-off is per client; an admin clears every client's failures at once.
    failures = store.accounts.failures(target)
    c4, _ = st.columns([2, 4])
    if c4.button(
        "Unlock sign-in",
        key="adm_unlock",
        disabled=failures == 0,
        help="Clear the failed sign-ins of this account (from every browser).",
    ):
        try:
            cleared = store.accounts.unlock(target, actor=admin)
        except (AccountError, ReviewStoreError) as err:
            st.error(session.human_error(err))
        else:
            st.session_state["medtl_admin_flash"] = (
                f"{md_escape(target)} is unlocked ({cleared} failed sign-in(s) cleared)."
            )
            st.rerun()
    window_min = int(store.accounts.policy.failure_window.total_seconds() // 60)
    c4.caption(f"{failures} failed sign-in(s) in the last {window_min} min.")

with audit_tab:
    c1, c2, c3, c4 = st.columns(4)
    from medtl.review.models import AUDIT_ACTIONS

    action = c1.selectbox("Action", ["(any)", *AUDIT_ACTIONS], key="adm_action")
    who = c2.selectbox(
        "User", ["(any)", *[u.username for u in store.accounts.list_users()]], key="adm_who"
    )
    case_filter = c3.text_input("Case ID", key="adm_case").strip() or None
    since_day = c4.date_input("Since", value=None, key="adm_since")
    since = datetime.combine(since_day, time.min, tzinfo=UTC) if since_day else None
    try:
        events = store.audit_log(
            admin,
            action=None if action == "(any)" else action,
            username=None if who == "(any)" else who,
            case_id=case_filter,
            since=since,
        )
    except ReviewStoreError as err:
        st.error(session.human_error(err))
        events = []
    st.caption(f"{len(events)} event(s), oldest first.")
    st.dataframe(
        [
            {
                "When (UTC)": f"{e.at:%Y-%m-%d %H:%M:%S}",
                "Action": e.action,
                "User": e.username or "",
                "Case": e.case_id or "",
                "Details": ", ".join(f"{k}={v}" for k, v in (e.details or {}).items()),
            }
            for e in events
        ],
        hide_index=True,
        width="stretch",
    )

with export_tab:
    st.markdown("All reviews as CSV (pseudonymous case IDs and reader user names).")
    comments = st.checkbox("Include comments", value=True, key="adm_comments")
    st.download_button(
        "Download reviews.csv",
        data=exports.reviews_csv(store, admin, comments),
        file_name="reviews.csv",
        mime="text/csv",
        key="adm_download",
        help="The file is built when you press the button, for this one download.",
    )
    if len({u.username for u in store.accounts.list_users()}) > 1:
        report = store.agreement(admin)
        if report.fleiss_kappa is not None:
            st.metric(
                "Fleiss' kappa across readers",
                f"{report.fleiss_kappa:.2f}",
                help=f"{report.n_cases_multi_reader} case(s) with 2+ readers.",
            )
