"""Multi-arm learning curves (the ct_foundation study) on a tiny real-NIfTI 3D dataset."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from medtl.data.manifest import Manifest, ManifestRecord
from medtl.transfer.arms import arm_config, load_arms_config, run_arms
from tests.models.merlin_layout import merlin_file_bytes, merlin_state

SHAPE = (16, 16, 4)  # X, Y, Z at 1.5 x 1.5 x 3 mm, RAS


def _write_dataset(root: Path, n_patients: int = 30) -> Path:
    """Positives hold a dense cube (HU +400) in soft tissue; splits by patient."""
    rng = np.random.default_rng(0)
    affine = np.diag([1.5, 1.5, 3.0, 1.0])
    splits = ["train"] * 14 + ["val"] * 4 + ["calibration"] * 4 + ["test"] * 8
    records = []
    for p in range(n_patients):
        for k in range(4):
            label = (p + k) % 2
            img = rng.normal(40.0, 30.0, SHAPE)
            if label:
                x0, y0 = rng.integers(2, 9, 2)
                img[x0 : x0 + 5, y0 : y0 + 5, 1:3] += 400.0
            rel = f"images/p{p:02d}_{k}.nii.gz"
            (root / "images").mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(np.round(img).astype(np.int16), affine), str(root / rel))
            records.append(ManifestRecord(image=rel, label=label, patient_id=f"P{p:02d}",
                                          split=splits[p], modality="CT", task="cube"))  # fmt: skip
    Manifest(name="cubes", task="cube", label_names=["absent", "present"], simulated=True,
             description="synthetic 3D cubes for tests", records=records).save(root)  # fmt: skip
    return root


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("arms")
    _write_dataset(root / "data")
    (root / "enc.pt").write_bytes(merlin_file_bytes(merlin_state(width=4, seed=3)))
    training = {"batch_size": 16, "amp": "none", "progress": "never", "monitor": "auroc",
                "mode": "max", "num_workers": 0}  # fmt: skip
    config = {
        "name": "cubes",
        "baseline": "scratch",
        "fractions": [0.5, 1.0],
        "seeds": 1,
        "base": {
            "data": {
                "dataset": "data",
                "modality": "ct",
                "preset": "merlin",
                "spatial_size": list(SHAPE),
                "cache": "memory",
            },
            "training": training,
        },
        "arms": {
            "enc_layer3": {
                "kind": "features",
                "layer": "layer3",
                "model": {"backbone": "i3resnet152", "weights": "enc.pt", "options": {"width": 4}},
            },
            "scratch": {
                "model": {"backbone": "smallcnn"},
                "strategy": {
                    "name": "scratch",
                    "head_epochs": 1,
                    "finetune_epochs": 1,
                    "head_lr": 0.01,
                },
            },
            "hu_histogram": {"kind": "histogram"},
        },
    }
    (root / "study.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return root


def test_arm_configs_merge_the_base(study):
    config = load_arms_config(study / "study.yaml")
    enc = arm_config(config, "enc_layer3")
    assert enc.model.options == {"width": 4, "last_stage": "layer3"}
    assert enc.strategy.name == "feature_extraction" and enc.strategy.feature_head == "logistic"
    assert enc.data.dataset == study / "data" and enc.model.weights == study / "enc.pt"
    spec = enc.preprocessing()
    assert spec.orientation == "RAS" and spec.target_spacing == [1.5, 1.5, 3.0]
    assert spec.spatial_size == list(SHAPE) and spec.fit == "pad_crop"
    with pytest.raises(ValueError, match="baseline"):
        bad = yaml.safe_load((study / "study.yaml").read_text()) | {"baseline": "nope"}
        (study / "bad.yaml").write_text(yaml.safe_dump(bad))
        load_arms_config(study / "bad.yaml")


def test_every_arm_gets_points_curves_and_a_verdict_against_the_baseline(study):
    import torch

    torch.set_num_threads(1)
    config = load_arms_config(study / "study.yaml")
    out = study / "runs"
    result = run_arms(config, out, n_resamples=100)
    names = {p["strategy"] for p in result["points"]}
    assert names == {"enc_layer3", "scratch", "hu_histogram"}
    assert set(result["verdicts"]) == {"enc_layer3", "hu_histogram"}
    from medtl.artifacts import Comparison

    assert (out / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for arm, verdict in result["verdicts"].items():  # each verdict is also a typed file
        written = Comparison.read(out / "verdicts" / arm / "verdict.json")
        assert written.verdict == verdict["verdict"] and written.n_images == verdict["n_images"]
    curves = json.loads((out / "learning_curves.json").read_text())
    assert {p["strategy"] for p in curves["points"]} == names
    # the histogram sees the dense cube: near-perfect test AUROC
    hist = [p for p in result["points"] if p["strategy"] == "hu_histogram" and p["fraction"] == 1]
    assert hist[0]["auroc"] > 0.9
    # smaller label fraction -> fewer training images, nested patients
    n = {(p["strategy"], p["fraction"]): p["n_train"] for p in result["points"]}
    assert n[("enc_layer3", 0.5)] < n[("enc_layer3", 1.0)] == 14 * 4
    # features were extracted once for every record (1024/16 = 64 channels at width 4)
    from safetensors.numpy import load_file

    (cache,) = (out / "features").glob("enc_layer3-*.safetensors")
    feats = load_file(str(cache))
    assert feats["features"].shape == (120, 64)
    assert sorted(feats["index"].tolist()) == list(range(120))
    stamp = cache.stat().st_mtime_ns
    # a second study reuses finished points and the cache
    (out / "enc_layer3_f0.5_s0" / "evaluation.json").unlink()
    again = run_arms(config, out, n_resamples=100)
    assert cache.stat().st_mtime_ns == stamp
    first = {(p["strategy"], p["fraction"]): p["auroc"] for p in result["points"]}
    second = {(p["strategy"], p["fraction"]): p["auroc"] for p in again["points"]}
    assert second == pytest.approx(first)


def test_score_candidates_cut_at_a_layer_random_and_tau_against_curves(study, tmp_path):
    import torch

    from medtl.artifacts.curves import CurvePoint, LearningCurves
    from medtl.transfer.scoring import achieved_metric, parse_candidate, score_backbones

    torch.set_num_threads(1)
    config = load_arms_config(study / "study.yaml")
    base = arm_config(config, "enc_layer3")
    full = base.model_copy(
        update={"model": base.model.model_copy(update={"options": {"width": 4}})}
    )
    assert parse_candidate("a=astra-ct:layer3").layer == "layer3"
    assert parse_candidate("astra-ct:layer4").name == "astra-ct:layer4"
    assert parse_candidate("r=random:smallcnn").backbone == "smallcnn"
    assert parse_candidate("r=").weights is None
    weights = str(study / "enc.pt")
    cands = [
        parse_candidate(f"enc_layer3={weights}:layer3"),
        parse_candidate(f"enc_layer4={weights}:layer4"),
        parse_candidate("scratch=random:smallcnn"),
    ]
    LearningCurves.from_points(
        CurvePoint(strategy=s, fraction=f, seed=seed, auroc=a)
        for s, f, seed, a in [
            ("enc_layer3", 1.0, 0, 0.9), ("enc_layer3", 1.0, 1, 0.8),
            ("enc_layer4", 1.0, 0, 0.7), ("scratch", 1.0, 0, 0.6), ("scratch", 0.5, 0, 0.1),
        ]
    ).write(tmp_path / "learning_curves.json")  # fmt: skip
    achieved = achieved_metric(tmp_path / "learning_curves.json")
    assert achieved == pytest.approx({"enc_layer3": 0.85, "enc_layer4": 0.7, "scratch": 0.6})
    assert achieved_metric(tmp_path / "learning_curves.json", 0.5) == {"scratch": 0.1}
    result = score_backbones(full, cands, max_samples=40, finetuned=achieved)
    assert set(result["scores"]) == {"enc_layer3", "enc_layer4", "scratch"}
    assert set(result["ranking"]) == {"logme", "h_score"}  # no source classifier here
    assert result["kendall_tau"]["logme"]["n"] == 3
    # layer3 is pooled from the stage, not the model's last one: other features
    assert result["scores"]["enc_layer3"]["logme"] != result["scores"]["enc_layer4"]["logme"]


def test_medtl_score_on_a_study_yaml_with_a_package_cut_at_layers(study, tmp_path):
    from typer.testing import CliRunner

    from medtl.artifacts import TransferabilityScores
    from medtl.cli import app
    from medtl.models import ModelCard, create_backbone, import_weights, save_package
    from medtl.models.foundation import merlin_preprocessing

    model = create_backbone("i3resnet152", spatial_dims=3, options={"width": 4})
    import_weights(model, study / "enc.pt")
    spec = merlin_preprocessing().model_copy(update={"spatial_size": list(SHAPE)})
    package = save_package(
        model, ModelCard(name="tiny-enc", preprocessing=spec.model_dump()), tmp_path / "pkg"
    )
    (tmp_path / "auroc.json").write_text(json.dumps({"enc3": 0.9, "enc4": 0.8, "rand": 0.5}))
    args = ["score", str(study / "study.yaml"), "-c", f"enc3={package}:layer3",
            "-c", f"enc4={package}:layer4", "-c", "rand=random",
            "--finetuned", str(tmp_path / "auroc.json"), "--out", str(tmp_path / "t.json"),
            "--max-samples", "40"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "logme:" in result.output and "Kendall tau (logme" in result.output
    scores = TransferabilityScores.read(tmp_path / "t.json")
    assert set(scores.scores) == {"enc3", "enc4", "rand"}
    assert scores.kendall_tau["logme"].n == 3
    bad = CliRunner().invoke(app, ["score", str(study / "study.yaml"), "-c", "=x"])
    assert bad.exit_code == 2 and "no name" in bad.output


def test_medtl_study_command_resumes_and_validates(study):
    from typer.testing import CliRunner

    from medtl.cli import app

    runner = CliRunner()
    args = ["study", str(study / "study.yaml"), "--out", str(study / "runs"), "--resamples", "100"]
    done = runner.invoke(app, args)  # the points of the run_arms test are reused
    assert done.exit_code == 0, done.output
    assert "enc_layer3 vs scratch:" in done.output and "hu_histogram" in done.output
    bad = runner.invoke(app, [*args, "--arms", "nope"])
    assert bad.exit_code == 2 and "unknown arm" in bad.output
    bad = runner.invoke(app, [*args, "--fractions", "0,1"])
    assert bad.exit_code == 2 and "(0, 1]" in bad.output


def test_top_block_model_on_cached_trunk_maps_equals_the_whole_network(study):
    import torch

    from medtl.transfer.arms_top import TopBlockModel
    from medtl.transfer.experiment import build_model

    config = yaml.safe_load((study / "study.yaml").read_text())
    config["arms"]["enc_top"] = _top_arm()
    (study / "top.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    cfg = arm_config(load_arms_config(study / "top.yaml"), "enc_top")
    model = build_model(cfg, 1, ["absent", "present"]).eval()
    top = TopBlockModel(model, "layer4")
    assert top.trunk_end == "layer3" and top.blocks() == [model.encoder.layer4]
    # only the tuned stage and the head are this model's parameters (small checkpoints)
    assert {k.split(".")[0] for k in top.state_dict()} == {"stage", "head"}
    x = torch.randn(3, 1, *SHAPE)
    with torch.inference_mode():
        whole = model(x)
        cached = top(model.forward_trunk(x, "layer3"))
    torch.testing.assert_close(cached, whole)
    with pytest.raises(ValueError, match="cannot tune"):
        TopBlockModel(model, "layer1")


def _top_arm() -> dict:
    return {
        "kind": "top_block",
        "model": {"backbone": "i3resnet152", "weights": "enc.pt", "options": {"width": 4}},
        "strategy": {"name": "staged", "unfreeze_blocks": 1, "head_epochs": 1,
                     "finetune_epochs": 2, "head_lr": 0.01, "finetune_lr_factor": 0.5},
    }  # fmt: skip


def test_top_block_arm_tunes_layer4_on_cached_maps_and_leaves_the_trunk(study):
    import torch
    from safetensors.numpy import load_file

    torch.set_num_threads(1)
    config = yaml.safe_load((study / "study.yaml").read_text())
    config["arms"] = {"enc_top": _top_arm(), "scratch": config["arms"]["scratch"]}
    (study / "top_only.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    out = study / "top_runs"
    result = run_arms(load_arms_config(study / "top_only.yaml"), out, n_resamples=100)
    assert {p["strategy"] for p in result["points"]} == {"enc_top", "scratch"}
    assert "enc_top" in result["verdicts"]
    # trunk maps were computed once for all 120 records: (64 channels, 1 x 1 x 1) at width 4
    (cache,) = (out / "features").glob("enc_top-trunk-layer3-*.safetensors")
    maps = load_file(str(cache))
    assert maps["maps"].shape == (120, 64, 1, 1, 1)
    run = out / "enc_top_f1_s0"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["strategy"].startswith("staged (layer4 on cached layer3")
    assert summary["train_images"] == 14 * 4
    # both phases ran on the cached maps: head first, then layer4 with the head
    assert (run / "train" / "head").is_dir() and (run / "train" / "finetune").is_dir()
    assert (run / "train" / "finetune" / "metrics.csv").is_file()
    assert not list(run.rglob("*.ckpt"))  # 0.9 GB a point at full size: removed once written
    assert json.loads((run / "evaluation.json").read_text())["test"]["auroc"]["estimate"] > 0.5


def test_fractions_that_round_to_the_same_patients_are_named(study):
    from medtl.transfer.arms import same_subsets

    config = load_arms_config(study / "study.yaml")
    # 14 training patients of one majority label: 5 % and 10 % both keep one patient
    assert same_subsets(config, [0.05, 0.1, 0.5, 1.0]) == [(0.05, 0.1, 1)]
    assert same_subsets(config, [0.5, 1.0]) == []


def test_study_reuses_only_points_of_the_same_config(study):
    """A changed arm's points are refused (named), moved aside with --overwrite, and only
    they are recomputed; arms.json records the study's config hash."""
    import torch
    from typer.testing import CliRunner

    from medtl.artifacts import StudyArms
    from medtl.cli import app

    torch.set_num_threads(1)
    runner = CliRunner()
    out = study / "guarded"
    args = ["study", str(study / "study.yaml"), "--out", str(out), "--resamples", "50"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "0 points reused, 6 recomputed" in first.output
    first_hash = StudyArms.read(out / "arms.json").config_hash
    assert first_hash is not None
    config = yaml.safe_load((study / "study.yaml").read_text())
    config["arms"]["hu_histogram"]["description"] = "HU histograms, 32 bins"
    (study / "changed.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    args[1] = str(study / "changed.yaml")
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    assert "2 of 6 points" in refused.output and "hu_histogram_f" in refused.output
    assert 'description: "" -> HU histograms, 32 bins' in refused.output
    moved = runner.invoke(app, [*args, "--overwrite"])
    assert moved.exit_code == 0, moved.output
    assert "4 points reused, 2 recomputed (old results moved to" in moved.output
    (aside,) = study.glob("guarded.replaced-*")
    assert {p.name for p in aside.iterdir()} == {"hu_histogram_f0.5_s0", "hu_histogram_f1_s0"}
    assert (
        StudyArms.read(out / "arms.json").config_hash != StudyArms.read(out / "arms.json").data_hash
    )
