"""Multi-class runs (CT organs): macro AUROC/accuracy with CIs, binary-only sections skipped."""

from __future__ import annotations

import numpy as np
import yaml

from medtl.artifacts import RunSummary
from medtl.data.manifest import Manifest, ManifestRecord
from medtl.reports.schema import NOT_APPLICABLE_MULTICLASS
from medtl.transfer.experiment import ExperimentConfig, write_predictions

LABELS = ["liver", "kidney", "spleen"]


def _fake_multiclass_run(root):
    """A run folder with 3-class logits (no training: predictions written directly)."""
    rng = np.random.default_rng(0)
    records, rows = [], []
    splits = ["train"] * 6 + ["val"] * 3 + ["calibration"] * 6 + ["test"] * 6
    for p, split in enumerate(splits):
        for k in range(3):
            label = (p + k) % 3
            index = len(records)
            records.append(
                ManifestRecord(
                    image=f"img/{index}.npy", label=label, patient_id=f"C{p:03d}", split=split
                )
            )
            if split != "train":
                logits = rng.normal(0, 1, 3)
                logits[label] += 2.0
                rows.append(
                    {
                        "split": split,
                        "index": index,
                        "patient_id": f"C{p:03d}",
                        "label": label,
                        **{f"logit_{j}": f"{v:.6g}" for j, v in enumerate(logits)},
                    }
                )
    dataset = root / "organs"
    Manifest(
        name="organs", task="ct_organ", label_names=LABELS, modality="CT", records=records
    ).save(dataset)
    run = root / "run"
    run.mkdir()
    config = ExperimentConfig.model_validate(
        {
            "name": "organs-full",
            "data": {"dataset": str(dataset), "modality": "ct", "spatial_size": [16, 16]},
            "model": {"backbone": "smallcnn"},
            "strategy": {"name": "full"},
        }
    )
    (run / "experiment.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    write_predictions(run / "predictions.csv", rows, 3)
    RunSummary(
        name="organs-full",
        strategy="full",
        num_outputs=3,
        label_names=LABELS,
        train_images=18,
        train_patients=6,
        data_seconds=0.1,
        train_seconds=1.0,
        total_seconds=1.2,
        model_config={"name": "smallcnn", "spatial_dims": 2, "num_outputs": 3},
        config_hash=config.config_hash(),
        data_hash="0123456789abcdef",
    ).write(run / "summary.json")
    return run


def test_multiclass_report_shows_macro_metrics_and_skips_binary_sections(tmp_path) -> None:
    from medtl.evaluation.run import evaluate_run
    from medtl.reports.builder import build_report_data
    from medtl.reports.card import build_card
    from medtl.reports.html import render_html

    run = _fake_multiclass_run(tmp_path)
    evaluate_run(run, n_resamples=50)
    data = build_report_data(run)
    assert data.task_type == "multiclass"
    names = [r.name for r in data.metrics.rows]
    assert names == ["Macro AUROC (one-vs-rest)", "Accuracy"]
    macro = data.metrics.rows[0].value
    assert macro.lower is not None and macro.lower <= macro.estimate <= macro.upper
    assert data.metrics.class_counts == {"liver": 6, "kidney": 6, "spleen": 6}
    assert [s.class_counts for s in data.data.splits][3] == {"liver": 6, "kidney": 6, "spleen": 6}
    for section in (data.operating_points, data.subgroups, data.failures):
        assert not section.applicable and section.note == NOT_APPLICABLE_MULTICLASS
    html = render_html(data)
    assert html.count(NOT_APPLICABLE_MULTICLASS) >= 4  # curves, points, subgroups, failures
    assert "Macro AUROC" in html
    status = {(i.guideline, i.item): i.status for i in data.checklist}
    assert status[("TRIPOD+AI", "15")] == "not applicable"
    card = build_card(run)
    assert card.operating_points == [] and card.metrics["macro_auroc"]["estimate"] == (
        macro.estimate
    )
