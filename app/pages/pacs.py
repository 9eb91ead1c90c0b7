"""PACS: search studies, analyse one, send reviewed results back into the original study.

Identifiers the PACS returns are shown to the signed-in clinician (to pick the right
patient) and kept only in this browser session's memory; medtl stores none of them.
"""

from __future__ import annotations

import streamlit as st

from app.components import session
from app.components.safe_text import md_escape

user = session.require_user("clinician", "admin")
store = session.get_store()
st.title("PACS")

from medtl.pacs.settings import PacsSettingsError, load_pacs_settings  # noqa: E402
from medtl.pacs.types import PacsError, StudyQuery  # noqa: E402

try:
    settings = load_pacs_settings()
except PacsSettingsError as err:
    st.error(session.human_error(err))
    st.stop()
if not (settings.has_dicomweb or settings.has_dimse):
    st.info("No PACS is configured. An administrator sets it up (see docs/pacs.md).")
    st.stop()

HITS = "pacs_hits"

# --- search -----------------------------------------------------------------------------
with st.form("pacs_search"):
    c1, c2, c3, c4 = st.columns(4)
    patient_id = c1.text_input("Patient ID", key="pacs_patient_id")
    accession = c2.text_input("Accession number", key="pacs_accession")
    modality = c3.text_input("Modality", key="pacs_modality", placeholder="CR, CT...")
    since = c4.date_input("Studies since", value=None, key="pacs_since")
    searched = st.form_submit_button("Search")
if searched:
    from medtl.pacs.client import find

    query = StudyQuery(
        patient_id.strip() or None,
        accession.strip() or None,
        modality.strip().upper() or None,
        since or None,
    )
    try:
        st.session_state[HITS] = [h.to_dict() for h in find(settings, query)]
    except (PacsError, ValueError) as err:
        st.session_state[HITS] = []
        st.error(session.human_error(err))

hits = st.session_state.get(HITS, [])
if searched and not hits:
    st.info("No studies match.")
if hits:
    st.dataframe(
        [
            {
                "Date": h["study_date"] or "",
                "Patient ID": h["patient_id"] or "",
                "Patient": h["patient_name"] or "",
                "Accession": h["accession"] or "",
                "Modalities": "/".join(h["modalities"]),
                "Images": h["n_instances"] or "",
                "Description": h["description"] or "",
            }
            for h in hits
        ],
        hide_index=True,
        width="stretch",
    )
    from medtl.models.package import list_packages

    labels = {
        i: f"{h['study_date'] or '-'} · {h['patient_id'] or '-'} · "
        f"{h['accession'] or '-'} · {'/'.join(h['modalities']) or '-'}"
        for i, h in enumerate(hits)
    }
    pick = st.selectbox("Study", list(labels), format_func=labels.get, key="pacs_pick")
    from app.components.model_choice import default_index_for_study

    packages = list_packages()
    models = [f"{p.name}@{p.version}" for p in packages]
    # a newly picked study preselects a model that takes its modalities; the clinician's
    # own choice stands until another study is picked
    if models and st.session_state.get("pacs_model_for") != hits[pick]["study_uid"]:
        st.session_state["pacs_model_for"] = hits[pick]["study_uid"]
        best = default_index_for_study(hits[pick]["modalities"], packages)
        st.session_state["pacs_model"] = models[best]
    model = st.selectbox("Model", models, key="pacs_model")
    if st.button("Analyse", type="primary", key="pacs_analyse", disabled=not models):
        from medtl.io import ScanError
        from medtl.models.package import PackageError
        from medtl.pacs.ingest import analyse_study
        from medtl.pacs.types import StudyRefusedError

        with st.spinner("Retrieving, de-identifying and analysing the study..."):
            try:
                out = analyse_study(store, settings, hits[pick]["study_uid"], model, actor=user)
            except StudyRefusedError as err:
                st.error(
                    f"{md_escape(model)} refused this study: "
                    + md_escape("; ".join(err.reasons))
                    + ". No result was recorded and nothing will be sent to the PACS."
                )
            except (PacsError, ScanError, PackageError, ValueError) as err:
                st.error(session.human_error(err))
            else:
                st.session_state["medtl_case_id"] = out.case_id
                st.success(f"Case {md_escape(out.case_id)}: {md_escape(out.summary)}")

# --- studies the model refused (listener and worker) --------------------------------------
from medtl.pacs.jobs import job_queue  # noqa: E402

refused_jobs = job_queue(store).list_jobs("refused")
if refused_jobs:
    st.subheader("Studies the model refused")
    st.caption("No result was recorded for these and nothing is sent to the PACS.")
    st.dataframe(
        [
            {
                "Job": j.id,
                "Model": j.model,
                "Why": j.last_error or "",
                "When (UTC)": f"{j.updated_at:%Y-%m-%d %H:%M}",
            }
            for j in refused_jobs
        ],
        hide_index=True,
        width="stretch",
    )

# --- results back to the PACS -------------------------------------------------------------
st.subheader("Send reviewed results to the PACS")
from medtl.pacs.push import (  # noqa: E402
    PushRefusedError,
    default_choice,
    push_case,
    result_choices,
    retry_failed,
)
from medtl.pacs.records import linked_cases, list_pushes  # noqa: E402

cases = linked_cases(store.db)
if not cases:
    st.caption("No case has come from the PACS yet.")
    st.stop()
pushes = {r.case_id: r for r in list_pushes(store.db)}
st.dataframe(
    [
        {
            "Case": c,
            "Sent": pushes[c].status if c in pushes else "not sent",
            "Attempts": pushes[c].attempts if c in pushes else 0,
            "Problem": (pushes[c].last_error or "") if c in pushes else "",
        }
        for c in cases
    ],
    hide_index=True,
    width="stretch",
)
default = st.session_state.get("medtl_case_id")
case_id = st.selectbox(
    "Case", cases, key="pacs_push_case", index=cases.index(default) if default in cases else 0
)
choices = result_choices(store, case_id)
choice = st.selectbox(
    "AI result to send",
    choices,
    index=default_choice(choices) if choices else None,
    format_func=lambda c: c.label,
    key=f"pacs_push_result_{case_id}",
    help="The SR carries this result and the review of this result.",
)
if st.button("Send to PACS", type="primary", key="pacs_push", disabled=choice is None):
    try:
        outcome = push_case(
            store, settings, case_id, actor=user, prediction_id=choice.prediction_id
        )
    except (PushRefusedError, PacsError) as err:
        st.warning(session.human_error(err))
    else:
        if outcome.status == "done":
            note = " (marked UNVERIFIED)" if outcome.unverified else ""
            st.success(
                f"AI result #{outcome.prediction_id} ({md_escape(outcome.model)}) of case "
                f"{md_escape(case_id)} is in the study{note}."
            )
        else:
            st.error(
                "Sending failed; it is recorded and can be retried: "
                + md_escape(outcome.error or "")
            )
if any(r.status != "done" for r in pushes.values()) and st.button(
    "Retry failed sends", key="pacs_retry"
):
    results = retry_failed(store, settings, actor=user)
    done = sum(o.status == "done" for o in results)
    st.info(f"{done} of {len(results)} sent.")
