"""Run every benchmark in bench/ and write one table (Markdown + JSON).

Each row is a ratio measured side by side in the same run (ours vs a baseline on the same
input), with the machine described: CPU model, cores, GPU if any, torch and MONAI versions.

    .venv/bin/python bench/run_all.py [--quick] [--out bench/results]

Writes ``<out>.md`` and ``<out>.json``; the README shows the latest table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: (script, full arguments, quick arguments); a script may appear with several settings.
BENCHES: list[tuple[str, list[str], list[str]]] = [
    ("io_bench.py", ["--slices", "200"], ["--slices", "40", "--size", "256", "--repeat", "1"]),
    (
        "train_bench.py",
        # 5 alternations of 3 epochs: on 2 shared cores fewer steps gave ratios that
        # swung by +-0.15 between identical runs
        [
            "--size",
            "128",
            "--n-images",
            "128",
            "--repeats",
            "5",
            "--epochs",
            "3",
            "--only",
            "trainer",
            "bf16",
            "features",
        ],
        [
            "--n-images",
            "32",
            "--epochs",
            "1",
            "--repeats",
            "1",
            "--only",
            "trainer",
            "bf16",
            "features",
        ],
    ),
    # DICOM through the disk cache: one loader process and one compute thread, so that on a
    # 2-core machine loading overlaps compute instead of taking cycles from it (with two
    # compute threads the three processes share two cores and the ratio swung 0.78-1.08)
    (
        "train_bench.py",
        [
            "--size",
            "128",
            "--n-images",
            "128",
            "--repeats",
            "5",
            "--epochs",
            "3",
            "--only",
            "dicom",
            "--threads",
            "1",
            "--workers",
            "1",
        ],
        ["--n-images", "32", "--epochs", "1", "--repeats", "1", "--only", "dicom"],
    ),
    # the configured CXR model (configs/cxr_nodule.yaml) and a ResNet18 at 256 px
    ("infer_bench.py", [], ["--runs", "5"]),
    (
        "infer_bench.py",
        ["--backbone", "resnet18", "--input-size", "256"],
        ["--backbone", "resnet18", "--input-size", "256", "--runs", "5"],
    ),
    ("data_bench.py", [], ["--patients", "1", "--pairs", "4"]),
    # `medtl --help` and light commands, each a fresh process, vs `python -c pass`
    ("startup_bench.py", [], ["--runs", "3"]),
]


def machine() -> dict[str, str]:
    """CPU model, cores, GPU, torch and MONAI versions."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import monai
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "gpu": gpu,
        "torch": torch.__version__,
        "monai": monai.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def run_bench(script: str, args: list[str], timeout: int) -> tuple[list[dict], str]:
    """Run one script with ``--json``; return its rows and a status."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        env = dict(os.environ, MEDTL_HOME=str(Path(tmp) / "home"))
        cmd = [sys.executable, str(HERE / script), *args, "--json", str(out)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return [], f"timed out after {timeout} s"
        if not out.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return [], f"failed (exit {proc.returncode}): {' | '.join(tail)}"
        rows = json.loads(out.read_text(encoding="utf-8"))
        return rows, "ok" if proc.returncode == 0 else f"exit {proc.returncode}"


def target_met(row: dict) -> str:
    """``yes``/``no`` when the row's target can be checked, else empty.

    A numeric target means "ratio at least this"; a text target such as ``ratio < 2`` or
    ``ours < 1.5 s; ratio < 2`` is checked clause by clause.
    """
    target, ratio = row.get("target"), row.get("ratio")
    if target is None or ratio is None:
        return ""
    if isinstance(target, int | float):
        return "yes" if float(ratio) >= float(target) else "no"
    values = {"ratio": ratio, "ours": row.get("ours", row.get("value"))}
    verdicts = []
    for clause in str(target).split(";"):
        parts = clause.split()
        if parts and parts[0] in ("<", "<=", ">", ">="):
            parts = ["ratio", *parts]  # ">= 1.0" means the ratio
        if len(parts) < 3 or parts[0] not in values or parts[1] not in ("<", "<=", ">", ">="):
            return ""
        try:
            lhs, rhs = float(values[parts[0]]), float(parts[2])
        except (TypeError, ValueError):
            return ""
        ok = {"<": lhs < rhs, "<=": lhs <= rhs, ">": lhs > rhs, ">=": lhs >= rhs}[parts[1]]
        verdicts.append(ok)
    return "yes" if all(verdicts) else "no"


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value)


def to_markdown(result: dict) -> str:
    """The table as Markdown."""
    m = result["machine"]
    lines = [
        f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores), GPU: {m['gpu']}, "
        f"torch {m['torch']}, MONAI {m['monai']}.",
        "",
        "`met`: the ratio reaches the target. `status`: the benchmark script ran (`ok`).",
        "",
        "| benchmark | ours | baseline | ratio | target | met | unit | status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            (
                "| {name} | {ours} | {baseline} | {ratio} | {target} | {met} | {unit} | {status} |"
            ).format(
                name=row.get("name", ""),
                ours=_fmt(row.get("ours", row.get("value"))),
                baseline=_fmt(row.get("baseline")),
                ratio=_fmt(row.get("ratio")),
                target=_fmt(row.get("target")),
                met=target_met(row),
                unit=_fmt(row.get("unit")),
                status=row.get("status", ""),
            )
        )
    return "\n".join(lines) + "\n"


def kept_sections(path: Path) -> str:
    """The hand-written sections (from the first ``## `` heading on) of an existing table.

    The table at the top is generated; sections below it (the PACS and foundation
    benchmarks, written by their own scripts and notes) must survive a rerun.
    """
    if not path.is_file():
        return ""
    text = path.read_text(encoding="utf-8")
    start = text.find("\n## ")
    return "" if start < 0 else text[start:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--only", nargs="*", choices=sorted({b[0] for b in BENCHES}), default=None)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per script")
    args = parser.parse_args(argv)
    rows: list[dict] = []
    for script, full, quick in BENCHES:
        if args.only and script not in args.only:
            continue
        if not (HERE / script).is_file():
            rows.append({"name": script, "status": "missing"})
            continue
        print(f"running {script} ...", flush=True)
        bench_rows, status = run_bench(script, quick if args.quick else full, args.timeout)
        for row in bench_rows or [{"name": script}]:
            row["script"] = script
            row["status"] = status
            rows.append(row)
    result = {"machine": machine(), "quick": args.quick, "rows": rows}
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    markdown = to_markdown(result)
    md_path = args.out.with_suffix(".md")
    md_path.write_text(markdown + kept_sections(md_path), encoding="utf-8")
    print(markdown)
    return 0 if all(r.get("status") == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
