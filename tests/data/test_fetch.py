"""Public source fetch: pinned hashes, provenance, cache, corruption, local wheels, offline."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from medtl.data.fetch import (
    PROVENANCE_FILENAME,
    SourceFetchError,
    fetch_sources,
    require_source,
    sha256_file,
    source_path,
    verify_source,
)
from medtl.data.sources import SOURCES, get_source


def _make_wheel(folder: Path, source_dir: Path, name: str, tamper: str | None = None) -> Path:
    """Pack the verified files of a source back into a wheel with its real member names."""
    spec = get_source(name)
    wheel = folder / f"{spec.wheel_prefix}py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for m in spec.members:
            data = (source_dir / m.filename).read_bytes()
            if m.filename == tamper:
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
            zf.writestr(m.member, data)
        zf.writestr(spec.licence_member, "licence text")
    return wheel


def test_fetched_sources_match_their_pins_and_have_provenance(
    fetched_sources: dict[str, Path],
) -> None:
    assert set(fetched_sources) == set(SOURCES)
    for name, folder in fetched_sources.items():
        spec = get_source(name)
        assert verify_source(name, folder) == []
        for m in spec.members:
            assert sha256_file(folder / m.filename) == m.sha256
        prov = json.loads((folder / PROVENANCE_FILENAME).read_text())
        assert prov["package"] == spec.package and prov["version"] == spec.version
        assert prov["licence"] == spec.licence
        assert [f["sha256"] for f in prov["files"]] == [m.sha256 for m in spec.members]
        assert len(prov["wheel_sha256"]) == 64
        assert (folder / "LICENSE").stat().st_size > 100
    cites = " ".join(get_source(n).citation for n in SOURCES)
    assert "Wasserthal" in cites and "Fonov" in cites


def test_second_fetch_uses_the_cache(
    sources_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDTL_HOME", str(sources_home))
    folder = source_path("mri_mni152")
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    empty = tmp_path / "no_wheels"
    empty.mkdir()
    # nothing to download or extract: a folder without wheels is never consulted
    assert fetch_sources(["mri_mni152"], wheel_dir=empty) == {"mri_mni152": folder}
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


@pytest.fixture
def private_home(
    fetched_sources: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A MEDTL_HOME of this test with a copy of the verified MRI source."""
    home = tmp_path / "home"
    target = home / "data" / "sources" / "mri_mni152"
    shutil.copytree(fetched_sources["mri_mni152"], target)
    monkeypatch.setenv("MEDTL_HOME", str(home))
    return target


def test_corrupted_cache_file_is_detected_and_refetched_from_a_local_wheel(
    private_home: Path, fetched_sources: dict[str, Path], tmp_path: Path
) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _make_wheel(wheels, fetched_sources["mri_mni152"], "mri_mni152")
    gm = private_home / "gm.nii.gz"
    good = gm.read_bytes()
    gm.write_bytes(good[:1000])  # truncated
    assert verify_source("mri_mni152")[0].startswith("gm.nii.gz: SHA-256 mismatch")
    with pytest.raises(SourceFetchError, match="medtl data fetch"):
        require_source("mri_mni152")
    fetch_sources(["mri_mni152"], wheel_dir=wheels)
    assert gm.read_bytes() == good
    assert verify_source("mri_mni152") == []


def test_a_tampered_wheel_is_refused(
    private_home: Path, fetched_sources: dict[str, Path], tmp_path: Path
) -> None:
    wheel = _make_wheel(tmp_path, fetched_sources["mri_mni152"], "mri_mni152", tamper="t1.nii.gz")
    with pytest.raises(SourceFetchError, match="does not match its pinned SHA-256"):
        fetch_sources(["mri_mni152"], force=True, wheel_dir=wheel)
    assert not (private_home / "t1.nii.gz.part").exists()


def test_missing_local_wheel_reports_what_to_fetch_by_hand(
    private_home: Path, tmp_path: Path
) -> None:
    (private_home / "wm.nii.gz").unlink()
    with pytest.raises(SourceFetchError) as info:
        fetch_sources(["mri_mni152"], wheel_dir=tmp_path)
    message = str(info.value)
    assert "pip download --no-deps --only-binary=:all: nilearn==0.14.1" in message
    assert "medtl data fetch --from-wheel" in message


def test_offline_download_fails_with_instructions(
    private_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # no index and no find-links: pip cannot reach any package source
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.delenv("MEDTL_WHEEL_DIR", raising=False)
    (private_home / "wm.nii.gz").unlink()
    with pytest.raises(SourceFetchError, match=r"Could not download nilearn==0\.14\.1") as info:
        fetch_sources(["mri_mni152"])
    assert "--from-wheel" in str(info.value)


def test_unknown_source_name() -> None:
    with pytest.raises(KeyError, match="known: ct_chest, mri_mni152"):
        get_source("brain_ct")
