"""Grouped batches keep twins together, replay per epoch and cover every image once."""

from __future__ import annotations

from medtl.data.datasets import GroupedBatchSampler, group_positions
from medtl.data.manifest import ManifestRecord


def _records() -> list[ManifestRecord]:
    out = []
    for pair in range(10):
        for label in (0, 1):
            out.append(
                ManifestRecord(
                    image=f"i{pair}_{label}.dcm",
                    label=label,
                    patient_id=f"P{pair // 3}",
                    split="train",
                    attributes={"twin_pair": f"T{pair}"},
                )
            )
    out.append(ManifestRecord(image="solo.dcm", label=0, patient_id="P9", split="train"))
    return out


def test_groups_stay_together_and_epochs_replay() -> None:
    groups = group_positions(_records(), "twin_pair")
    assert len(groups) == 11 and sorted(len(g) for g in groups) == [1] + [2] * 10
    sampler = GroupedBatchSampler(groups, batch_size=4, seed=3)
    epoch0 = list(sampler)
    assert sorted(i for b in epoch0 for i in b) == list(range(21))  # each image once
    for batch in epoch0:
        for group in groups:
            inside = [i in batch for i in group]
            assert all(inside) or not any(inside)  # a twin pair is never split
    assert list(sampler) == epoch0  # same epoch, same order
    sampler.set_epoch(1)
    assert list(sampler) != epoch0
    assert len(sampler) == len(epoch0)
