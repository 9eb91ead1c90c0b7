"""The result card: calibrated probability in words, the decision at the operating point,
the domain guard's verdict, the model and its validation report.

Layout only: every number comes from :class:`medtl.inference.PredictionResult`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from app.components.safe_text import bullet_list, md_escape, safe_file_name

if TYPE_CHECKING:  # pragma: no cover
    from medtl.inference import PredictionResult

REPORT_FILE = "report.html"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.0f}%"


def positive_label(result: PredictionResult) -> str:
    """The class the probability is about (the positive class of binary models), escaped.

    Labels come from the model card, which may come from another site: Markdown-escaped.
    """
    if result.kind == "binary" and len(result.labels) >= 2:
        return md_escape(result.labels[1])
    return md_escape(result.top_class or "finding")


def probability_sentence(result: PredictionResult) -> str:
    """The calibrated probability and what it means, in words (Markdown, escaped).

    Example: "Estimated probability of nodule: 73% — among validation cases with this
    score, about 7 in 10 had nodule."
    """
    p = float(result.probability or 0.0)
    label = positive_label(result)
    in_ten = round(10 * p)
    meaning = (
        f"among validation cases with this score, about {in_ten} in 10 had {label}"
        if result.calibrated
        else "this model is not calibrated, so the score is not a frequency"
    )
    return f"Estimated probability of {label}: {_pct(p)} — {meaning}."


def decision_sentence(result: PredictionResult) -> str | None:
    """The decision at the operating point, with its expected sensitivity and specificity
    (Markdown; the operating point's name and label are escaped)."""
    d = result.decision
    if d is None:
        return None
    verdict = "POSITIVE" if d.positive else "negative"
    text = (
        f"Decision at the '{md_escape(d.operating_point)}' operating point (threshold "
        f"{_pct(d.threshold)}): **{verdict}** — {md_escape(d.label)}."
    )
    if d.expected_sensitivity is not None or d.expected_specificity is not None:
        text += (
            f" At this threshold the model found {_pct(d.expected_sensitivity)} of "
            f"positive validation cases (sensitivity) and cleared "
            f"{_pct(d.expected_specificity)} of negative ones (specificity)."
        )
    return text


def render_domain(result: PredictionResult) -> None:
    """Show the domain guard's verdict: prominent for warn and refuse.

    The reasons quote header values (modality, body part...): each is escaped.
    """
    reasons = result.domain.reasons or [
        "The scan differs from the images the model was validated on."
    ]
    if result.domain.status == "refuse":
        st.error(
            "**Not analysed: this model was not made for this kind of image.**\n\n"
            + bullet_list(reasons),
            icon=":material/block:",
        )
    elif result.domain.status == "warn":
        st.warning(
            "**Caution: this scan is unlike the validation images; the result may "
            "be unreliable.**\n\n" + bullet_list(reasons),
            icon=":material/warning:",
        )


def render_report_link(package_dir: Path | None, key: str) -> None:
    """A download of the package's validation report (and a pointer to the Models page).

    The file is read when the button is pressed (a deferred download), not prepared in
    Streamlit's media store on every page view.
    """
    report = None if package_dir is None else Path(package_dir) / REPORT_FILE
    if report is None or not report.is_file():
        st.caption("No validation report in this model package.")
        return
    st.download_button(
        "Download the validation report (HTML)",
        data=report.read_bytes,
        file_name=safe_file_name(f"{report.parent.parent.name}-{report.parent.name}-report.html"),
        mime="text/html",
        key=f"{key}_report",
        on_click="ignore",
    )
    st.caption("The report is also shown under **Models and reports**.")


def render_result_card(
    result: PredictionResult,
    *,
    package_dir: Path | None = None,
    case_id: str | None = None,
    key: str = "result",
    shown_warnings: list[str] | None = None,
) -> None:
    """Show one prediction.

    Args:
        result: the prediction.
        package_dir: the model package folder (for the validation report).
        case_id: the case pseudonym the result was saved under.
        key: widget-key prefix.
        shown_warnings: loader warnings already on the page (not repeated here).
    """
    with st.container(border=True):
        head = "AI result" + (f" · case {case_id}" if case_id else "")
        st.subheader(head)
        render_domain(result)
        if not result.refused and result.probability is not None:
            st.metric(f"Probability of {positive_label(result)}", _pct(result.probability))
            st.markdown(probability_sentence(result))
            decision = decision_sentence(result)
            if decision:
                st.markdown(decision)
            else:
                st.caption("This model has no operating point: no yes/no decision is given.")
            if result.regions:
                top = result.regions[0]
                st.caption(
                    f"Most suspicious region: slices {top.start[0] + 1}-{top.stop[0]} "
                    f"({_pct(top.probability)}); {result.n_windows} regions analysed."
                )
        for warning in result.warnings:
            if warning in (shown_warnings or []):
                continue
            st.caption(f"Note from loading: {md_escape(warning)}")
        st.caption(
            f"Model **{md_escape(result.package)}**"
            + (f" · task: {md_escape(result.task)}" if result.task else "")
            + f" · analysed in {result.timings_ms.total / 1000:.1f} s. "
            "Decision support only: the reading clinician decides."
        )
        render_report_link(package_dir, key)
