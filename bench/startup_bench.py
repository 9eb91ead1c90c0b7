"""Benchmark: start-up time of the ``medtl`` command line.

Every command runs in a fresh process, so its start-up is paid on each call. Times the
wall clock of ``medtl --help`` and of light commands that need neither torch nor MONAI
(``models backbones``, ``models packages``, ``pacs status``: the last opens the review
store, so it pays for SQLAlchemy), the median of ``--runs`` calls each, side by side with
``python -c pass`` (the interpreter alone) in the same run. ``import torch`` is timed too,
as a reference for what a command that needs it pays on top.

Usage::

    .venv/bin/python bench/startup_bench.py [--runs 9] [--json OUT]

``MEDTL_HOME`` is a temporary folder (an empty registry and review store). ``--json OUT``
writes ``[{"name", "ours", "baseline", "ratio", "target", "unit"}, ...]`` rows for
bench/run_all.py. The target is the issue's: under 1 s on this machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: (row name, arguments after ``medtl``)
COMMANDS: list[tuple[str, list[str]]] = [
    ("medtl --help", ["--help"]),
    ("medtl models backbones", ["models", "backbones"]),
    ("medtl models packages", ["models", "packages"]),
    ("medtl pacs status", ["pacs", "status"]),
]
TARGET_S = 1.0


def medtl_command() -> list[str]:
    """The installed ``medtl`` console script beside this interpreter, else ``-m medtl.cli``."""
    script = Path(sys.executable).with_name("medtl")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "medtl.cli"]


def median_wall(cmd: list[str], runs: int, env: dict[str, str]) -> float:
    """Median wall-clock seconds of ``runs`` calls of ``cmd`` (after one unrecorded warm-up).

    Args:
        cmd: the command line.
        runs: timed calls.
        env: environment of the calls.

    Returns:
        The median in seconds.

    Raises:
        RuntimeError: the command failed (its last stderr line is in the message).
    """
    times = []
    for k in range(runs + 1):  # the first call warms the page cache and .pyc files
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {tail}")
        if k:
            times.append(elapsed)
    return statistics.median(times)


def cpu_model() -> str:
    """The CPU model from /proc/cpuinfo (empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=9, help="timed calls per command (median)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, MEDTL_HOME=str(Path(tmp) / "home"))
        env.pop("MEDTL_DATABASE_URL", None)  # the temporary SQLite store, never a real one
        baseline = median_wall([sys.executable, "-c", "pass"], args.runs, env)
        rows: list[dict[str, object]] = []
        for name, extra in COMMANDS:
            ours = median_wall([*medtl_command(), *extra], args.runs, env)
            rows.append(
                {
                    "name": f"start-up: {name} (vs python -c pass)",
                    "ours": ours,
                    "baseline": baseline,
                    "ratio": ours / baseline,
                    "target": f"ours < {TARGET_S:g} s",
                    "unit": "s",
                }
            )
        torch_s = median_wall([sys.executable, "-c", "import torch"], args.runs, env)
        rows.append(
            {
                "name": "start-up reference: python -c 'import torch' (vs python -c pass)",
                "ours": torch_s,
                "baseline": baseline,
                "ratio": torch_s / baseline,
                "unit": "s",
            }
        )
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores); median of {args.runs} runs")
    print(f"{'command':72s} {'ours s':>7s} {'python s':>9s} {'ratio':>6s}")
    for row in rows:
        print(f"{row['name']:72s} {row['ours']:7.3f} {row['baseline']:9.3f} {row['ratio']:6.1f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
