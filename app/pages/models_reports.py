"""Registered models: their model cards and validation reports, rendered in the page."""

from __future__ import annotations

import streamlit as st

from app.components import session
from app.components.result_card import REPORT_FILE

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

st.subheader(f"{card.name} · version {card.version}")
if card.intended_use:
    st.markdown(f"**Intended use.** {card.intended_use}")
c1, c2 = st.columns(2)
with c1:
    st.markdown(
        f"- **Task:** {card.target_task or 'not stated'}\n"
        f"- **Target domain:** {card.target_domain or 'not stated'}\n"
        f"- **Source domain:** {card.source_domain or 'not stated'}\n"
        f"- **Transfer strategy:** {card.strategy or 'not stated'}\n"
        f"- **Backbone:** {package.backbone or 'unknown'}\n"
        f"- **Labels:** {', '.join(card.labels) or 'not stated'}\n"
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
    st.markdown("**Limitations**\n" + "\n".join(f"- {item}" for item in card.limitations))
with st.expander("Full model card (JSON)"):
    st.json(card.model_dump(mode="json", exclude={"architecture"}), expanded=False)

report = package.path / REPORT_FILE
st.subheader("Validation report")
if report.is_file():
    html = report.read_text(encoding="utf-8", errors="replace")
    st.download_button(
        "Download the report (HTML)",
        data=html.encode("utf-8"),
        file_name=f"{card.name}-{card.version}-report.html",
        mime="text/html",
        key="mr_download",
    )
    with st.container(border=True, height=700):
        st.html(html)
else:
    st.info("This package has no validation report.")
