"""CLAIM (2024 update) and TRIPOD+AI items, filled from what the run knows.

Each item says whether this report covers it (``reported``, with the section that does), or
whether the run cannot know (``unknown``: e.g. ethics approval, how readers labelled the
data), or whether nothing was done (``not reported``: e.g. external testing). Unknown
items are listed, never hidden, so a reviewer sees the gaps a study protocol must fill.
Only the items a run can speak to are listed, not the whole of either checklist.

Item numbers and topics follow the published lists:

* CLAIM 2024: Tejani et al., *Checklist for Artificial Intelligence in Medical Imaging
  (CLAIM): 2024 Update*, Radiology: Artificial Intelligence 2024;6(4):e240300 (44 items).
  Topics are the item titles of the official checklist form (RSNA's CLAIM companion site,
  github.com/RSNA/CLAIM, ``docs/checklist.md``).
* TRIPOD+AI: Collins et al., *TRIPOD+AI statement*, BMJ 2024;385:e078378 (27 items, with
  sub-items such as 12e or 18f). Topics are the checklist's wording, shortened where it is
  long (the removed part is an example list or a qualifier, never a requirement).
"""

from __future__ import annotations

from collections.abc import Callable

from medtl.reports.schema import ChecklistItem, ReportData

__all__ = ["CHECKLIST_ITEMS", "fill_checklist"]

Result = tuple[str, str | None, str]
_Check = Callable[[ReportData], Result]

_FAIRNESS_KEYS = {"sex", "age", "age_group", "race", "ethnicity", "site", "device", "manufacturer"}


def _reported(section: str, detail: str = "") -> Result:
    return ("reported", section, detail)


def _unknown(detail: str) -> Result:
    return ("unknown", None, detail)


def _not_reported(detail: str, section: str | None = None) -> Result:
    return ("not reported", section, detail)


def _ground_truth(d: ReportData) -> Result:
    if d.data.simulated:
        return _reported("data", "Simulated data: labels known by construction.")
    return _unknown("How the reference standard was established is not recorded.")


def _annotators(d: ReportData) -> Result:
    if d.data.simulated:
        return ("not applicable", "data", "Labels come from the simulator, not from readers.")
    return _unknown("Number, expertise and instructions of annotators are not recorded.")


def _demographics(d: ReportData) -> Result:
    groups = {r.group.lower() for r in d.subgroups.rows}
    found = sorted(groups & _FAIRNESS_KEYS)
    if found:
        return _reported("subgroups", f"Recorded attributes: {', '.join(found)}.")
    return _not_reported("No demographic attributes (sex, age) are recorded in the manifest.")


def _initialisation(d: ReportData) -> Result:
    m = d.model
    if m.strategy == "scratch":
        return _reported("model-card", "Random initialisation (trained from scratch).")
    if m.source_domain or m.source_task or m.pretrained_weights:
        return _reported(
            "model-card",
            f"Transferred from {m.source_domain or 'unspecified domain'} / "
            f"{m.source_task or 'unspecified task'}.",
        )
    return _unknown("Strategy is a transfer strategy but the source weights are not recorded.")


def _subgroup_check(d: ReportData) -> Result:
    if not d.subgroups.applicable:
        return ("not applicable", "subgroups", d.subgroups.note)
    if d.subgroups.rows:
        return _reported("subgroups", f"{len(d.subgroups.rows)} subgroup rows with CIs.")
    return _not_reported("No subgroup attributes recorded.", "subgroups")


def _explainability(d: ReportData) -> Result:
    if d.failures.saliency_method:
        drawn = sum(c.saliency for c in d.failures.cases)
        return _reported(
            "failure-cases",
            f"{d.failures.saliency_method}; {drawn} of {len(d.failures.cases)} maps non-flat.",
        )
    if not d.failures.applicable:
        return ("not applicable", "failure-cases", d.failures.note)
    return _not_reported("No saliency maps were produced.", "failure-cases")


def _failure_analysis(d: ReportData) -> Result:
    if d.failures.applicable:
        return _reported("failure-cases", d.failures.note)
    return ("not applicable", "failure-cases", d.failures.note)


def _operating_points(d: ReportData) -> Result:
    if d.operating_points.applicable:
        return _reported("operating-points", "Thresholds chosen on the calibration split.")
    return ("not applicable", "operating-points", d.operating_points.note)


def _performance_estimates(d: ReportData) -> Result:
    detail = "AUROC/AUPRC with CIs; ECE, Brier, NLL before/after."
    if d.transfer.verdict:
        detail += " Transfer vs scratch: " + (d.transfer.verdict_sentence or d.transfer.verdict)
    return _reported("metrics", detail)


