"""Where and with what a run was computed: versions, commit, device, precision, threads.

:func:`run_environment` fills the :class:`~medtl.artifacts.run.RunEnvironment` of a run
summary. Results of the same config can differ with the thread count (float sums in another
order: logits about 1e-3 apart between 1 and 2 threads), the CPU kernels torch dispatches to,
the precision and the package versions, so a run records all of them.
"""

from __future__ import annotations

import functools
import logging
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from medtl.artifacts.run import RunEnvironment

logger = logging.getLogger(__name__)

__all__ = ["PACKAGES", "git_state", "package_versions", "precision_name", "run_environment"]

#: distributions whose versions a run records (those installed).
PACKAGES = (
    "medtl",
    "torch",
    "monai",
    "numpy",
    "pydicom",
    "safetensors",
    "scikit-learn",
    "scipy",
    "pydantic",
    "nibabel",
    "pillow",
    "highdicom",
    "timm",
)


def package_versions() -> dict[str, str]:
    """Versions of Python and the installed :data:`PACKAGES`.

    Returns:
        ``{"python": "3.11.9", "medtl": ..., "torch": ..., ...}`` (absent packages left out).
    """
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name == "medtl":
                from medtl import __version__

                out[name] = __version__
    return out


@functools.cache
def git_state(root: Path | None = None) -> tuple[str | None, bool | None]:
    """The commit of a git checkout and whether its tracked files changed since.

    Args:
        root: the checkout's top folder (default: the one medtl is run from, when medtl is
            run from a checkout rather than installed).

    Returns:
        ``(commit, dirty)``; ``(None, None)`` outside a git checkout or without git (never
        an error).
    """
    root = root if root is not None else Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None, None

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(root), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None, None
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit, (bool(status) if status is not None else None)


def precision_name(dtype: torch.dtype | None) -> str:
    """``fp32``, ``bf16 autocast`` or ``fp16 autocast`` for an autocast dtype."""
    if dtype is None:
        return "fp32"
    return {torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}.get(
        dtype, f"{dtype} autocast"
    )


def run_environment(device: torch.device | str, amp: str, world_size: int = 1) -> RunEnvironment:
    """The environment of a run that trained on ``device`` with the config's ``amp``.

    Args:
        device: the device the model ran on.
        amp: the config's ``training.amp`` (resolved for ``device`` as the trainer does).
        world_size: processes that trained together.

    Returns:
        The :class:`~medtl.artifacts.run.RunEnvironment`.
    """
    from medtl.training.precision import resolve_amp

    device = torch.device(device)
    try:
        precision = precision_name(resolve_amp(amp, device))
    except ValueError:  # a setting the trainer would have refused: record it as given
        precision = amp
    name = None
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    commit, dirty = git_state()
    try:
        capability: str | None = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        capability = None
    return RunEnvironment(
        versions=package_versions(),
        platform=platform.platform(terse=True),
        git_commit=commit,
        git_dirty=dirty,
        device=str(device),
        device_name=name,
        precision=precision,
        threads=torch.get_num_threads(),
        cpu_capability=capability,
        world_size=max(1, int(world_size)),
    )
