"""Case review: the image, the AI result, and the reader's verdict (agree / disagree /
uncertain) with an optional finding location and comment. Several readers per case."""

from __future__ import annotations

import dataclasses
import uuid

import streamlit as st

from app.components import analysis, errors, exports, paging, session
from app.components.safe_text import md_escape
from app.components.viewer import render_viewer

user = session.require_user()
store = session.get_store()
st.title("Case review")
saved_note = st.session_state.pop("medtl_review_saved", None)
if saved_note:
    st.success(saved_note)

from medtl.artifacts import PredictionDetails  # noqa: E402
from medtl.io import ScanError  # noqa: E402
from medtl.review import (  # noqa: E402
    CaseNotFoundError,
    ReviewStoreError,
    StoreBusyError,
)

DECISIONS = {
    "agree": "Agree with the AI",
    "disagree": "Disagree with the AI",
    "uncertain": "Uncertain",
}


def _heat_map(scan, pred):
    """The AI heat map of the stored image, recomputed on request with the same model.

    Only the open case's maps are kept in the session (see below: closing a case frees
    its arrays).
    """
    heats = st.session_state.setdefault("medtl_case_heat", {})
    key = (pred.case_id, pred.id)
    if key not in heats:
        if not st.toggle("Show the AI heat map (re-runs the model)", key=f"cr_heat_{pred.id}"):
            return None
        from medtl.models.package import PackageError, resolve_package

        try:
            folder = resolve_package(f"{pred.model_name}@{pred.model_version}")
            with st.spinner("Computing the heat map…"):
                result = analysis.get_predictor(folder).predict(scan)
        except PackageError:
            st.caption("The model of this result is no longer registered: no heat map.")
            return None
        except ScanError as err:
            st.caption(f"The heat map could not be computed: {md_escape(err)}")
            return None
        except Exception:  # a bug: reported with a reference ID, the page goes on
            errors.show_internal_error("computing the heat map")
            return None
        heats[key] = analysis.heat_on_scan(result, scan)
    return heats[key]


def _picked_case() -> None:
    """The user chose a case in the dropdown: it becomes the open case."""
    st.session_state["medtl_case_id"] = st.session_state["cr_case"]


# The dropdown lists one page of cases (paged in SQL, oldest first) plus the open case,
# so paging never changes which case is open.
page_cases, page_no, more = paging.page_of_cases(store, user, key="cr")
recent = [c.case_id for c in page_cases]
current = st.session_state.get("medtl_case_id")
if current and current not in recent:
    recent.append(current)
if not recent:
    st.info("There are no cases yet.")
    st.stop()
# One widget key for the whole session. The open case (chosen here, or set by the
# worklist / "Review it now") is written into the widget's state before it is drawn; the
# dropdown's own change goes through the callback first, so it is never overwritten.
if current in recent:
    st.session_state["cr_case"] = current
case_id = st.selectbox("Case", recent, key="cr_case", on_change=_picked_case)
if page_no > 1 or more:
    paging.pager("cr", page_cases, page_no, more, noun="cases")
st.session_state["medtl_case_id"] = case_id

# Opening a case records a view (once per case per sign-in, not on every click).
details = st.session_state.setdefault("medtl_case_details", {})
if case_id not in details:
    try:
        details[case_id] = store.open_case(user, case_id)
    except CaseNotFoundError as err:
        st.error(session.human_error(err))
        st.stop()
    except ReviewStoreError as err:
        st.error(session.human_error(err))
        st.stop()
# Closing a case (opening another) frees what it held: its details and heat-map arrays.
for closed in [k for k in details if k != case_id]:
    del details[closed]
heat_maps = st.session_state.setdefault("medtl_case_heat", {})
for closed in [k for k in heat_maps if k[0] != case_id]:
    del heat_maps[closed]
detail = details[case_id]
# Blinded reading: the store blinds the summary for a clinician who has not reviewed this
# case (no verdict-derived status, no readers) until their own review is saved.
case = store.get_case(case_id, viewer=user)
status = "awaiting your review" if case.blinded else case.status.replace("_", " ")
st.caption(
    f"Case **{md_escape(case.case_id)}** · uploaded {case.created_at:%Y-%m-%d %H:%M} UTC · "
    f"{md_escape(case.modality or 'unknown modality')} · status: **{status}**"
)

