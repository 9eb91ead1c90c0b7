"""The safetensors disk cache: exact round trips, no pickles, recovery from torn files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medtl.training.data import cached_dataset
from medtl.training.disk_cache import decode_sample, encode_sample


class Make:
    """A deterministic 'decode' that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, item: dict) -> dict:
        self.calls += 1
        i = item["i"]
        return {
            "image": torch.full((1, 4, 3), float(i), dtype=torch.float32),
            "mask": np.full((4, 3), i, dtype=np.uint8),
            "label": i % 2,
            "weight": 0.5 * i,
            "name": f"case-{i}",
            "flag": None,
        }


def test_encode_decode_round_trip_keeps_types_and_order() -> None:
    sample = Make()({"i": 3})
    tensors, meta = encode_sample(sample)
    back = decode_sample(tensors, meta)
    assert list(back) == list(sample)
    assert torch.equal(back["image"], sample["image"]) and back["image"].dtype == torch.float32
    assert back["mask"].dtype == torch.uint8 and back["mask"].shape == (4, 3)
    assert (back["label"], back["weight"], back["name"], back["flag"]) == (1, 1.5, "case-3", None)
    assert encode_sample([1, 2]) is None  # not a dict
    assert encode_sample({"x": {"nested": 1}}) is None
    assert encode_sample({"x": MetaTensor(torch.zeros(2))}) is None


def test_disk_cache_files_are_safetensors_and_reused(tmp_path) -> None:
    items = [{"i": i} for i in range(5)]
    make = Make()
    first = cached_dataset(items, make, None, cache="disk", cache_dir=tmp_path, cache_key="k")
    samples = [first[i] for i in range(5)]
    files = sorted(tmp_path.glob("*.safetensors"))
    assert make.calls == 5 and len(files) == 5
    assert not list(tmp_path.glob("*.pt"))  # nothing pickled
    for path in files:  # each file is a plain safetensors container
        assert int.from_bytes(path.read_bytes()[:8], "little") < path.stat().st_size
    again = Make()
    second = cached_dataset(items, again, None, cache="disk", cache_dir=tmp_path, cache_key="k")
    for i in range(5):
        got = second[i]
        assert torch.equal(got["image"], samples[i]["image"]) and got["name"] == f"case-{i}"
    assert again.calls == 0


def test_a_torn_cache_file_is_recomputed(tmp_path, caplog) -> None:
    items = [{"i": 1}]
    cached_dataset(items, Make(), None, cache="disk", cache_dir=tmp_path, cache_key="k")[0]
    (path,) = tmp_path.glob("*.safetensors")
    path.write_bytes(path.read_bytes()[:20])  # killed mid-write by some other tool
    make = Make()
    ds = cached_dataset(items, make, None, cache="disk", cache_dir=tmp_path, cache_key="k")
    with caplog.at_level("WARNING"):
        assert float(ds[0]["image"].max()) == 1.0
    assert make.calls == 1 and "recomputing" in caplog.text
    assert len(list(tmp_path.glob("*.safetensors"))) == 1


def test_samples_that_do_not_fit_fall_back_to_monai(tmp_path) -> None:
    def nested(item: dict) -> dict:
        return {"image": torch.ones(2), "extra": {"a": item["i"]}}

    ds = cached_dataset([{"i": 4}], nested, None, cache="disk", cache_dir=tmp_path, cache_key="n")
    assert ds[0]["extra"] == {"a": 4}
    assert len(list(tmp_path.glob("*.pt"))) == 1
    again = cached_dataset(
        [{"i": 4}], nested, None, cache="disk", cache_dir=tmp_path, cache_key="n"
    )
    assert again[0]["extra"] == {"a": 4}


@pytest.mark.parametrize("bad", [{"x": object()}, {1: torch.zeros(1)}])
def test_unsupported_values_are_not_encoded(bad) -> None:
    assert encode_sample(bad) is None
