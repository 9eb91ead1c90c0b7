"""Fixtures: a tiny CR "bright square" model trained here, packaged with calibration,
operating points and a fitted domain guard; helpers that write real DICOM bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medtl.io.testing import SOP_CLASS, image_dataset, write
from medtl.models import CardOperatingPoint, ModelCard, create_backbone, save_package
from medtl.transfer.presets import (
    IntensitySpec,
    PreprocessingSpec,
    build_preprocessing,
    default_preprocessing,
)

SIZE = 64
PHI_NAME = "DOE^JANE"
PHI_ID = "MRN-4242-77"
PHI_BIRTH = "19610203"


def square_image(rng: np.random.Generator, positive: bool) -> tuple[np.ndarray, tuple | None]:
    """A 64x64 'radiograph': noisy background; positives get a bright square."""
    img = rng.normal(1000.0, 60.0, (SIZE, SIZE))
    box = None
    if positive:
        s = int(rng.integers(10, 15))
        y0, x0 = (int(v) for v in rng.integers(4, SIZE - s - 4, 2))
        img[y0 : y0 + s, x0 : x0 + s] += 600.0
        box = (y0, x0, s)
    return np.clip(img, 0, 4095).astype(np.float32), box


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    modality: str = "CR",
    body_part: str = "CHEST",
    spacing: float = 0.2,
) -> Path:
    """Write a 16-bit MONOCHROME2 DICOM file with PHI in the header."""
    ct = modality == "CT"
    ds = image_dataset(
        pixels.astype(np.uint16),
        modality=modality,
        sop_class_uid=SOP_CLASS["CT" if ct else "CR"],
        pixel_spacing=(spacing, spacing),
        bits_stored=16 if ct else 12,
        rescale=(1, -1024) if ct else None,
        patient={"PatientName": PHI_NAME, "PatientID": PHI_ID, "PatientBirthDate": PHI_BIRTH},
        BodyPartExamined=body_part,
    )
    return write(ds, path)


def _preprocess_batch(spec: PreprocessingSpec, images: list[np.ndarray]) -> torch.Tensor:
    transform = build_preprocessing(spec)
    return torch.stack([transform(img[None]) for img in images])


@pytest.fixture(scope="session")
def square_package(tmp_path_factory) -> Path:
    """Train a tiny smallcnn to find bright squares (a few seconds on one core)."""
    from medtl.evaluation.calibration import TemperatureScaler
    from medtl.evaluation.operating_points import operating_points
    from medtl.inference.domain import fit_domain_guard

    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    # A fixed intensity window (not the CXR percentile preset): with percentile scaling the
    # background contrast alone separates the classes, and the model need not look at the
    # square at all.
    spec = default_preprocessing("cxr", [SIZE, SIZE]).model_copy(
        update={"intensity": IntensitySpec(kind="window", lower=600.0, upper=2000.0)}
    )

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = [i % 2 for i in range(n)]
        images = [square_image(rng, bool(y))[0] for y in labels]
        return _preprocess_batch(spec, images), torch.tensor(labels, dtype=torch.float32)

    x_train, y_train = make(128)
    x_val, y_val = make(40)
    x_cal, y_cal = make(40)
    model = create_backbone(
        "smallcnn", 2, 1, 1, options={"widths": [8, 16]}, dropout=0.0, labels=[]
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for _epoch in range(12):
        model.train()
        perm = torch.randperm(len(x_train))
        for i in range(0, len(perm), 16):
            idx = perm[i : i + 16]
            opt.zero_grad()
            loss = loss_fn(model(x_train[idx])[:, 0], y_train[idx])
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        cal_logits = model(x_cal)[:, 0].double().numpy()
        val_acc = float(((model(x_val)[:, 0] > 0).float() == y_val).float().mean())
        train_feats = model.pool_features(x_train).double().numpy()
        val_feats = model.pool_features(x_val).double().numpy()
    assert val_acc >= 0.9, f"the tiny square model did not learn (val accuracy {val_acc})"
    scaler = TemperatureScaler().fit(cal_logits, y_cal.numpy())
    points = operating_points(y_cal.numpy(), scaler.transform(cal_logits))
    card = ModelCard(
        name="squares",
        version="1.0.0",
        preprocessing=spec.model_dump(),
        labels=["no square", "square"],
        calibration=scaler.to_dict(),
        operating_points=[CardOperatingPoint.model_validate(p.to_dict()) for p in points.values()],
        target_domain="CR chest (synthetic squares)",
        target_task="square yes/no",
    )
    folder = save_package(model, card, tmp_path_factory.mktemp("pkg") / "squares")
    fit_domain_guard(train_feats, val_feats, modality_family="cxr", body_parts=["CHEST"]).save(
        folder
    )
    return folder


@pytest.fixture(scope="session")
def square_dicoms(tmp_path_factory) -> dict[str, object]:
    """In-distribution DICOM files: a positive (with its square) and a negative."""
    root = tmp_path_factory.mktemp("dicoms")
    rng = np.random.default_rng(123)
    pos, box = square_image(rng, True)
    neg, _ = square_image(rng, False)
    return {
        "positive": write_dicom(root / "pos.dcm", pos),
        "box": box,
        "negative": write_dicom(root / "neg.dcm", neg),
    }
