"""Registered models: their model cards and validation reports.

Everything in a model card is outside text (a package may come from another site): it is
shown escaped. The report is shown in a sandboxed, CSP-locked frame
(:mod:`app.components.report_frame`) and offered as a download.
"""

from __future__ import annotations

import streamlit as st

from app.components import session
from app.components.report_frame import show_report
from app.components.result_card import REPORT_FILE
from app.components.safe_text import bullet_list, md_escape, safe_file_name

session.require_user()
st.title("Models and reports")

from medtl.models.package import PackageError, list_packages, read_card  # noqa: E402

packages = list_packages()
if not packages:
    st.info("No model is registered yet (`medtl models register <package folder>`).")
    st.stop()

refs = [p.ref for p in packages]
choice = st.selectbox("Model", refs, index=len(refs) - 1, key="mr_model")
package = packages[refs.index(choice)]
try:
    card = read_card(package.path)
except PackageError as err:
    st.error(session.human_error(err))
    st.stop()

st.subheader(f"{md_escape(card.name)} · version {md_escape(card.version)}")
if card.intended_use:
    st.markdown(f"**Intended use.** {md_escape(card.intended_use, max_chars=4000)}")
c1, c2 = st.columns(2)
with c1:
    st.markdown(
        f"- **Task:** {md_escape(card.target_task or 'not stated')}\n"
        f"- **Target domain:** {md_escape(card.target_domain or 'not stated')}\n"
        f"- **Source domain:** {md_escape(card.source_domain or 'not stated')}\n"
        f"- **Transfer strategy:** {md_escape(card.strategy or 'not stated')}\n"
        f"- **Backbone:** {md_escape(package.backbone or 'unknown')}\n"
        f"- **Labels:** {md_escape(', '.join(card.labels) or 'not stated')}\n"
        f"- **Calibrated:** {'yes' if card.calibration else 'no'}\n"
        f"- **Created:** {card.created:%Y-%m-%d} UTC"
    )
with c2:
    if card.operating_points:
        st.markdown("**Operating points** (measured on validation data)")
        st.dataframe(
            [
                {
                    "Name": p.name,
                    "Threshold": "not reachable" if p.threshold is None else f"{p.threshold:.3f}",
                    "Sensitivity": "" if p.sensitivity is None else f"{100 * p.sensitivity:.0f}%",
                    "Specificity": "" if p.specificity is None else f"{100 * p.specificity:.0f}%",
                    "Goal": p.goal or "",
                }
                for p in card.operating_points
            ],
            hide_index=True,
            width="stretch",
        )
if card.limitations:
    st.markdown("**Limitations**\n" + bullet_list(card.limitations))
with st.expander("Full model card (JSON)"):
    st.json(card.model_dump(mode="json", exclude={"architecture"}), expanded=False)

report = package.path / REPORT_FILE
st.subheader("Validation report")
if report.is_file():
    st.download_button(
        "Download the report (HTML)",
        data=report.read_bytes,  # read on click, not prepared on every page view
        file_name=safe_file_name(f"{card.name}-{card.version}-report.html"),
        mime="text/html",
        key="mr_download",
        on_click="ignore",
    )
    st.caption(
        "Shown in a locked frame: scripts, forms and anything loaded from other servers "
        "are blocked, whoever built the package."
    )
    show_report(report.read_text(encoding="utf-8", errors="replace"))
else:
    st.info("This package has no validation report.")