pred = detail.predictions[-1] if detail.predictions else None
refused_result = False
image_col, result_col = st.columns([3, 2])
scan = None
with result_col, st.container(border=True):
    st.subheader("AI result")
    if pred is None:
        st.info("No AI result for this case yet.")
    elif PredictionDetails.from_stored(pred.details).domain == "refuse":
        # stored by an older medtl: a refused scan has no AI result to read or review
        st.error(
            "The model refused this scan ("
            + " ".join(
                md_escape(r) for r in PredictionDetails.from_stored(pred.details).domain_reasons
            )
            + "): there is no AI result to review or send."
        )
        refused_result = True
    else:
        extra = PredictionDetails.from_stored(pred.details)
        labels = extra.labels
        about = labels[1] if len(labels) >= 2 else pred.label
        st.metric(f"Probability of {md_escape(about)}", f"{100 * pred.probability:.0f}%")
        if pred.threshold is not None:
            st.markdown(
                f"Decision at the '{md_escape(extra.operating_point or 'chosen')}' "
                f"operating point (threshold {100 * pred.threshold:.0f}%): "
                f"**{md_escape(pred.label)}**."
            )
        if extra.domain in ("warn", "refuse"):
            st.warning(
                "Caution from the domain check: "
                + " ".join(md_escape(r) for r in extra.domain_reasons)
            )
        st.caption(
            f"AI result #{pred.id} · model "
            f"{md_escape(f'{pred.model_name}@{pred.model_version}')} · "
            f"{pred.created_at:%Y-%m-%d %H:%M} UTC"
        )
    if pred is not None and not refused_result:
        st.download_button(
            "Export SR (DICOM)",
            data=exports.case_sr(store, user, case_id, pred.id),
            file_name=f"{case_id}-ai-sr.dcm",
            mime="application/dicom",
            key=f"cr_export_sr_{pred.id}",
            help="This AI result and your review as a DICOM Structured Report (TID 1500), "
            "pseudonymous: the case ID stands for the patient. Built when you press it.",
        )
    if len(detail.predictions) > 1:
        with st.expander(f"Earlier AI results ({len(detail.predictions) - 1})"):
            st.caption(
                "A new AI result reopens the case: reviews count for the result they judged."
            )
            st.dataframe(
                [
                    {
                        "Result": f"#{p.id}",
                        "Model": f"{p.model_name}@{p.model_version}",
                        "Label": p.label,
                        "Probability": f"{100 * p.probability:.0f}%",
                        "When (UTC)": f"{p.created_at:%Y-%m-%d %H:%M}",
                    }
                    for p in reversed(detail.predictions[:-1])
                ],
                hide_index=True,
                width="stretch",
            )

with image_col:
    if detail.images:
        try:
            loaded = store.load_image(detail.images[0])
            if isinstance(loaded, bytes | bytearray):
                from medtl.io import load_scan

                loaded = load_scan(bytes(loaded))
            scan = loaded
        except ScanError as err:  # a damaged stored file must not break the page
            st.error(f"The stored image of this case could not be read: {md_escape(err)}")
        except Exception:  # a bug: reference ID in the page, traceback in the log
            errors.show_internal_error("reading the stored image of a case")
    view = None
    heat = None
    if scan is not None and pred is not None:
        heat = _heat_map(scan, pred)
    if scan is not None:
        view = render_viewer(scan, key=f"cr_view_{case_id}", heatmap=heat)
    else:
        st.info("No image stored for this case.")

