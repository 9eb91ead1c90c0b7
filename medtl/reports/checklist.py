"""CLAIM (2024 update) and TRIPOD+AI items, filled from what the run knows.

Each item says whether this report covers it (``reported``, with the section that does), or
whether the run cannot know (``unknown``: e.g. ethics approval, how readers labelled the
data), or whether nothing was done (``not reported``: e.g. external validation). Unknown
items are listed, never hidden, so a reviewer sees the gaps a study protocol must fill.

References: Tejani et al., *Checklist for Artificial Intelligence in Medical Imaging (CLAIM):
2024 Update*, Radiology: AI 2024; Collins et al., *TRIPOD+AI statement*, BMJ 2024. Item
numbers are given for orientation (check them against the published checklists); wording
is abridged.
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


def _comparison(d: ReportData) -> Result:
    if d.transfer.verdict:
        return _reported("transfer", d.transfer.verdict_sentence or d.transfer.verdict)
    return _not_reported("No scratch baseline was compared.", "transfer")


def _hardware(d: ReportData) -> Result:
    return _unknown(d.model.hardware)


CHECKLIST_ITEMS: list[tuple[str, str, str, _Check]] = [
    # CLAIM 2024
    ("CLAIM", "4", "Study objectives and intended use", lambda d: _reported("intended-use")),
    (
        "CLAIM",
        "7",
        "Data sources",
        lambda d: _reported("data", d.data.generator or ", ".join(d.data.sources)),
    ),
    (
        "CLAIM",
        "8",
        "Eligibility (inclusion/exclusion) criteria",
        lambda d: _unknown("Inclusion and exclusion criteria are not recorded in the run."),
    ),
    (
        "CLAIM",
        "9",
        "Data pre-processing",
        lambda d: _reported("model-card", "Preprocessing recorded with the model."),
    ),
    (
        "CLAIM",
        "12",
        "De-identification",
        lambda d: _reported(
            "data", "Pseudonymous patient identifiers only; headers de-identified on ingest."
        ),
    ),
    ("CLAIM", "14", "Definition of ground truth (reference standard)", _ground_truth),
    ("CLAIM", "16", "Annotators: number, qualifications, instructions", _annotators),
    ("CLAIM", "17", "Inter- and intra-rater variability", _annotators),
    (
        "CLAIM",
        "18",
        "Data partitions: sizes and assignment",
        lambda d: _reported("data", d.data.split_method),
    ),
    (
        "CLAIM",
        "19",
        "Level of partition (patient-level, no overlap)",
        lambda d: _reported("data", "Patient-level splits."),
    ),
    (
        "CLAIM",
        "20",
        "Model description (architecture, inputs, outputs)",
        lambda d: _reported("model-card", d.model.backbone),
    ),
    (
        "CLAIM",
        "21",
        "Software libraries and versions",
        lambda d: _reported(
            "model-card", ", ".join(f"{k} {v}" for k, v in d.model.versions.items())
        ),
    ),
    ("CLAIM", "22", "Initialisation of parameters (transfer source)", _initialisation),
    ("CLAIM", "23", "Training details and hyperparameters", lambda d: _reported("model-card")),
    (
        "CLAIM",
        "24",
        "Model selection method",
        lambda d: _reported("model-card", "Best epoch on the validation split's monitored metric."),
    ),
    ("CLAIM", "28", "Performance metrics", lambda d: _reported("metrics")),
    (
        "CLAIM",
        "29",
        "Statistical measures of uncertainty (CIs, tests)",
        lambda d: _reported("metrics", d.metrics.ci_method),
    ),
    ("CLAIM", "30", "Robustness or sensitivity analysis (subgroups)", _subgroup_check),
    ("CLAIM", "31", "Explainability methods (saliency)", _explainability),
    (
        "CLAIM",
        "32",
        "External validation",
        lambda d: _not_reported("Single dataset: internal (held-out patients) validation only."),
    ),
    ("CLAIM", "34", "Demographic and clinical characteristics per partition", _demographics),
    ("CLAIM", "37", "Failure analysis of incorrectly classified cases", _failure_analysis),
    (
        "CLAIM",
        "38",
        "Study limitations",
        lambda d: _reported("intended-use", "; ".join(d.intended_use.limitations)),
    ),
    (
        "CLAIM",
        "40",
        "Registration and study protocol",
        lambda d: _unknown("No registration or protocol is recorded."),
    ),
    ("CLAIM", "42", "Funding", lambda d: _unknown("Funding is not recorded.")),
    # TRIPOD+AI
    (
        "TRIPOD+AI",
        "5",
        "Source of data and study dates",
        lambda d: _not_reported("Collection dates are not recorded.", "data"),
    ),
    (
        "TRIPOD+AI",
        "6",
        "Participants: setting, eligibility, treatments",
        lambda d: (
            ("not applicable", "data", "Simulated participants.")
            if d.data.simulated
            else _unknown("Setting and eligibility of participants are not recorded.")
        ),
    ),
    ("TRIPOD+AI", "7", "Data preparation and quality checks", lambda d: _reported("model-card")),
    (
        "TRIPOD+AI",
        "8",
        "Outcome definition and how it was assessed",
        lambda d: _reported("data", d.data.label_provenance[:200]),
    ),
    (
        "TRIPOD+AI",
        "10",
        "Sample size justification",
        lambda d: _not_reported("No sample-size calculation was made; CIs show the precision."),
    ),
    (
        "TRIPOD+AI",
        "11",
        "Handling of missing data",
        lambda d: _unknown("Unreadable or missing images are not tracked by the run."),
    ),
    (
        "TRIPOD+AI",
        "12c",
        "Model type, building steps, hyperparameter tuning",
        lambda d: _reported("model-card"),
    ),
    (
        "TRIPOD+AI",
        "12e",
        "Calibration method",
        lambda d: _reported(
            "calibration", f"{d.calibration.method} on {d.calibration.calibrated_on}"
        ),
    ),
    (
        "TRIPOD+AI",
        "13",
        "Class imbalance handling",
        lambda d: _unknown("Prevalence is reported; no re-weighting or resampling is recorded."),
    ),
    ("TRIPOD+AI", "14", "Fairness: performance across groups", _demographics),
    ("TRIPOD+AI", "15", "Model output and thresholds", _operating_points),
    (
        "TRIPOD+AI",
        "16",
        "Differences between development and evaluation data",
        lambda d: _reported("data", "Same source, disjoint patients."),
    ),
    ("TRIPOD+AI", "17", "Ethics approval", lambda d: _unknown("Not recorded in the run.")),
    (
        "TRIPOD+AI",
        "19",
        "Patient and public involvement",
        lambda d: _not_reported("No patient or public involvement is recorded."),
    ),
    (
        "TRIPOD+AI",
        "23a",
        "Discrimination and calibration with CIs",
        lambda d: _reported("metrics", "AUROC/AUPRC with CIs; ECE, Brier, NLL before/after."),
    ),
    ("TRIPOD+AI", "23b", "Comparison with a baseline (transfer vs scratch)", _comparison),
    ("TRIPOD+AI", "18", "Computing hardware used for training", _hardware),
    (
        "TRIPOD+AI",
        "27",
        "Usability in the intended clinical setting",
        lambda d: _not_reported("No reader or workflow study."),
    ),
    (
        "TRIPOD+AI",
        "18e",
        "Code and data availability",
        lambda d: (
            _reported("model-card", "Config and data hashes recorded.")
            if d.model.config_hash and d.model.data_hash
            else _unknown("Config or data hash missing.")
        ),
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
