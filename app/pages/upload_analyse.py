"""Upload a scan, look at it, run a model, see the calibrated result and send it on."""

from __future__ import annotations

import streamlit as st

from app.components import analysis, errors, session
from app.components.result_card import render_result_card
from app.components.safe_text import md_escape
from app.components.viewer import render_viewer
from medtl.io import ScanError

user = session.require_user("clinician", "admin")
cfg = session.settings()
st.title("Upload and analyse")

done = st.session_state.pop("medtl_sent", None)
if done:
    st.success(done)

round_no = st.session_state.setdefault("medtl_upload_round", 0)
limit_mb = cfg.max_upload_mb
uploaded = st.file_uploader(
    "Scan: a DICOM file, a zip of one DICOM series, NIfTI (.nii, .nii.gz) or PNG/JPEG",
    key=f"upload_{round_no}",
    max_upload_size=max(1, int(limit_mb)) if limit_mb >= 1 else None,
    help=f"Up to {limit_mb:g} MB. The content is checked, whatever the file name says. "
    "Headers are de-identified on upload; only a pseudonymous case ID is kept.",
)

if uploaded is None:
    st.session_state.pop("medtl_scan", None)
    st.session_state.pop("medtl_analysis", None)
    st.info("Upload a scan to begin.")
    st.stop()

loaded = st.session_state.get("medtl_scan")
if loaded is None or loaded[0] != uploaded.file_id:
    st.session_state.pop("medtl_scan", None)
    st.session_state.pop("medtl_analysis", None)
    st.session_state.pop("model_choice", None)  # a new scan: suggest the model that fits it
    message = analysis.too_large(int(uploaded.size), cfg.max_upload_bytes)
    if message:  # checked before the content is read
        st.error(message)
        st.stop()
    from medtl.io.isolated import load_scan_isolated

    try:
        with st.spinner("Reading and de-identifying the scan…"):
            # Decoded in a worker process of the shared pool: a crashing decoder cannot take
            # the server down, and uploads are queued per user, so one clinician's large
            # or hostile upload does not hold up another's.
            scan = load_scan_isolated(uploaded.getvalue(), user=user.username)
    except ScanError as err:  # the scan's problem: its message, as plain text
        errors.show_scan_problem(err)
        st.stop()
    except Exception:  # a bug, not a bad scan: reference ID here, traceback in the log
        errors.show_internal_error("reading an upload")
        st.stop()
    loaded = (uploaded.file_id, scan)
    st.session_state["medtl_scan"] = loaded
scan = loaded[1]

if scan.meta.get("burned_in_warning"):
    st.warning(
        "**Burned-in text may be present.** This image may carry patient details "
        "written into the pixels, which de-identification cannot remove. Check the "
        "image before sharing it.",
        icon=":material/warning:",
    )
for note in scan.warnings:
    st.caption(f"Note from loading: {md_escape(note)}")
shape = " x ".join(str(s) for s in scan.shape)
spacing = " x ".join(f"{s:.2f}" for s in scan.spacing)
st.caption(
    f"{md_escape(scan.modality)} · {md_escape(scan.source_format.upper())} · {shape} · "
    f"spacing {spacing} mm"
)

from medtl.models.package import list_packages  # noqa: E402

packages = list_packages()
saved = st.session_state.get("medtl_analysis")
if saved is not None and saved.file_id != uploaded.file_id:
    saved = None

if not packages:
    st.warning(
        "No model is registered on this server yet; ask an administrator "
        "(`medtl models register`). You can still view the scan."
    )
else:
    from app.components import model_choice

    refs = [p.ref for p in packages]
    # The default fits the scan: a radiograph never opens with a CT model preselected.
    suggested = model_choice.default_index(scan, packages)
    choice = st.selectbox("Model", refs, index=suggested, key="model_choice")
    package = packages[refs.index(choice)]
    if model_choice.refused(scan, package):
        st.caption(
            f"This {md_escape(scan.modality)} scan does not suit {md_escape(package.ref)} "
            "(modality or dimensions): the model will decline it."
        )
    if st.button("Analyse", type="primary", key="analyse"):
        from medtl.review import ReviewStoreError, StoreBusyError

        bar = st.progress(0, text="Loading the model…")
        with st.status("Analysing…", expanded=True) as status:
            try:
                predictor = analysis.get_predictor(package.path)
                bar.progress(25, text="Running the model and the heat map…")
                st.write("Running the model" + (" over the volume" if scan.is_volume else ""))
                result = predictor.predict(scan)
                bar.progress(75, text="Saving the result…")
                saved = analysis.SavedResult(uploaded.file_id, package.path, result)
                if result.refused or result.probability is None:
                    st.write("The model declined this scan: nothing was saved.")
                else:
                    st.write("Saving the case under a pseudonym")
                    analysis.save_result(session.get_store(), user, scan, saved)
                st.session_state["medtl_analysis"] = saved
                bar.progress(100, text="Done")
                status.update(label="Analysis complete", state="complete", expanded=False)
            except StoreBusyError:
                status.update(label="Not saved", state="error")
                st.error(session.store_busy_message())
            except ReviewStoreError as err:
                status.update(label="Not saved", state="error")
                st.error(f"The result could not be saved: {session.human_error(err)}")
            except ScanError as err:  # the scan does not suit the model: say why
                status.update(label="Not analysed", state="error")
                errors.show_scan_problem(err, "This scan could not be analysed")
            except Exception:  # a bug: reference ID in the page, traceback in the log
                status.update(label="Analysis failed", state="error")
                errors.show_internal_error("analysing a scan")

heat = analysis.heat_on_scan(saved.result, scan) if saved is not None else None
view_col, card_col = st.columns([3, 2], gap="medium")
with view_col:
    render_viewer(scan, key="upload_viewer", heatmap=heat)
with card_col:
    if saved is None:
        st.info("Choose a model and press **Analyse** to see the AI result here.")
    else:
        if saved.already_uploaded:
            st.info(
                f"This series was uploaded before as case {saved.case_id}; the new AI result "
                "was added to that case."
            )
        render_result_card(
            saved.result,
            package_dir=saved.package_dir,
            case_id=saved.case_id,
            shown_warnings=list(scan.warnings),
        )
    if saved is not None and saved.case_id:
        left, right = st.columns(2)
        if left.button("Send to worklist", type="primary", key="send"):
            st.session_state["medtl_sent"] = (
                f"Case {saved.case_id} is in the worklist, awaiting review."
            )
            st.session_state["medtl_upload_round"] = round_no + 1
            st.session_state.pop("medtl_scan", None)
            st.session_state.pop("medtl_analysis", None)
            st.rerun()
        if right.button("Review it now", key="review_now"):
            st.session_state["medtl_case_id"] = saved.case_id
            st.switch_page("pages/case_review.py")
