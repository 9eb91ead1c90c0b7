"""The demo's summary: per experiment, each arm's test AUROC over training seeds (mean, SD,
min-max), the seed-aware transfer verdict, both arms at the fewest labels, and calibration
(ECE before and after, with patient-level CIs and the CI of the change).

:func:`build_summary` reads the learning-curve folders (``learning_curves.json``,
``verdict.json`` and the evaluation of the transfer arm's first seed at the top fraction)
and writes ``MEDTL_HOME/demo/<size>/summary.json``; :func:`summary_cells` and
:func:`print_summary` turn it into the table ``medtl demo`` prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medtl.demo.plans import DemoPlan
    from medtl.demo.runner import DemoState

__all__ = ["COLUMNS", "build_summary", "print_summary", "summary_cells"]

#: Column headers of the printed table (one cell each from :func:`summary_cells`).
COLUMNS = (
    "experiment",
    "transfer: mean ± SD, min-max (seeds)",
    "scratch: mean ± SD, min-max (seeds)",
    "verdict (seeds and patients)",
    "fewest labels: transfer / scratch",
    "ECE before -> after (95% CI)",
    "time",
)


def _arm(curves: Any, strategy: str, fraction: float) -> dict[str, Any] | None:
    cell = curves.cell(strategy, fraction)
    if cell is None:
        return None
    return {
        "n_seeds": cell.n_seeds,
        "mean": cell.mean,
        "sd": cell.sd,
        "min": cell.min,
        "max": cell.max,
    }


def _calibration(ev: Any) -> dict[str, Any]:
    """ECE before/after with CIs, the change's CI and finding, the split and any warning."""
    ece = next(r for r in ev.calibration.table if r.measure.startswith("ECE"))
    split = ev.calibration_split

    def ci(value: Any) -> dict[str, Any] | None:
        return value.model_dump() if value is not None else None

    return {
        "ece_before": ece.before,
        "ece_after": ece.after,
        "ece_before_ci": ci(ece.before_ci),
        "ece_after_ci": ci(ece.after_ci),
        "ece_change_ci": ci(ece.change_ci),
        "ece_finding": ece.finding,
        "calibration_method": ev.calibration_method,
        "calibration_warning": ev.calibration_warning,
        "calibration_split": (
            {"patients": split.n_patients, "images": split.n_images} if split else None
        ),
    }


def _row(
    name: str,
    arm: str,
    folder: Path,
    top: float,
    state_row: dict[str, Any],
    verdict_file: Path | None = None,
) -> dict:
    from medtl.artifacts import Comparison, Evaluation, LearningCurves
    from medtl.transfer.learning_curves import point_dir

    ev = {
        key: Evaluation.read(point_dir(folder, strategy, top, 0) / Evaluation.FILE)
        for key, strategy in (("transfer", arm), ("scratch", "scratch"))
    }
    curves = LearningCurves.read(folder / LearningCurves.FILE)
    verdict_file = verdict_file or folder / Comparison.FILE
    verdict = Comparison.read(verdict_file) if verdict_file.is_file() else None
    fewest = min(p.fraction for p in curves.points)
    n_train = next(
        (p.n_train for p in curves.points if p.fraction == fewest and p.strategy == arm), None
    )
    few_t, few_s = _arm(curves, arm, fewest), _arm(curves, "scratch", fewest)
    return {
        "experiment": name,
        "strategy": arm,
        # the first seed's run (the one reported and packaged), with its test-sampling CI
        "transfer_auroc": ev["transfer"].test.auroc.model_dump(),
        "scratch_auroc": ev["scratch"].test.auroc.model_dump(),
        "arms": {"transfer": _arm(curves, arm, top), "scratch": _arm(curves, "scratch", top)},
        "fewest_labels": {
            "fraction": fewest,
            "n_train": n_train,
            "transfer_auroc": few_t["mean"] if few_t else None,
            "scratch_auroc": few_s["mean"] if few_s else None,
            "transfer": few_t,
            "scratch": few_s,
        },
        "verdict": verdict.verdict if verdict else None,
        "verdict_sentence": verdict.sentence if verdict else None,
        "verdict_ci": [verdict.ci_low, verdict.ci_high] if verdict else None,
        "verdict_delta": verdict.delta_auroc if verdict else None,
        "verdict_decided_by": verdict.decided_by if verdict else None,
        **_calibration(ev["transfer"]),
        "seconds": state_row.get("seconds"),
    }


