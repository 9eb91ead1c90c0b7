"""The worklist: cases by status, filtered by date, model and reader, oldest first, a page
at a time."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import streamlit as st

from app.components import paging, session

user = session.require_user()
store = session.get_store()
st.title("Worklist")

from medtl.review import STATUSES, ReviewStoreError  # noqa: E402

LABELS = {
    "new": "New",
    "awaiting_review": "Awaiting review",
    "agreed": "Agreed",
    "disagreed": "Disagreed",
    "uncertain": "Uncertain",
}

with st.container(border=True):
    c1, c2, c3, c4 = st.columns([3, 2, 2, 2])
    default = ["awaiting_review"] if user.role in ("clinician", "admin") else list(STATUSES)
    statuses = c1.multiselect(
        "Status", list(STATUSES), default=default, format_func=LABELS.get, key="wl_status"
    )
    dates = c2.date_input(
        "Uploaded between", value=(), key="wl_dates", help="Leave empty for all dates."
    )
    from medtl.models.package import list_packages

    models = sorted({p.name for p in list_packages()})
    model = c3.selectbox("Model", ["(any)", *models], key="wl_model")
    readers = ["(any)"]
    if user.role in ("researcher", "admin"):
        readers += [u.username for u in store.accounts.list_users()]
    reader = c4.selectbox("Reviewed by", readers, key="wl_reader", disabled=len(readers) == 1)
    mine = False
    if user.role in ("clinician", "admin"):
        mine = st.checkbox("Only cases I have not reviewed", value=False, key="wl_mine")

since = until = None
if isinstance(dates, tuple | list) and len(dates) >= 1:
    since = datetime.combine(dates[0], time.min, tzinfo=UTC)
    until = datetime.combine(dates[-1], time.min, tzinfo=UTC) + timedelta(days=1)

try:
    # One page at a time, paged in SQL (keyset): never every case on each rerun.
    cases, page, has_next = paging.page_of_cases(
        store,
        user,
        key="wl",
        status=sorted(statuses or STATUSES),
        since=since,
        until=until,
        model=None if model == "(any)" else model,
        reader=None if reader == "(any)" else reader,
        not_reviewed_by=user.username if mine else None,
    )
except ReviewStoreError as err:
    st.error(session.human_error(err))
    st.stop()

from medtl.artifacts import PredictionDetails  # noqa: E402
from medtl.pacs.worklist import case_pacs_status, open_jobs  # noqa: E402

# PACS work without a case: queued, running, failed (with the reason) or refused by the
# model (with its reasons; such a study never gets a case or a result).
counts, waiting = open_jobs(store.db)
if any(counts.values()):
    label = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    open_it = counts["failed"] + counts["refused"] > 0
    with st.expander(f"PACS analyses without a case: {label}", expanded=open_it):
        st.dataframe(
            [
                {
                    "Job": j.id,
                    "Status": j.status,
                    "Attempts": f"{j.attempts}/{j.max_attempts}",
                    "Queued (UTC)": j.created_at.strftime("%Y-%m-%d %H:%M"),
                    "Problem": j.last_error or "",
                }
                for j in waiting
            ],
            hide_index=True,
            width="stretch",
        )

st.caption("Oldest first.")
if not cases:
    st.info("No cases match these filters.")
    st.stop()


def _result_label(p) -> str:
    """The AI result in a cell; a domain-guard caution stays with it wherever it shows."""
    if p is None:
        return ""
    caution = PredictionDetails.from_stored(p.details).domain == "warn"
    return f"{p.label} ({100 * p.probability:.0f}%)" + (" · caution" if caution else "")


pacs = case_pacs_status(store.db, [c.case_id for c in cases])  # this page only: 2 queries
rows = []
for c in cases:
    p = c.latest_prediction
    rows.append(
        {
            "Case": c.case_id,
            "Uploaded (UTC)": c.created_at.strftime("%Y-%m-%d %H:%M"),
            "Status": LABELS.get(c.status, c.status),
            "Modality": c.modality or "",
            "Model": f"{p.model_name}@{p.model_version}" if p else "",
            "AI result": _result_label(p),
            # Blinded reading: the store already hides a clinician's not-yet-reviewed
            # cases' verdicts (status "awaiting review", no readers); no count is shown.
            "Readers": "" if c.blinded else str(len(c.readers)),
            "Analysis": pacs[c.case_id].job_label,
            # A sent SR implies a review: hidden like the readers while blinded.
            "PACS send": "" if c.blinded else pacs[c.case_id].push_label,
        }
    )
st.dataframe(rows, hide_index=True, width="stretch")
paging.pager("wl", cases, page, has_next, noun="page")

choice = st.selectbox("Open a case", [c.case_id for c in cases], key="wl_open_choice")
if st.button("Open case", type="primary", key="wl_open"):
    st.session_state["medtl_case_id"] = choice
    st.switch_page("pages/case_review.py")