def _software(d: ReportData) -> Result:
    libs = ", ".join(f"{k} {v}" for k, v in d.model.versions.items())
    hardware = f" Hardware: {d.model.hardware}." if d.model.hardware else ""
    return _reported("model-card", f"{libs}.{hardware}")


def _eligibility(d: ReportData) -> Result:
    if d.data.simulated:
        return ("not applicable", "data", "Simulated participants.")
    return _unknown("Inclusion and exclusion criteria are not recorded in the run.")


def _acquisition(d: ReportData) -> Result:
    if d.data.simulated:
        return _reported("data", "Simulated images: " + (d.data.generator or "see data section"))
    return _unknown("Scanner, protocol and acquisition parameters are not recorded in the run.")


def _data_sharing(d: ReportData) -> Result:
    if d.data.simulated and d.data.sources:
        return _reported("data", "Rebuilt from public sources: " + ", ".join(d.data.sources))
    return _unknown("Availability of the study data is not recorded (only its hash).")


def _code_sharing(d: ReportData) -> Result:
    if d.model.config_hash and d.model.data_hash:
        version = d.model.versions.get("medtl", "")
        return _reported(
            "model-card", f"medtl {version}; config and data hashes recorded with the model."
        )
    return _unknown("Config or data hash missing.")


def _performance_measures(d: ReportData) -> Result:
    measures = "AUROC/AUPRC with CIs; calibration (ECE, Brier, NLL, reliability plot)."
    if d.transfer.verdict:
        return _reported("metrics", f"{measures} Compared with a scratch baseline.")
    return _reported("metrics", measures)


_CLAIM = "CLAIM"
_TRIPOD = "TRIPOD+AI"

