"""Benchmark: worklist page latency of the review store at 10k and 100k cases.

Fills a fresh database (SQLite file in a temporary folder, or ``--url`` for PostgreSQL)
with N cases in bulk: about 80 % with an AI result from one of three models, about half of
those read by one to three of eight readers (with revised reads), each case's stored
status computed from its reads exactly as the store does. Then times pages of 50 rows
through the public API (:meth:`ReviewStore.worklist`) for the queries the app makes:

* ``admin, all``: first page, every status;
* ``admin, awaiting``: first page of one status;
* ``admin, model``: one model's cases;
* ``admin, deep page``: a keyset page half-way down the list (``after=``);
* ``clinician queue``: a blinded clinician's "awaiting review, not read by me";
* ``clinician, agreed``: a blinded status filter that matches only the cases they read.

Side by side, at the smallest size only (it grows linearly), the previous implementation:
every case loaded with its images, results and reviews, status derived in Python, then cut
to 50 (``legacy``); the ratio shows what the stored, indexed status buys. Optionally the
review submission rate with 8 concurrent writers (``--writers``).

Usage::

    .venv/bin/python bench/store_bench.py                  # 10k and 100k cases
    .venv/bin/python bench/store_bench.py --sizes 2000 --repeats 20
    .venv/bin/python bench/store_bench.py --url postgresql+psycopg://...   # empty database
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PAGE = 50
MODELS = ("cxr-nodule", "ct-nodule", "mri-ct")
N_READERS = 8
PASSWORD = "bench passphrase for readers"


def _users() -> list[dict[str, Any]]:
    from argon2 import PasswordHasher

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    pw = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    names = [("admin", "admin")] + [(f"reader{i}", "clinician") for i in range(N_READERS)]
    return [
        dict(
            id=i + 1,
            username=name,
            password_hash=pw,
            role=role,
            active=True,
            created_at=t0,
            updated_at=t0,
        )
        for i, (name, role) in enumerate(names)
    ]


def _reads(rng: random.Random, k: int, at: datetime, first_id: int) -> list[dict[str, Any]]:
    """One to three readers' reviews of case ``k`` (a few revised), with IDs from ``first_id``."""
    rows = []
    for reader in rng.sample(range(2, N_READERS + 2), rng.randint(1, 3)):
        for _ in range(1 + (rng.random() < 0.1)):
            rows.append(
                dict(
                    id=first_id + len(rows),
                    case_pk=k,
                    prediction_pk=k,
                    reader_pk=reader,
                    created_at=at + timedelta(minutes=5),
                    decision=rng.choice(("agree", "agree", "disagree", "uncertain")),
                )
            )
    return rows


