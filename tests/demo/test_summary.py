"""The demo summary shows each arm's mean and spread over seeds, the seed-aware verdict and
ECE before -> after with CIs, read from real learning-curve folders."""

from __future__ import annotations

from medtl.demo.plans import PLANS
from medtl.demo.runner import DemoState
from medtl.demo.summary import COLUMNS, build_summary, print_summary, summary_cells
from tests.evaluation.test_seed_verdict import _curves


def test_summary_rows_and_printed_table(tmp_path, capsys) -> None:
    out, result = _curves(tmp_path, [2.5, 0.3, 0.6])
    state = DemoState(size="tiny")
    for name in ("mri_to_ct", "cxr_nodule"):
        state.done[name] = {"folder": str(out), "runs": result["runs"], "seconds": 60.0}
    summary = build_summary(PLANS["tiny"], state, tmp_path)
    assert (tmp_path / "summary.json").is_file()
    row = summary["rows"][0]
    transfer, scratch = row["arms"]["transfer"], row["arms"]["scratch"]
    assert transfer["n_seeds"] == scratch["n_seeds"] == 3
    assert transfer["min"] < transfer["mean"] < transfer["max"] and transfer["sd"] > 0.1
    assert row["verdict"] == "no significant difference"
    assert row["verdict_decided_by"] == "seed-and-patient bootstrap"
    lo, hi = row["verdict_ci"]
    assert lo < 0 < hi
    # calibration: 40 images of 20 patients fit temperature scaling; ECE with its CIs
    assert row["calibration_method"] == "temperature" and row["calibration_warning"] is None
    assert row["calibration_split"] == {"patients": 20, "images": 40}
    assert row["ece_before_ci"]["lower"] <= row["ece_before"] <= row["ece_before_ci"]["upper"]
    assert row["ece_change_ci"] is not None and row["ece_finding"]
    cells = summary_cells(row)
    assert len(cells) == len(COLUMNS)
    assert "(3 seeds)" in cells[1] and "±" in cells[1] and "[" in cells[1]
    assert cells[3].startswith("no significant difference") and "Δ" in cells[3]
    assert "->" in cells[5] and "change" in cells[5]
    print_summary(summary)
    printed = capsys.readouterr().out
    assert "significant" in printed and "3 seeds" in printed and "Δ" in printed


def test_old_summary_rows_still_print() -> None:
    """A summary.json written before seeds were summarised (no arms, no CIs)."""
    row = {
        "experiment": "cxr_nodule",
        "transfer_auroc": {"estimate": 0.852, "lower": 0.806, "upper": 0.9},
        "scratch_auroc": {"estimate": 0.799, "lower": 0.77, "upper": 0.86},
        "fewest_labels": {"fraction": 0.1, "n_train": 120, "transfer_auroc": 0.727,
                          "scratch_auroc": 0.531},
        "verdict": "no significant difference",
        "ece_before": 0.064,
        "ece_after": 0.066,
        "seconds": 288.0,
    }  # fmt: skip
    cells = summary_cells(row)
    assert cells[1] == "0.852" and cells[5] == "0.064 -> 0.066"


def test_demo_plan_seeds_fit_the_time_budget() -> None:
    """The demo plan's seeds, costed from the measured one-seed stage times (README)."""
    plan = PLANS["demo"]
    assert plan.seeds >= 3 and plan.top_seeds >= 2
    # one seed per point: 187 s (MRI->CT) + 288 s (CXR) of 828 s in all (13.8 min)
    other = 828 - 187 - 288

    def units(seeds: int, top: int, fractions: tuple[float, ...]) -> float:
        # a run costs its label fraction plus a fixed 0.1 (evaluation, inference)
        per_arm = sum((f + 0.1) * (seeds if f <= 0.25 else top) for f in fractions)
        return 2 * per_arm

    ratio = units(plan.seeds, plan.top_seeds, plan.fractions) / units(1, 1, plan.fractions)
    estimate = other + ratio * (187 + 288)
    assert estimate < 0.85 * 30 * 60  # 15 % margin under 30 minutes


def test_ct_foundation_rows_come_from_each_arms_own_verdict(tmp_path) -> None:
    from medtl.artifacts import Comparison
    from medtl.evaluation.compare import compare_seed_runs
    from medtl.transfer.learning_curves import point_dir

    out, result = _curves(tmp_path, [2.5, 0.3, 0.6])
    state = DemoState(size="tiny")
    for name in ("mri_to_ct", "cxr_nodule"):
        state.done[name] = {"folder": str(out), "runs": result["runs"], "seconds": 60.0}
    # the study's per-arm verdict: seed 0 alone (positive), unlike the folder's 3-seed one
    alone = compare_seed_runs(
        [point_dir(out, "full", 1.0, 0)], [point_dir(out, "scratch", 1.0, 0)], n_resamples=200
    )
    Comparison.model_validate(alone).write(out / "verdicts" / "full" / Comparison.FILE)
    state.done["ct_foundation"] = {"folder": str(out), "arms": ["full", "scratch"],
                                   "seconds": 600.0}  # fmt: skip
    summary = build_summary(PLANS["tiny"], state, tmp_path)
    assert [r["experiment"] for r in summary["rows"]] == [
        "mri_to_ct", "cxr_nodule", "ct_foundation: full"]  # fmt: skip
    row = summary["rows"][2]
    assert row["verdict"] == "positive transfer" and row["seconds"] == 600.0
    assert row["arms"]["transfer"]["n_seeds"] == 3
    assert summary_cells(row)[-1] == "10.0 min"
    assert summary_cells(dict(row, seconds=None))[-1] == "-"