# --- reviews ------------------------------------------------------------------------------
if detail.reviews:
    st.subheader("Reviews" if user.role != "clinician" else "Your reviews")
    models_of = {p.id: f"{p.model_name}@{p.model_version}" for p in detail.predictions}
    st.dataframe(
        [
            {
                "AI result": (
                    f"#{r.prediction_id} {models_of.get(r.prediction_id, '')}"
                    + (" (current)" if pred is not None and r.prediction_id == pred.id else "")
                    + (" (earlier)" if pred is not None and r.prediction_id != pred.id else "")
                ),
                "Reader": r.reader,
                "Decision": r.decision,
                "Location (x, y, slice)": ""
                if r.x is None
                else f"{r.x:.0f}, {r.y:.0f}"
                + ("" if r.slice_index is None else f", {r.slice_index + 1}"),
                "Comment": r.comment or "",
                "When (UTC)": f"{r.created_at:%Y-%m-%d %H:%M}",
            }
            for r in detail.reviews
        ],
        hide_index=True,
        width="stretch",
    )

if user.role in ("admin", "researcher") and len(case.readers) >= 2:  # never for clinicians
    agreement = store.agreement(user)
    mine = next((a for a in agreement.cases if a.case_id == case_id), None)
    if mine is not None and mine.pairwise_agreement is not None:
        st.info(
            f"Reader agreement on this case: {100 * mine.pairwise_agreement:.0f}% of "
            f"reader pairs agree ({', '.join(f'{k}: {v}' for k, v in mine.counts.items())})."
        )

if user.role not in ("clinician", "admin"):
    st.caption("Researchers can read cases but not review them.")
    st.stop()
if pred is None or refused_result:
    st.stop()

sub_key = f"medtl_submission_{case_id}"
submission_id = st.session_state.setdefault(sub_key, uuid.uuid4().hex)
is_volume = scan is not None and scan.is_volume
with st.form(f"review_form_{case_id}", border=True):
    st.subheader(f"Your review of AI result #{pred.id}")
    decision = st.radio(
        "Your verdict",
        list(DECISIONS),
        format_func=DECISIONS.get,
        index=None,
        key=f"rv_decision_{case_id}",
    )
    mark = st.checkbox("Mark the finding location", key=f"rv_mark_{case_id}")
    c1, c2, c3 = st.columns(3)
    rows, cols = (scan.shape[-2], scan.shape[-1]) if scan is not None else (10**6, 10**6)
    x = c1.number_input(
        "Column x (pixels)", 0, max(cols - 1, 0), cols // 2 if scan else 0, key=f"rv_x_{case_id}"
    )
    y = c2.number_input(
        "Row y (pixels)", 0, max(rows - 1, 0), rows // 2 if scan else 0, key=f"rv_y_{case_id}"
    )
    z = None
    if is_volume:
        default_slice = (view.slice_index + 1) if view and view.slice_index is not None else 1
        z = c3.number_input(
            "Axial slice", 1, scan.shape[0], default_slice, key=f"rv_slice_{case_id}"
        )
    comment = st.text_area("Comment (optional)", max_chars=4000, key=f"rv_comment_{case_id}")
    submitted = st.form_submit_button("Save review", type="primary")

if submitted:
    if decision is None:
        st.error("Choose agree, disagree or uncertain before saving.")
    else:
        try:
            review = store.submit_review(
                user,
                case_id,
                decision,
                x=float(x) if mark else None,
                y=float(y) if mark else None,
                slice_index=(int(z) - 1) if (mark and z is not None) else None,
                comment=comment.strip() or None,
                prediction_id=pred.id,
                submission_id=submission_id,
            )
        except StoreBusyError:
            st.error(session.store_busy_message())
        except ReviewStoreError as err:
            st.error(f"The review was not saved: {session.human_error(err)}")
        else:
            known = {r.id for r in detail.reviews}
            if review.id not in known:
                details[case_id] = dataclasses.replace(detail, reviews=[*detail.reviews, review])
            st.session_state[sub_key] = uuid.uuid4().hex
            # an emptied form: a second click cannot save the same review again
            for field in ("rv_decision", "rv_mark", "rv_x", "rv_y", "rv_slice", "rv_comment"):
                st.session_state.pop(f"{field}_{case_id}", None)
            st.session_state["medtl_review_saved"] = (
                f"Review saved for case {case_id}: {review.decision}."
            )
            st.rerun()
