"""The report's CLAIM 2024 / TRIPOD+AI checklist: published numbers and titles, honest statuses."""

from __future__ import annotations

import pytest

from medtl.reports.checklist import CHECKLIST_ITEMS, fill_checklist

# Item titles of the official CLAIM 2024 checklist form (Tejani et al., Radiol Artif Intell
# 2024;6(4):e240300; RSNA's companion site github.com/RSNA/CLAIM, docs/checklist.md).
CLAIM_2024 = {
    1: "Identification as a study of AI methodology, specifying the category of technology "
    "used (e.g., deep learning)",
    2: "Summary of study design, methods, results, and conclusions",
    3: "Scientific and/or clinical background, including the intended use and role of the AI "
    "approach",
    4: "Study aims, objectives, and hypotheses",
    5: "Prospective or retrospective study",
    6: "Study goal",
    7: "Data sources",
    8: "Inclusion and exclusion criteria",
    9: "Data pre-processing",
    10: "Selection of data subsets",
    11: "De-identification methods",
    12: "How missing data were handled",
    13: "Image acquisition protocol",
    14: "Definition of method(s) used to obtain reference standard",
    15: "Rationale for choosing the reference standard",
    16: "Source of reference standard annotations",
    17: "Annotation of test set",
    18: "Measures of inter- and intra-rater variability of features described by the annotators",
    19: "How data were assigned to partitions",
    20: "Level at which partitions are disjoint",
    21: "Intended sample size",
    22: "Detailed description of model",
    23: "Software libraries, frameworks, and packages",
    24: "Initialization of model parameters",
    25: "Details of training approach",
    26: "Method of selecting the final model",
    27: "Ensembling techniques",
    28: "Metrics of model performance",
    29: "Statistical measures of significance and uncertainty",
    30: "Robustness or sensitivity analysis",
    31: "Methods for explainability or interpretability",
    32: "Evaluation on internal data",
    33: "Testing on external data",
    34: "Clinical trial registration",
    35: "Numbers of patients or examinations included and excluded",
    36: "Demographic and clinical characteristics of cases in each partition",
    37: "Performance metrics and measures of statistical uncertainty",
    38: "Estimates of diagnostic performance and their precision",
    39: "Failure analysis of incorrect results",
    40: "Study limitations",
    41: "Implications for practice, including intended use and/or clinical role",
    42: "Provide a reference to the full study protocol or to additional technical details",
    43: "Statement about the availability of software, trained model, and/or data",
    44: "Sources of funding and other support; role of funders",
}

# Item numbers of the TRIPOD+AI checklist (Collins et al., BMJ 2024;385:e078378): 27 main
# items, some with lettered sub-items, and a keyword of each item's wording.
TRIPOD_AI = {
    "1": "title", "2": "abstract", "3a": "healthcare context", "3b": "target population",
    "3c": "health inequalities", "4": "objectives", "5a": "sources of data", "5b": "dates",
    "6a": "setting", "6b": "eligibility", "6c": "treatments", "7": "pre-processing",
    "8a": "outcome", "8b": "outcome assessors", "8c": "blind", "9a": "initial predictors",
    "9b": "define all predictors", "9c": "predictor assessors", "10": "study size",
    "11": "missing data", "12a": "how the data were used", "12b": "predictors were handled",
    "12c": "type of model", "12d": "heterogeneity", "12e": "measures and plots",
    "12f": "model updating", "12g": "predictions were calculated", "13": "class imbalance",
    "14": "fairness", "15": "output", "16": "development and evaluation data",
    "17": "ethical approval", "18a": "funding", "18b": "conflicts of interest",
    "18c": "protocol", "18d": "registration", "18e": "study data", "18f": "analytical code",
    "19": "patient and public involvement", "20a": "flow of participants",
    "20b": "characteristics", "20c": "comparison with the development data",
    "21": "number of participants", "22": "full prediction model", "23a": "performance",
    "23b": "heterogeneity", "24": "model updating", "25": "interpretation", "26": "limitations",
    "27a": "poor quality or unavailable input data", "27b": "users", "27c": "next steps",
}  # fmt: skip


def test_claim_items_carry_the_published_numbers_and_titles() -> None:
    claim = [(n, topic) for g, n, topic, _ in CHECKLIST_ITEMS if g == "CLAIM"]
    assert len(claim) >= 25
    for number, topic in claim:
        assert topic == CLAIM_2024[int(number)], f"CLAIM item {number}: {topic!r}"


def test_tripod_items_carry_published_numbers_and_matching_topics() -> None:
    tripod = [(n, topic) for g, n, topic, _ in CHECKLIST_ITEMS if g == "TRIPOD+AI"]
    assert len(tripod) >= 15
    assert len({int("".join(c for c in n if c.isdigit())) for n in TRIPOD_AI}) == 27
    for number, topic in tripod:
        assert number in TRIPOD_AI, f"TRIPOD+AI has no item {number}"
        assert TRIPOD_AI[number] in topic.lower(), f"TRIPOD+AI {number}: {topic!r}"


def test_each_item_is_listed_once() -> None:
    keys = [(g, n) for g, n, _, _ in CHECKLIST_ITEMS]
    assert len(keys) == len(set(keys))
    assert {g for g, _ in keys} == {"CLAIM", "TRIPOD+AI"}


def test_report_checklist_has_no_orientation_hedge(report_data, report_html) -> None:
    assert "for orientation" not in report_html
    items = {(i.guideline, i.item): i for i in report_data.checklist}
    # software versions and the recorded hardware setting go to CLAIM 23 (no TRIPOD+AI item)
    software = items[("CLAIM", "23")]
    assert software.status == "reported" and "torch" in software.detail
    assert "Hardware:" in software.detail
    assert items[("CLAIM", "33")].status == "not reported"
    assert items[("TRIPOD+AI", "12f")].section == "calibration"


@pytest.mark.parametrize("simulated", [True, False])
def test_statuses_follow_what_the_run_knows(report_data, simulated: bool) -> None:
    data = report_data.model_copy(deep=True)
    data.data.simulated = simulated
    items = {(i.guideline, i.item): i.status for i in fill_checklist(data)}
    if simulated:
        assert items[("CLAIM", "14")] == "reported"
        assert items[("CLAIM", "8")] == items[("TRIPOD+AI", "6b")] == "not applicable"
        assert items[("CLAIM", "13")] == "reported"
    else:
        for key in [("CLAIM", "14"), ("CLAIM", "16"), ("CLAIM", "8"), ("CLAIM", "13")]:
            assert items[key] == "unknown", key
        assert items[("TRIPOD+AI", "18e")] == "unknown"
