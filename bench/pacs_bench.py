"""Benchmark: PACS studies per hour, from C-STORE to the SR stored in Orthanc.

A real Orthanc (:mod:`medtl.pacs.testing`, the server the PACS tests start) holds fresh
synthetic studies (DICOM written with pydicom: a CR chest radiograph, or a CT series of 100
slices). At time zero Orthanc sends them by C-STORE (its REST ``/modalities/medtl/store``,
as a PACS routing rule would) to medtl's listener (:class:`medtl.pacs.Listener` with
``queue=True``, in this process). The listener de-identifies each instance, closes the series
after ``quiet_seconds`` without news, and queues it; 1 or 2 worker processes (this script
with ``--worker``: :class:`medtl.pacs.jobs.Worker` followed by
:func:`medtl.pacs.push.push_case`, with ``push_unverified`` since no clinician is in the loop)
analyse it and store the SR (TID 1500) back into the original study over STOW-RS. A study is
done when its push is recorded ``done`` (after Orthanc answered the STOW-RS); the SRs are
counted in Orthanc at the end.

Two measurements per study type:

* **burst**: N studies sent at once, with 1 and with 2 workers: studies per hour
  (N / time until the last SR is stored) and p50/p95 latency (queueing included);
* **one at a time**: studies sent one after another on an idle system (1 worker): p50/p95
  end-to-end latency, side by side with a bare prediction on the same files: ``medtl
  predict PACKAGE FOLDER`` as a command (a cold process: interpreter, imports, model load)
  and the same ``load_scan`` + ``Predictor.predict`` in a warm process (what a worker does
  per study). Ratio = one-at-a-time p50 / bare p50 (aim: at most 1.5x).

The latency floor includes the listener's ``quiet_seconds`` (how long it waits to know a
series is complete), printed with the results; ``--quiet`` sets it.

Usage::

    nice -n 10 .venv/bin/python bench/pacs_bench.py                 # defaults: a few minutes
    .venv/bin/python bench/pacs_bench.py --burst 8 --sequential 5 --quiet 0.5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CT_SLICES = 100


# --- studies ------------------------------------------------------------------------------
def cr_study(seed: int) -> list[Any]:
    """One CR chest radiograph (256 x 256, 12 bit) in a new study."""
    from pydicom.uid import generate_uid

    from medtl.io.testing import chest_pixels, radiograph_dataset

    ds = radiograph_dataset(chest_pixels(256, seed=seed), study_uid=generate_uid())
    ds.AccessionNumber = f"BENCH{seed:05d}"
    return [ds]


def ct_study(seed: int, n: int = CT_SLICES) -> list[Any]:
    """A CT series of ``n`` axial 64 x 64 slices (1.5 mm apart) in a new study."""
    import numpy as np
    from pydicom.uid import generate_uid

    from medtl.io.testing import AXIAL, image_dataset

    rng = np.random.default_rng(seed)
    volume = rng.normal(1000, 60, (n, 64, 64)).astype(np.int16)
    volume[n // 3 : n // 2, 20:40, 20:40] += 400
    study, series = generate_uid(), generate_uid()
    out = []
    for k in range(n):
        ds = image_dataset(
            volume[k],
            modality="CT",
            rescale=(1.0, -1024.0),
            pixel_spacing=(0.7, 0.7),
            position=(0.0, 0.0, 1.5 * k),
            orientation=AXIAL,
            slice_thickness=1.5,
            study_uid=study,
            series_uid=series,
            instance_number=k + 1,
            BodyPartExamined="CHEST",
        )
        ds.AccessionNumber = f"BENCH{seed:05d}"
        out.append(ds)
    return out


MAKERS: dict[str, Callable[[int], list[Any]]] = {"CR": cr_study, "CT": ct_study}


# --- worker process -----------------------------------------------------------------------
def worker_main(models: list[str], ready: Path, stop: Path) -> int:
    """``--worker``: claim jobs, analyse, push the SR; until ``stop`` exists."""
    from medtl.pacs.ingest import get_predictor
    from medtl.pacs.jobs import Worker, job_queue
    from medtl.pacs.push import push_case
    from medtl.pacs.settings import load_pacs_settings
    from medtl.review import ReviewStore

    store = ReviewStore.open()
    settings = load_pacs_settings()
    for model in models:  # steady state: a running worker has its models loaded
        get_predictor(model)
    worker = Worker(store, settings, poll_s=0.05)
    queue = job_queue(store)
    ready.write_text("ok")
    while not stop.exists():
        job = queue.claim(worker.worker_id, worker.lease_s)
        if job is None:
            time.sleep(0.05)
            continue
        done = worker.run_one(job)
        if done.status == "done" and done.case_id:
            push_case(store, settings, done.case_id)
    store.close()
    return 0


# --- the bench ----------------------------------------------------------------------------
@dataclass
class Bench:
    """Orthanc, the listener, the store and the environment of one bench run."""

    root: Path
    quiet_s: float
    env: dict[str, str]
    models: dict[str, str]
    orthanc: Any = None
    listener: Any = None
    store: Any = None

    def start(self) -> None:
        from medtl.pacs.listener import Listener
        from medtl.pacs.settings import load_pacs_settings
        from medtl.pacs.testing import OrthancServer
        from medtl.review import ReviewStore

        self.orthanc = OrthancServer(self.root / "orthanc")
        self.orthanc.start()
        secret = self.root / "pacs_password"
        from medtl.pacs.testing import PACS_AET, PASSWORD

        secret.write_text(PASSWORD + "\n")
        home = self.root / "home"
        home.mkdir()
        routes = "".join(
            f'\n[[pacs.routes]]\nmodality = "{m}"\nmodel = "{p}"\n' for m, p in self.models.items()
        )
        (home / "app.toml").write_text(f"[pacs]\nquiet_seconds = {self.quiet_s}\n{routes}")
        self.env.update(
            self.orthanc.env(),
            MEDTL_HOME=str(home),
            MEDTL_PACS_PASSWORD_FILE=str(secret),
            MEDTL_PACS_PUSH_UNVERIFIED="true",
            MEDTL_LISTEN_PORT=str(self.orthanc.medtl_port),
            MEDTL_LISTEN_ALLOWED_AETS=PACS_AET,
        )
        self.env.pop("MEDTL_DATABASE_URL", None)
        os.environ.update(self.env)
        self.store = ReviewStore.open()
        self.listener = Listener(self.store, load_pacs_settings(), queue=True, host="127.0.0.1")
        self.listener.start()

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.stop()
        if self.store is not None:
            self.store.close()
        if self.orthanc is not None:
            self.orthanc.stop()

    def upload(self, kind: str, n: int, seed0: int) -> list[tuple[str, list[Any]]]:
        """``n`` fresh studies stored in Orthanc: (Orthanc study ID, datasets) each."""
        out = []
        for i in range(n):
            datasets = MAKERS[kind](seed0 + i)
            for ds in datasets:
                self.orthanc.upload(ds)
            out.append((self.orthanc.study_id(str(datasets[0].StudyInstanceUID)), datasets))
        return out

    def workers(self, k: int) -> list[subprocess.Popen[bytes]]:
        """Start ``k`` worker processes and wait until each has its models loaded."""
        procs = []
        stop = self.root / "stop"
        stop.unlink(missing_ok=True)
        for i in range(k):
            ready = self.root / f"ready-{i}"
            ready.unlink(missing_ok=True)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(ready)]
            cmd += ["--stop", str(stop), *self.models.values()]
            log = (self.root / f"worker-{i}.log").open("ab")
            procs.append(subprocess.Popen(cmd, env=self.env, stdout=log, stderr=log))
        deadline = time.monotonic() + 300
        while not all((self.root / f"ready-{i}").exists() for i in range(k)):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"a worker did not start; see {self.root}/worker-*.log")
            time.sleep(0.1)
        return procs

    def stop_workers(self, procs: list[subprocess.Popen[bytes]]) -> None:
        (self.root / "stop").write_text("stop")
        for p in procs:
            p.wait(timeout=120)

    def done_times(self) -> dict[int, float]:
        """Push ID -> when its SR was stored (epoch seconds), for pushes done so far."""
        from medtl.pacs.records import list_pushes

        return {
            r.prediction_id: r.updated_at.timestamp() for r in list_pushes(self.store.db, "done")
        }

    def wait_done(self, before: set[int], n: int, timeout: float) -> list[float]:
        """Completion times of ``n`` new pushes (not in ``before``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = {k: t for k, t in self.done_times().items() if k not in before}
            if len(new) >= n:
                return sorted(new.values())
            failed = self.listener.failures
            if failed:
                raise RuntimeError(f"listener failures: {failed}")
            time.sleep(0.05)
        raise RuntimeError(f"only some of {n} SRs were stored within {timeout:.0f} s")

    def burst(self, kind: str, n: int, k: int, seed0: int) -> dict[str, Any]:
        """``n`` studies sent at once with ``k`` workers."""
        studies = self.upload(kind, n, seed0)
        procs = self.workers(k)
        try:
            before = set(self.done_times())
            t0 = time.time()
            for orthanc_id, _ in studies:
                self.orthanc.send_to_medtl([orthanc_id], synchronous=False)
            done = self.wait_done(before, n, timeout=120 + 60 * n)
        finally:
            self.stop_workers(procs)
        latency = [t - t0 for t in done]
        return {
            "kind": kind,
            "workers": k,
            "n": n,
            "per_hour": 3600 * n / max(latency),
            "p50": statistics.median(latency),
            "p95": _p95(latency),
        }

    def stages(self, t0: float) -> tuple[float, float, float]:
        """Where the last study's time went, from the store's own timestamps: C-STORE and
        the quiet wait (until the job is queued), queue and analysis (until the job is done),
        and the SR push (until Orthanc answered the STOW-RS)."""
        from sqlalchemy import select

        from medtl.pacs.records import pushes_table as p
        from medtl.review.jobs import jobs_table as j

        def read(session: Any) -> Any:
            job = session.execute(select(j).order_by(j.c.id.desc()).limit(1)).one()
            push = session.execute(select(p).where(p.c.case_id == job.case_id)).one()
            return job, push

        job, push = self.store.db.read(read)
        queued, analysed = job.created_at.timestamp(), job.updated_at.timestamp()
        return queued - t0, analysed - queued, push.updated_at.timestamp() - analysed

    def one_at_a_time(self, kind: str, n: int, seed0: int) -> tuple[list[float], list[Any], Any]:
        """End-to-end latency of ``n`` studies sent one after another (1 worker), the
        datasets of the first, and the median time of each stage."""
        studies = self.upload(kind, n, seed0)
        procs = self.workers(1)
        latency, stages = [], []
        try:
            for orthanc_id, _ in studies:
                before = set(self.done_times())
                t0 = time.time()
                self.orthanc.send_to_medtl([orthanc_id], synchronous=False)
                (t1,) = self.wait_done(before, 1, timeout=300)
                latency.append(t1 - t0)
                stages.append(self.stages(t0))
        finally:
            self.stop_workers(procs)
        return latency, studies[0][1], [statistics.median(s) for s in zip(*stages, strict=True)]

    def sr_count(self) -> int:
        """SR series in Orthanc (one per pushed study)."""
        found = self.orthanc.rest(
            "POST", "/tools/find", {"Level": "Series", "Query": {"Modality": "SR"}}
        )
        return len(found)


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def bare_predict(package: str, datasets: list[Any], folder: Path, repeats: int) -> dict[str, float]:
    """``medtl predict`` (cold process) and warm ``load_scan`` + ``predict`` on the files."""
    from medtl.inference import Predictor
    from medtl.io import load_scan
    from medtl.io.testing import write

    folder.mkdir(parents=True)
    for i, ds in enumerate(datasets):
        write(ds, folder / f"{i:04d}.dcm")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDTL_PACS")}
    cold = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "medtl.cli", "predict", package, str(folder)],
            env=env,
            check=True,
            capture_output=True,
        )
        cold.append(time.perf_counter() - t)
    predictor = Predictor.from_package(package)
    predictor.predict(load_scan(folder))  # warm-up
    warm = []
    for _ in range(max(5, repeats)):
        t = time.perf_counter()
        predictor.predict(load_scan(folder))
        warm.append(time.perf_counter() - t)
    return {"cold": statistics.median(cold), "warm": statistics.median(warm)}


