"""Daemon benchmark: tar streaming throughput against GNU tar, and GET /runs latency.

Run by hand as root (``.venv/bin/python bench/api_load.py``). Starts a real ``minicon serve``
on loopback with a SQLite store, then:

- streams ``GET /runs/{id}/tar`` of a tree of 400 MB (an imported run whose includes name it),
  downloaded with curl (as users do) and with httpx (a Python client, slower itself), and
  compares with ``tar cf - DIR`` of the same tree read through a pipe, all from a warm page
  cache (goal: at least 0.8x GNU tar's throughput);
- fills the store with 10,000 runs and measures p50/p99 of ``GET /runs?limit=100`` with a
  keep-alive client (goal: p99 under 50 ms).

Appends a table to bench/RESULTS.md.
"""

from __future__ import annotations

import datetime
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from store.db import Store  # noqa: E402
from store.ingest import Recorder, start_run  # noqa: E402
from tracer.events import Event, Kind  # noqa: E402

TOKEN = "bench-token"


def make_tree(base: Path, megabytes: int) -> None:
    (base / "data").mkdir(parents=True)
    block = os.urandom(1 << 20)
    for i in range(megabytes // 10):
        with open(base / f"data/f{i:03}", "wb") as fh:
            for _ in range(10):
                fh.write(block)


def fill_runs(url: str, n: int) -> None:
    store = Store(url)
    rng = random.Random(7)
    for i in range(n):
        run_id = start_run(store, [b"bench", b"%d" % i], label=f"l{i % 20}")
        rec = Recorder(store, run_id)
        rec.record(Event(Kind.OPEN, b"/usr/lib/f%d" % rng.randrange(500), 0, 1) for _ in range(5))
        rec.finish(None, "completed")
    store.close()


def serve(tmp: Path, db: str, root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = 8790 + os.getpid() % 100
    env = {**os.environ, "MINICON_TOKEN": TOKEN, "MINICON_DB": db}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "minicon",
            "serve",
            "--port",
            str(port),
            "--allow-root",
            str(root),
            "--artifacts",
            str(tmp / "artifacts"),
        ],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the daemon did not start")


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="minicon-apibench-", dir="/var/tmp"))
    try:
        tree = tmp / "tree"
        make_tree(tree, 400)
        db = f"sqlite:///{tmp / 'api.db'}"
        fill_runs(db, 10_000)
        proc, url = serve(tmp, db, tree)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        try:
            with httpx.Client(base_url=url, headers=headers, timeout=300) as c:
                export = {
                    "format": "minicon-run",
                    "version": 1,
                    "run": {"argv": ["x"], "root": str(tree), "status": "completed"},
                }
                line = json.dumps(export).encode() + b"\n"
                run_id = c.post("/runs/import", content=line).json()["id"]
                for f in sorted(tree.rglob("f*")):  # warm the page cache for both
                    f.read_bytes()
                ours, ours_curl, gnu = [], [], []
                size = 0
                tar_url = f"{url}/runs/{run_id}/tar?include=/data"
                curl = ["curl", "-sSf", "-o", "/dev/null", "-H", f"Authorization: Bearer {TOKEN}"]
                for _ in range(5):
                    t0 = time.perf_counter()
                    size = 0
                    with c.stream("GET", f"/runs/{run_id}/tar", params={"include": "/data"}) as r:
                        for chunk in r.iter_bytes(1 << 20):
                            size += len(chunk)
                    ours.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()  # a client written in C, as users download
                    subprocess.run([*curl, tar_url], check=True)
                    ours_curl.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()  # read through a pipe, like the HTTP client
                    gnu_tar = subprocess.Popen(
                        ["tar", "cf", "-", "-C", str(tree), "."], stdout=subprocess.PIPE
                    )
                    assert gnu_tar.stdout is not None
                    while gnu_tar.stdout.read(1 << 20):
                        pass
                    gnu_tar.wait()
                    gnu.append(time.perf_counter() - t0)
                t_ours, t_curl, t_gnu = min(ours), min(ours_curl), min(gnu)
                lat = []
                for i in range(300):
                    t0 = time.perf_counter()
                    r = c.get("/runs", params={"limit": 100, "offset": (i * 97) % 9900})
                    lat.append(time.perf_counter() - t0)
                    assert r.status_code == 200 and len(r.json()["items"]) == 100
                lat.sort()
                p50 = statistics.median(lat) * 1000
                p99 = lat[int(len(lat) * 0.99) - 1] * 1000
        finally:
            proc.terminate()
            proc.wait()
        mb = size / 1e6
        text = "\n".join(
            [
                f"### {datetime.date.today()} — bench/api_load.py (best of 5; 300 requests)",
                "",
                "| tar of 400 MB: minicon serve, curl | the same, httpx | GNU tar cf - | ratio "
                "(curl) | ratio (httpx) | GET /runs?limit=100 of 10,000: p50 | p99 |",
                "|---|---|---|---|---|---|---|",
                f"| {t_curl:.2f} s ({mb / t_curl:.0f} MB/s) "
                f"| {t_ours:.2f} s ({mb / t_ours:.0f} MB/s) "
                f"| {t_gnu:.2f} s ({mb / t_gnu:.0f} MB/s) "
                f"| {t_gnu / t_curl:.2f}x | {t_gnu / t_ours:.2f}x | {p50:.1f} ms | {p99:.1f} ms |",
                "",
            ]
        )
        print(text)
        with open(HERE / "RESULTS.md", "a") as fh:
            fh.write("\n## bench/api_load.py — the daemon\n\n" + text + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
