"""Trace store benchmark: ingest throughput, merge time and database size.

Synthetic workload of issue 4: 10M events over 50k unique paths in 1,000 runs (each run draws
10k events, skewed, from a working set of 1,000 paths; a tenth of its lookups fail). Run by hand:

    .venv/bin/python bench/store_load.py                       # SQLite in a temp dir
    MINICON_TEST_PG_URL=$(bash scripts/postgres.sh) .venv/bin/python bench/store_load.py

Ingest is timed around ``Recorder.record`` + ``finish`` only (generating the events is not
counted). Merge is ``queries.merged`` of every run into one file set. Appends a table to
bench/RESULTS.md. ``BENCH_SCALE=0.1`` runs a tenth of it.
"""

from __future__ import annotations

import datetime
import os
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from sqlalchemy import create_engine, text  # noqa: E402

from store import queries  # noqa: E402
from store.db import Store  # noqa: E402
from store.ingest import Recorder, start_run  # noqa: E402
from tracer.events import Event, Kind, Process, RunResult  # noqa: E402

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
RUNS = max(1, int(1000 * SCALE))
EVENTS_PER_RUN = 10_000
UNIQUE_PATHS = 50_000
WORKING_SET = 1_000
KINDS = (Kind.OPEN,) * 6 + (Kind.STAT,) * 3 + (Kind.EXEC,)


def make_paths() -> list[bytes]:
    return [
        b"/usr/lib/python3/pkg%03d/sub%02d/module%05d.py" % (i // 500, i % 50, i)
        for i in range(UNIQUE_PATHS)
    ]


def run_events(rng: random.Random, paths: list[bytes]) -> list[Event]:
    working = rng.sample(paths, WORKING_SET)
    weights = [1.0 / (i + 1) for i in range(WORKING_SET)]  # a few paths are hot
    picks = rng.choices(range(WORKING_SET), weights, k=EVENTS_PER_RUN)
    events = []
    for n, i in enumerate(picks):
        kind = KINDS[i % len(KINDS)]
        err = 2 if kind == Kind.STAT and i % 10 == 0 else 0
        events.append(Event(kind, working[i], err, 1000 + n % 7, 0, n * 1e-4))
    return events


def measure(url: str) -> dict[str, float]:
    store = Store(url)
    rng = random.Random(42)
    paths = make_paths()
    ingest = 0.0
    total = 0
    result = RunResult(0, None, False, {1: Process(1, 0, (b"bench",), 0)})
    for r in range(RUNS):
        events = run_events(rng, paths)
        run_id = start_run(store, [b"bench", b"%d" % r], label=f"l{r % 10}")
        t0 = time.perf_counter()
        rec = Recorder(store, run_id)
        rec.record(events)
        rec.finish(result, "completed")
        ingest += time.perf_counter() - t0
        total += len(events)
    merges = []
    for _ in range(3):
        t0 = time.perf_counter()
        merged = queries.merged(store, None)
        merges.append(time.perf_counter() - t0)
    ids = [r.id for r in queries.list_runs(store)]
    t0 = time.perf_counter()
    by_ids = queries.merged(store, ids)
    merge_ids = time.perf_counter() - t0
    assert len(by_ids) == len(merged)
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM accesses")).scalar_one()
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")  # the WAL copied back
            size = os.path.getsize(engine.url.database or "")
            wal = (engine.url.database or "") + "-wal"
            size += os.path.getsize(wal) if os.path.exists(wal) else 0
        else:
            size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
    engine.dispose()
    store.close()
    return {
        "events": total,
        "ingest_s": ingest,
        "rate": total / ingest,
        "rows": rows,
        "merged": len(merged),
        "merge_s": min(merges),
        "merge_ids_s": merge_ids,
        "size_mb": size / 1e6,
        "bytes_per_row": size / rows,
    }


def main() -> None:
    targets = []
    with tempfile.TemporaryDirectory() as tmp:
        targets.append(("SQLite", f"sqlite:///{tmp}/bench.db"))
        pg = os.environ.get("MINICON_TEST_PG_URL")
        if pg:
            targets.append(("PostgreSQL", _fresh_pg(pg)))
        rows = []
        for name, url in targets:
            m = measure(url)
            print(name, m, flush=True)
            rows.append(
                f"| {name} | {m['events'] / 1e6:.1f}M in {RUNS} runs | {m['ingest_s']:.1f} s | "
                f"{m['rate'] / 1e3:.0f}k/s | {m['rows'] / 1e6:.2f}M | {m['merged']} | "
                f"{m['merge_s']:.2f} s | {m['merge_ids_s']:.2f} s | {m['size_mb']:.0f} MB "
                f"({m['bytes_per_row']:.0f} B/row) |"
            )
    text_ = "\n".join(
        [
            f"### {datetime.date.today()} — bench/store_load.py, {UNIQUE_PATHS} unique paths, "
            f"{EVENTS_PER_RUN} events per run from a working set of {WORKING_SET}",
            "",
            "| database | events | ingest | events/s | access rows | merged file set "
            "| merge all runs | merge by 1,000 ids | size |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    print(text_)
    with open(HERE / "RESULTS.md", "a") as fh:
        fh.write("\n" + text_ + "\n")


def _fresh_pg(base: str) -> str:
    from sqlalchemy.engine import make_url

    name = "minicon_bench"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(base).set(database=name).render_as_string(hide_password=False)


if __name__ == "__main__":
    main()