CHECKLIST_ITEMS: list[tuple[str, str, str, _Check]] = [
    # CLAIM 2024 (numbers and titles of the official checklist form)
    (
        _CLAIM,
        "3",
        "Scientific and/or clinical background, including the intended use and role of the "
        "AI approach",
        lambda d: _reported("intended-use"),
    ),
    (
        _CLAIM,
        "7",
        "Data sources",
        lambda d: _reported("data", d.data.generator or ", ".join(d.data.sources)),
    ),
    (_CLAIM, "8", "Inclusion and exclusion criteria", _eligibility),
    (
        _CLAIM,
        "9",
        "Data pre-processing",
        lambda d: _reported("model-card", "Preprocessing recorded with the model."),
    ),
    (
        _CLAIM,
        "11",
        "De-identification methods",
        lambda d: _reported(
            "data", "Pseudonymous patient identifiers only; headers de-identified on ingest."
        ),
    ),
    (
        _CLAIM,
        "12",
        "How missing data were handled",
        lambda d: _unknown("Unreadable or missing images are not tracked by the run."),
    ),
    (_CLAIM, "13", "Image acquisition protocol", _acquisition),
    (_CLAIM, "14", "Definition of method(s) used to obtain reference standard", _ground_truth),
    (_CLAIM, "16", "Source of reference standard annotations", _annotators),
    (
        _CLAIM,
        "18",
        "Measures of inter- and intra-rater variability of features described by the annotators",
        _annotators,
    ),
    (
        _CLAIM,
        "19",
        "How data were assigned to partitions",
        lambda d: _reported("data", d.data.split_method),
    ),
    (
        _CLAIM,
        "20",
        "Level at which partitions are disjoint",
        lambda d: _reported("data", "Patient-level splits."),
    ),
    (
        _CLAIM,
        "21",
        "Intended sample size",
        lambda d: _not_reported("No sample-size calculation was made; CIs show the precision."),
    ),
    (
        _CLAIM,
        "22",
        "Detailed description of model",
        lambda d: _reported("model-card", d.model.backbone),
    ),
    (_CLAIM, "23", "Software libraries, frameworks, and packages", _software),
    (_CLAIM, "24", "Initialization of model parameters", _initialisation),
    (_CLAIM, "25", "Details of training approach", lambda d: _reported("model-card")),
    (
        _CLAIM,
        "26",
        "Method of selecting the final model",
        lambda d: _reported("model-card", "Best epoch on the validation split's monitored metric."),
    ),
    (_CLAIM, "28", "Metrics of model performance", lambda d: _reported("metrics")),
    (
        _CLAIM,
        "29",
        "Statistical measures of significance and uncertainty",
        lambda d: _reported("metrics", d.metrics.ci_method),
    ),
    (_CLAIM, "30", "Robustness or sensitivity analysis", _subgroup_check),
    (_CLAIM, "31", "Methods for explainability or interpretability", _explainability),
    (
        _CLAIM,
        "32",
        "Evaluation on internal data",
        lambda d: _reported("metrics", "Held-out test split of patients never used in training."),
    ),
    (
        _CLAIM,
        "33",
        "Testing on external data",
        lambda d: _not_reported("Single dataset: internal (held-out patients) testing only."),
    ),
    (
        _CLAIM,
        "34",
        "Clinical trial registration",
        lambda d: _unknown("No registration is recorded."),
    ),
    (
        _CLAIM,
        "36",
        "Demographic and clinical characteristics of cases in each partition",
        _demographics,
    ),
    (_CLAIM, "39", "Failure analysis of incorrect results", _failure_analysis),
    (
        _CLAIM,
        "40",
        "Study limitations",
        lambda d: _reported("intended-use", "; ".join(d.intended_use.limitations)),
    ),
    (
        _CLAIM,
        "42",
        "Provide a reference to the full study protocol or to additional technical details",
        lambda d: _unknown("No study protocol is recorded."),
    ),
    (
        _CLAIM,
        "43",
        "Statement about the availability of software, trained model, and/or data",
        _code_sharing,
    ),
    (
        _CLAIM,
        "44",
        "Sources of funding and other support; role of funders",
        lambda d: _unknown("Funding is not recorded."),
    ),
    # TRIPOD+AI (BMJ 2024)
    (
        _TRIPOD,
        "5a",
        "Sources of data, rationale for using them, and their representativeness",
        lambda d: _reported("data", d.data.description[:200]),
    ),
    (
        _TRIPOD,
        "5b",
        "Dates of the collected participant data (start and end of accrual)",
        lambda d: _not_reported("Collection dates are not recorded.", "data"),
    ),
    (_TRIPOD, "6b", "Eligibility criteria for study participants", _eligibility),
    (
        _TRIPOD,
        "7",
        "Data pre-processing and quality checking",
        lambda d: _reported("model-card"),
    ),
    (
        _TRIPOD,
        "8a",
        "Definition of the outcome being predicted, how and when assessed",
        lambda d: _reported("data", d.data.label_provenance[:200]),
    ),
    (
        _TRIPOD,
        "10",
        "How the study size was arrived at, and that it was sufficient",
        lambda d: _not_reported("No sample-size calculation was made; CIs show the precision."),
    ),
    (
        _TRIPOD,
        "11",
        "How missing data were handled",
        lambda d: _unknown("Unreadable or missing images are not tracked by the run."),
    ),
    (
        _TRIPOD,
        "12c",
        "Type of model, rationale, model building steps, hyperparameter tuning, and method "
        "for internal validation",
        lambda d: _reported("model-card"),
    ),
    (
        _TRIPOD,
        "12e",
        "Measures and plots used to evaluate model performance and to compare models",
        _performance_measures,
    ),
    (
        _TRIPOD,
        "12f",
        "Model updating (eg, recalibration) arising from the model evaluation",
        lambda d: _reported(
            "calibration", f"{d.calibration.method} on {d.calibration.calibrated_on}"
        ),
    ),
    (
        _TRIPOD,
        "13",
        "Class imbalance methods, and any subsequent recalibration",
        lambda d: _unknown("Prevalence is reported; no re-weighting or resampling is recorded."),
    ),
    (_TRIPOD, "14", "Approaches used to address model fairness", _demographics),
    (
        _TRIPOD,
        "15",
        "Model output, and how any classification thresholds were identified",
        _operating_points,
    ),
    (
        _TRIPOD,
        "16",
        "Differences between the development and evaluation data",
        lambda d: _reported("data", "Same source, disjoint patients."),
    ),
    (
        _TRIPOD,
        "17",
        "Ethical approval and informed consent (or waiver)",
        lambda d: _unknown("Not recorded in the run."),
    ),
    (_TRIPOD, "18e", "Availability of the study data", _data_sharing),
    (_TRIPOD, "18f", "Availability of the analytical code", _code_sharing),
    (
        _TRIPOD,
        "19",
        "Patient and public involvement",
        lambda d: _not_reported("No patient or public involvement is recorded."),
    ),
    (
        _TRIPOD,
        "23a",
        "Model performance estimates with confidence intervals, including key subgroups",
        _performance_estimates,
    ),
]


def fill_checklist(data: ReportData) -> list[ChecklistItem]:
    """Fill every CLAIM / TRIPOD+AI item from the report content.

    Args:
        data: the report content (sections already built).

    Returns:
        One :class:`ChecklistItem` per entry of :data:`CHECKLIST_ITEMS`, in order; items the
        run cannot know have status ``unknown`` and items not done ``not reported``.
    """
    items = []
    for guideline, number, topic, check in CHECKLIST_ITEMS:
        status, section, detail = check(data)
        items.append(
            ChecklistItem(
                guideline=guideline,
                item=number,
                topic=topic,
                status=status,  # type: ignore[arg-type]
                section=section,
                detail=detail,
            )
        )
    return items
