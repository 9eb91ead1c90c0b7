"""``collate``: torch's collate for plain samples, MONAI's for MetaTensors and patch lists."""

from __future__ import annotations

import torch
from monai.data import MetaTensor

from medtl.training.data import collate


def test_plain_tensors_collate_like_torch() -> None:
    batch = [(torch.full((1, 4, 4), float(i)), i) for i in range(3)]
    x, y = collate(batch)
    assert type(x) is torch.Tensor and x.shape == (3, 1, 4, 4)
    assert y.tolist() == [0, 1, 2]
    d = collate([{"image": torch.zeros(2), "label": 1, "id": "a"}] * 2)
    assert d["image"].shape == (2, 2) and d["label"].tolist() == [1, 1] and d["id"] == ["a", "a"]


def test_metatensors_keep_their_metadata() -> None:
    affine = torch.diag(torch.tensor([2.0, 2.0, 1.0]))
    batch = [(MetaTensor(torch.zeros(1, 4, 4), affine=affine), 0) for _ in range(2)]
    x, _ = collate(batch)
    assert isinstance(x, MetaTensor)
    assert torch.allclose(x.affine[0].float(), affine)


def test_patch_lists_are_flattened() -> None:
    sample = [{"image": torch.zeros(1, 2, 2)}, {"image": torch.ones(1, 2, 2)}]
    out = collate([sample, sample])
    assert out["image"].shape == (4, 1, 2, 2)
    assert out["image"][:, 0, 0, 0].tolist() == [0.0, 1.0, 0.0, 1.0]