def _rows(n: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Rows of ``n`` cases, their images, AI results and reviews, with consistent status."""
    from medtl.review.status import status_of

    rng = random.Random(seed)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    out: dict[str, list[dict[str, Any]]] = {"cases": [], "images": [], "preds": [], "reviews": []}
    for k in range(1, n + 1):
        at = t0 + timedelta(seconds=30 * k)
        reads = []
        if rng.random() < 0.8:
            out["preds"].append(
                dict(
                    id=k,
                    case_pk=k,
                    model_name=rng.choice(MODELS),
                    model_version="1",
                    label="nodule",
                    probability=rng.random(),
                    created_at=at,
                )
            )
            if rng.random() < 0.5:
                reads = _reads(rng, k, at, len(out["reviews"]) + 1)
                out["reviews"] += reads
        latest = {r["reader_pk"]: r["decision"] for r in reads}  # later reads win
        has_pred = bool(out["preds"]) and out["preds"][-1]["case_pk"] == k
        out["cases"].append(
            dict(
                id=k,
                case_id=f"CASE-{k:010X}",
                created_at=at,
                modality="CR",
                status=status_of(has_pred, latest.values()),
            )
        )
        out["images"].append(
            dict(
                id=k,
                case_pk=k,
                relpath=f"CASE-{k:010X}/img-0.npz",
                kind="scan",
                sha256="0" * 64,
                n_bytes=1,
                modality="CR",
                created_at=at,
            )
        )
    return out


def _fill(store: Any, n: int, seed: int = 0) -> dict[str, Any]:
    """Insert ``n`` cases with results and reads in bulk; return the case IDs."""
    from sqlalchemy import insert

    from medtl.review.models import Case, Image, Prediction, Review, User

    rows = _rows(n, seed)
    tables = (
        (User, _users()),
        (Case, rows["cases"]),
        (Image, rows["images"]),
        (Prediction, rows["preds"]),
        (Review, rows["reviews"]),
    )

    def work(session: Any) -> None:
        for model, batch in tables:
            for i in range(0, len(batch), 5000):
                session.execute(insert(model), batch[i : i + 5000])

    store.db.write(work, what="bench fill")
    with store.db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # explicit IDs: move the sequences on
            for table in ("users", "cases", "images", "predictions", "reviews"):
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT MAX(id) FROM {table}))"
                )
        conn.exec_driver_sql("ANALYZE")
    return {
        "case_ids": [c["case_id"] for c in rows["cases"]],
        "predicted": [f"CASE-{p['case_pk']:010X}" for p in rows["preds"]],
        "reviews": len(rows["reviews"]),
    }


def _time(fn: Callable[[], Any], repeats: int) -> tuple[float, float, int]:
    """p50 and p95 in ms over ``repeats`` calls (after one warm-up), and the row count."""
    rows = len(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return statistics.median(times), p95, rows


def _legacy_page(store: Any, wanted: set[str]) -> list[Any]:
    """The previous worklist: load every case with its rows, derive status, cut to a page."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from medtl.review.models import Case, Review
    from medtl.review.status import case_status

    def read(session: Any) -> list[Any]:
        query = (
            select(Case)
            .options(
                selectinload(Case.images),
                selectinload(Case.predictions),
                selectinload(Case.reviews).selectinload(Review.reader),
            )
            .order_by(Case.created_at, Case.id)
        )
        out = []
        for case in session.scalars(query):
            if case_status(case) in wanted:
                out.append(case.case_id)
                if len(out) >= PAGE:
                    break
        return out

    return store.db.read(read)


def _writers(store: Any, case_ids: list[str], n_writers: int, per_writer: int) -> float:
    """Reviews per second with ``n_writers`` threads submitting through the API."""
    readers = [store.accounts.get_user(f"reader{i}") for i in range(n_writers)]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        rng = random.Random(i)
        try:
            for _ in range(per_writer):
                store.submit_review(readers[i], rng.choice(case_ids), "agree")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_writers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return n_writers * per_writer / elapsed


def bench_size(n: int, url: str | None, repeats: int, legacy: bool, writers: int) -> list[dict]:
    """Fill a store with ``n`` cases and time each query; return table rows."""
    from medtl.review.db import RetryPolicy
    from medtl.review.store import ReviewStore

    with tempfile.TemporaryDirectory() as tmp:
        db_url = url or f"sqlite:///{Path(tmp) / 'review.sqlite'}"
        store = ReviewStore.open(
            db_url, cases_dir=Path(tmp) / "cases", retry=RetryPolicy(attempts=20, backoff_s=0.01)
        )
        try:
            start = time.perf_counter()
            filled = _fill(store, n)
            fill_s = time.perf_counter() - start
            ids = filled["case_ids"]
            admin = store.accounts.get_user("admin")
            clin = store.accounts.get_user("reader0")
            queries: dict[str, Callable[[], Any]] = {
                "admin, all": lambda: store.worklist(admin, limit=PAGE),
                "admin, awaiting": lambda: store.worklist(
                    admin, status="awaiting_review", limit=PAGE
                ),
                "admin, model": lambda: store.worklist(admin, model=MODELS[1], limit=PAGE),
                "admin, deep page": lambda: store.worklist(
                    admin, limit=PAGE, after=ids[len(ids) // 2]
                ),
                "clinician queue": lambda: store.worklist(
                    clin, status="awaiting_review", not_reviewed_by=clin.username, limit=PAGE
                ),
                "clinician, agreed": lambda: store.worklist(clin, status="agreed", limit=PAGE),
            }
            rows = []
            for name, fn in queries.items():
                p50, p95, count = _time(fn, repeats)
                rows.append(dict(cases=n, query=name, p50_ms=p50, p95_ms=p95, rows=count))
            if legacy:
                p50, p95, count = _time(
                    lambda: _legacy_page(store, {"awaiting_review"}), max(3, repeats // 10)
                )
                ours = next(r for r in rows if r["query"] == "admin, awaiting")
                rows.append(
                    dict(
                        cases=n,
                        query="legacy, awaiting (before)",
                        p50_ms=p50,
                        p95_ms=p95,
                        rows=count,
                        note=f"{p50 / ours['p50_ms']:.0f}x the stored-status p50",
                    )
                )
            if writers:
                rate = _writers(store, filled["predicted"][:200], writers, 25)
                rows.append(
                    dict(
                        cases=n,
                        query=f"{writers} writers",
                        p50_ms=float("nan"),
                        p95_ms=float("nan"),
                        rows=writers * 25,
                        note=f"{rate:.0f} reviews/s",
                    )
                )
            rows[0]["note"] = f"filled in {fill_s:.1f} s ({filled['reviews']} reviews)"
        finally:
            store.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--url", help="an EMPTY database URL (default: temporary SQLite)")
    parser.add_argument("--no-legacy", action="store_true", help="skip the previous query")
    parser.add_argument("--writers", type=int, default=8, help="0 skips the writers test")
    args = parser.parse_args(argv)
    table = []
    for i, n in enumerate(sorted(args.sizes)):
        table += bench_size(
            n,
            args.url,
            args.repeats,
            legacy=i == 0 and not args.no_legacy,
            writers=args.writers if i == 0 else 0,
        )
    backend = "PostgreSQL" if args.url and args.url.startswith("postgres") else "SQLite"
    print(f"\nReview store worklist, pages of {PAGE} rows, {backend}, {args.repeats} runs each\n")
    print(f"| {'cases':>7} | {'query':<26} | {'p50 ms':>8} | {'p95 ms':>8} | {'rows':>4} | note")
    print(f"|{'-' * 9}|{'-' * 28}|{'-' * 10}|{'-' * 10}|{'-' * 6}|------")
    for r in table:
        print(
            f"| {r['cases']:>7} | {r['query']:<26} | {r['p50_ms']:>8.1f} | {r['p95_ms']:>8.1f}"
            f" | {r['rows']:>4} | {r.get('note', '')}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