def build_summary(plan: DemoPlan, state: DemoState, root: Path) -> dict[str, Any]:
    """The summary of a finished demo (also written to ``root/summary.json``).

    Args:
        plan: the demo plan.
        state: the demo state (stage outputs: learning-curve folders, seconds).
        root: ``MEDTL_HOME/demo/<size>``.

    Returns:
        ``{"schema_version", "size", "rows", "stage_seconds", "total_seconds"}`` (a
        :class:`~medtl.artifacts.DemoSummary` as JSON); one row per experiment.
    """
    from medtl.demo.runner import transfer_arm

    rows = []
    for name in ("mri_to_ct", "cxr_nodule"):
        top = max(plan.cxr_fractions if name == "cxr_nodule" else plan.fractions)
        folder = Path(state.done[name]["folder"])
        rows.append(_row(name, transfer_arm(state, name), folder, top, state.done[name]))
    rows += _foundation_rows(plan, state)
    from medtl.artifacts import DemoSummary

    summary = DemoSummary.model_validate(
        {
            "size": plan.size,
            "rows": rows,
            "stage_seconds": {k: v.get("seconds") for k, v in state.done.items()},
            "total_seconds": sum(v.get("seconds") or 0 for v in state.done.values()),
        }
    )
    summary.write(root / DemoSummary.FILE)  # validated on the way out
    return summary.to_json_dict()


def _foundation_rows(plan: DemoPlan, state: DemoState) -> list[dict[str, Any]]:
    """One row per ``ct_foundation`` arm against 3D scratch (when that stage ran)."""
    from medtl.demo.foundation import FOUNDATION_STAGE, FRACTIONS

    done = state.done.get(FOUNDATION_STAGE)
    if not done:
        return []
    folder = Path(done["folder"])
    top = max(FRACTIONS[plan.size])
    rows = []
    for k, arm in enumerate(a for a in done["arms"] if a != "scratch"):
        verdict = folder / "verdicts" / arm / "verdict.json"
        # the stage's time once, on its first row
        rows.append(_row(f"ct_foundation: {arm}", arm, folder, top, done if k == 0 else {},
                         verdict_file=verdict))  # fmt: skip
    return rows


def _num(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _spread(arm: dict[str, Any] | None) -> str:
    if not arm:
        return "-"
    n = arm["n_seeds"]
    sd = f" ± {_num(arm['sd'])}" if arm.get("sd") is not None else ""
    rng = f"\n[{_num(arm['min'])}-{_num(arm['max'])}]" if n > 1 else ""
    return f"{_num(arm['mean'])}{sd}{rng}\n({n} seed{'s' if n != 1 else ''})"


def _ci(ci: dict[str, Any] | None, signed: bool = False) -> str:
    if not ci or ci.get("lower") is None:
        return ""
    fmt = "{:+.3f}" if signed else "{:.3f}"
    return f" ({fmt.format(ci['lower'])} to {fmt.format(ci['upper'])})"


def _ece(row: dict[str, Any]) -> str:
    before = f"{_num(row['ece_before'])}{_ci(row.get('ece_before_ci'))}"
    if row.get("calibration_warning"):
        return f"{before}\nnot calibrated: split too small"
    after = f"{_num(row['ece_after'])}{_ci(row.get('ece_after_ci'))}"
    change = row.get("ece_change_ci")
    if not change:
        return f"{before} -> {after}"
    lower, upper = change.get("lower"), change.get("upper")
    measurable = lower is not None and upper is not None and (upper < 0 or lower > 0)
    return (
        f"{before} ->\n{after}\nchange {change['estimate']:+.3f}{_ci(change, signed=True)}"
        f"{'' if measurable else ': not measurable'}"
    )


def summary_cells(row: dict[str, Any]) -> list[str]:
    """The printed cells of one summary row (see :data:`COLUMNS`); tolerates rows written
    before seeds were summarised (no ``arms``)."""
    arms = row.get("arms") or {}
    few = row.get("fewest_labels")
    if few:
        t = few.get("transfer") or {}
        s = few.get("scratch") or {}
        fewest = (
            f"{_num(few['transfer_auroc'])} / {_num(few['scratch_auroc'])}\n"
            f"(SD {_num(t.get('sd'))} / {_num(s.get('sd'))})\n"
            f"({few['fraction']:.0%}, n={few['n_train']})"
        )
    else:
        fewest = "-"
    verdict = str(row.get("verdict"))
    if row.get("verdict_ci"):
        lo, hi = row["verdict_ci"]
        verdict += f"\nΔ {row['verdict_delta']:+.3f} ({lo:+.3f} to {hi:+.3f})"
    return [
        row["experiment"],
        _spread(arms.get("transfer")) if arms else _num(row["transfer_auroc"]["estimate"]),
        _spread(arms.get("scratch")) if arms else _num(row["scratch_auroc"]["estimate"]),
        verdict,
        fewest,
        _ece(row),
        "-" if row.get("seconds") is None else f"{row['seconds'] / 60:.1f} min",
    ]


def print_summary(summary: dict[str, Any]) -> None:
    """Print the demo summary table (rich) and the total time."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title=f"medtl demo ({summary.get('size')}): test AUROC at the largest label fraction"
    )
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    for row in summary.get("rows", []):
        table.add_row(*(escape(cell) for cell in summary_cells(row)))
    console = Console(width=max(130, Console().width))
    console.print(table)
    console.print(f"total time: {summary.get('total_seconds', 0) / 60:.1f} min")