def run(args: argparse.Namespace) -> int:
    from medtl.pacs.testing import orthanc_available, tiny_cr_package, tiny_ct_package

    if not orthanc_available():
        print(
            "Orthanc and its DICOMweb plugin are needed: apt-get install orthanc orthanc-dicomweb"
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="pacs-bench-") as tmp:
        root = Path(tmp)
        packages = root / "packages"
        models = {
            "CR": str(tiny_cr_package(packages)),
            "CT": str(tiny_ct_package(packages, size=args.ct_size)),
        }
        bench = Bench(root, args.quiet, dict(os.environ), models)
        bursts, sequential = [], {}
        try:
            bench.start()
            seed = 0
            for kind in args.kinds:
                n_seq = args.sequential if kind == "CR" else max(2, args.sequential // 2)
                latency, datasets, stages = bench.one_at_a_time(kind, n_seq, seed)
                seed += n_seq
                bare = bare_predict(models[kind], datasets, root / f"files-{kind}", args.repeats)
                sequential[kind] = (latency, bare, stages)
                for k in (1, 2):
                    n = args.burst if kind == "CR" else max(2, args.burst // 2)
                    bursts.append(bench.burst(kind, n, k, seed))
                    seed += n
            n_sr = bench.sr_count()
        finally:
            bench.stop()
    report(args, bursts, sequential, n_sr)
    return 0


def report(args, bursts, sequential, n_sr: int) -> None:  # type: ignore[no-untyped-def]
    """Print the two tables (Markdown)."""
    sent = sum(b["n"] for b in bursts) + sum(len(v[0]) for v in sequential.values())
    load = os.getloadavg()[0]
    print(
        f"\nPACS round trip: C-STORE from Orthanc to the SR stored back (quiet_seconds "
        f"{args.quiet}, CT {CT_SLICES} slices 64x64, tiny models; CT input {args.ct_size}^3; "
        f"{os.cpu_count()} CPUs, load average {load:.1f} at the end)"
    )
    print(f"SRs found in Orthanc afterwards: {n_sr} of {sent} studies sent\n")
    print("| study | workers | studies (burst) | studies/hour | p50 s | p95 s |")
    print("|---|---:|---:|---:|---:|---:|")
    for b in bursts:
        print(
            f"| {b['kind']} | {b['workers']} | {b['n']} | {b['per_hour']:.0f} | "
            f"{b['p50']:.2f} | {b['p95']:.2f} |"
        )
    print("\nOne study at a time (1 worker, idle system) vs a bare prediction on the same files")
    print(
        "\n| study | n | p50 s | p95 s | `medtl predict` s | warm predict s | "
        "ratio vs `medtl predict` | ratio vs warm | p50 minus quiet_seconds, vs warm |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind, (lat, bare, _) in sequential.items():
        p50 = statistics.median(lat)
        print(
            f"| {kind} | {len(lat)} | {p50:.2f} | {_p95(lat):.2f} | {bare['cold']:.2f} | "
            f"{bare['warm']:.3f} | {p50 / bare['cold']:.2f}x | {p50 / bare['warm']:.1f}x | "
            f"{(p50 - args.quiet) / bare['warm']:.1f}x |"
        )
    print("\nWhere the time goes (one at a time, medians, seconds)\n")
    print(
        "| study | C-STORE + quiet wait | queue + analysis | SR push (re-read headers, STOW-RS) |"
    )
    print("|---|---:|---:|---:|")
    for kind, (_, _, st) in sequential.items():
        print(f"| {kind} | {st[0]:.2f} | {st[1]:.2f} | {st[2]:.2f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=["CR", "CT"], choices=sorted(MAKERS))
    parser.add_argument("--burst", type=int, default=6, help="CR studies per burst (CT: half)")
    parser.add_argument("--sequential", type=int, default=4, help="CR studies one at a time")
    parser.add_argument("--repeats", type=int, default=3, help="runs of `medtl predict`")
    parser.add_argument("--quiet", type=float, default=1.0, help="listener quiet_seconds")
    parser.add_argument("--ct-size", type=int, default=32, help="CT model input edge")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--stop", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("models", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        return worker_main(args.models, args.worker, args.stop)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
