"""The demo's ``ct_foundation`` stage (``medtl demo --size full --with-foundation``).

A published CT foundation encoder (astra-ct, fetched and verified by
:func:`medtl.models.foundation.fetch_foundation`) against an MRI-pretrained 3D network, 3D
scratch and the HU-histogram baseline, on 3D CT structure patches cut after the ``merlin``
resampling (:mod:`medtl.data.ct_patches3d`), along the learning curve
(:mod:`medtl.transfer.arms`). The study is ``configs/ct_foundation.yaml`` with the demo's
folders and budgets (:func:`foundation_study`; a test keeps the two in step).

It is not part of the default demo: on 2 CPU cores the staged astra-ct arm alone (a 3D
ResNet-152 forward and a layer4 backward per patch and epoch, several seeds and fractions)
takes hours; caching astra-ct features is minutes (1636 demo patches: 57 s from layer4 on 2
idle cores, fp32; 10-20x longer on shared cores: see ``bench/results.md``). On a GPU the
whole stage is minutes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["FOUNDATION_STAGE", "foundation_study", "run_foundation_stage"]

FOUNDATION_STAGE = "ct_foundation"
#: label fractions of the study (tiny: two points, for smoke runs)
FRACTIONS = {"tiny": [0.5, 1.0], "demo": [0.05, 0.10, 0.25, 1.0], "full": [0.05, 0.10, 0.25, 1.0]}


def foundation_study(
    plan: Any, data_root: Path, mri_package: str | None, astra: str = "astra-ct"
) -> dict[str, Any]:
    """The study dict (``ArmsConfig`` fields) for one demo plan.

    Args:
        plan: the :class:`~medtl.demo.plans.DemoPlan`.
        data_root: the demo's data folder.
        mri_package: the 3D MRI source package (``None``: that arm is left out).
        astra: the astra-ct package (folder or registered name).

    Returns:
        The study, ready for ``ArmsConfig.model_validate``.
    """
    from medtl.data.ct_patches3d import FOUNDATION_PATCH

    px, py, pz = FOUNDATION_PATCH[plan.size]
    epochs = {"head_epochs": plan.head_epochs, "finetune_epochs": plan.finetune_epochs}
    encoder = {"backbone": "i3resnet152", "weights": astra, "min_loaded": 0.99}
    arms: dict[str, Any] = {
        "astra_layer3": {"kind": "features", "layer": "layer3", "model": encoder},
        "astra_layer4": {"kind": "features", "layer": "layer4", "model": encoder},
        "astra_staged": {  # layer4 + head on cached layer3 maps (medtl.transfer.arms_top)
            "kind": "top_block",
            "model": {**encoder, "dropout": 0.2},
            "strategy": {
                "name": "staged",
                "unfreeze_blocks": 1,
                "head_lr": 1e-3,
                "finetune_lr_factor": 0.1,
                "freeze_bn": True,
                **epochs,
            },
        },
        "mri3d": {
            "model": {"backbone": "resnet10", "weights": mri_package},
            "strategy": {
                "name": "full",
                "head_lr": plan.head_lr,
                "discriminative_decay": 0.7,
                "freeze_bn": False,
                **epochs,
            },
        },
        "scratch": {
            "model": {"backbone": "resnet10"},
            "strategy": {"name": "scratch", "head_lr": plan.head_lr, **epochs},
        },
        "hu_histogram": {"kind": "histogram"},
    }
    if mri_package is None:
        arms.pop("mri3d")
    return {
        "name": "ct_foundation",
        "description": "CT foundation encoder vs MRI-pretrained 3D, scratch and HU histograms.",
        "baseline": "scratch",
        "fractions": FRACTIONS[plan.size],
        "seeds": plan.seeds,
        "top_seeds": plan.top_seeds,
        "base": {
            "task": "CT structure classification (patch centre, 3D)",
            "target_domain": "CT chest/abdomen, HU",
            "data": {
                "dataset": str(data_root / "ct_structure_3d_merlin"),
                "modality": "ct",
                "preset": "merlin",
                "spatial_size": [px, py, pz],
                "cache": "memory",
                "augmentation": {
                    "rotate_deg": 8.0,
                    "scale": 0.08,
                    "intensity_scale": 0.1,
                    "intensity_shift": 0.05,
                    "noise_std": 0.01,
                    "prob": 0.5,
                },
            },
            "training": {
                "batch_size": 8,
                "amp": plan.amp,
                "channels_last": False,
                "monitor": "auroc",
                "mode": "max",
                "schedule": "cosine",
                "weight_decay": 1e-4,
                "num_workers": 0,
                "progress": "auto",
            },
            "calibration": "temperature",
        },
        "arms": arms,
    }


def _pretrain_mri_3d(plan: Any, data_root: Path, root: Path) -> str:
    """The 3D MRI source (configs/pretrain_mri_3d.yaml with the plan's epochs)."""
    from medtl.data.mri_source import build_mri_source
    from medtl.transfer.pretrain import PretrainConfig, run_pretraining

    build_mri_source(data_root / "mri_tissue_3d", plan.size, 0, ndim=3)
    config = PretrainConfig.model_validate(
        {
            "name": f"mri-source-3d-{plan.size}",
            "source_domain": "MRI brain T1 (MNI152 2009, virtual subjects)",
            "source_task": "brain tissue classification + image restoration (3D)",
            "data": {
                "dataset": str(data_root / "mri_tissue_3d"),
                "modality": "mri",
                "spatial_size": [32, 32, 6],
            },
            "backbone": "resnet10",
            "stages": ["restoration", "supervised"],
            "restoration_epochs": plan.pretrain_epochs,
            "supervised_epochs": plan.pretrain_epochs,
            "lr": plan.head_lr,
            "training": {
                "batch_size": 16,
                "amp": plan.amp,
                "channels_last": False,
                "monitor": "auroc",
                "mode": "max",
                "num_workers": 0,
            },
        }
    )
    return str(run_pretraining(config, root / "pretrain" / "mri3d"))


def run_foundation_stage(plan: Any, data_root: Path, root: Path) -> dict[str, Any]:
    """Fetch astra-ct, build the 3D data and the 3D MRI source, run the study.

    Returns:
        The stage's outputs: study folder, per-arm verdict sentences, arm names.

    Raises:
        medtl.models.foundation.FoundationFetchError: astra-ct cannot be fetched (the
            message says what to download by hand).
    """
    import yaml

    from medtl.data.ct_patches3d import build_ct_patches3d
    from medtl.models.foundation import fetch_foundation
    from medtl.transfer.arms import ArmsConfig, run_arms

    astra = fetch_foundation("astra-ct")
    logger.info("astra-ct: %s", astra.ref)
    build_ct_patches3d(data_root / "ct_structure_3d_merlin", plan.size, 0)
    mri = _pretrain_mri_3d(plan, data_root, root)
    study = foundation_study(plan, data_root, mri, astra=str(astra.path))
    (root / "configs").mkdir(exist_ok=True)
    (root / "configs" / "ct_foundation.yaml").write_text(
        yaml.safe_dump(study, sort_keys=False), encoding="utf-8"
    )
    folder = root / "runs" / FOUNDATION_STAGE
    # a stage run again: points of an earlier config are moved aside, matching ones reused
    result = run_arms(
        ArmsConfig.model_validate(study), folder, n_resamples=plan.n_resamples, overwrite=True
    )
    return {
        "folder": str(folder),
        "arms": sorted(study["arms"]),
        "verdicts": {arm: v.get("sentence") for arm, v in result["verdicts"].items()},
    }
