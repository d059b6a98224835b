"""Tracing overhead: untraced vs ``strace --seccomp-bpf`` vs minicon's ptrace backend.

The three workloads of ``shared/notes/tracing.md``. Run by hand as root
(``.venv/bin/python bench/trace_overhead.py``); prints a markdown table of medians and ratios to
the untraced run measured in the same session, and appends it to ``bench/RESULTS.md``.
The backend here only collects events in memory (the trace store does not exist yet).
"""

from __future__ import annotations

import datetime
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
WORKLOADS = {
    "find /usr -name nothing": ["find", "/usr", "-name", "nothing"],
    "python3 imports": ["/usr/bin/python3", "-c", "import json, ssl, email, http.client, sqlite3"],
    "200 x ls /usr/bin": ["sh", "-c", "for i in $(seq 200); do ls /usr/bin >/dev/null; done"],
}
OURS = (
    "import sys\n"
    "from tracer.ptrace_backend import Options, PtraceBackend\n"
    "b = PtraceBackend(Options(sys.argv[1:]))\n"
    "paths = {(e.kind, e.path, e.errno) for e in b.events()}\n"
    "print(len(paths))\n"
)


def median_time(argv: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    if shutil.which("strace") is None:
        sys.exit("strace is not installed")
    strace = ["strace", "-f", "--seccomp-bpf", "-e", "trace=%file,%process", "-o", "/dev/null"]
    ours = [sys.executable, "-c", OURS]
    env_root = str(HERE.parent)
    os.environ["PYTHONPATH"] = env_root
    rows = []
    for name, argv in WORKLOADS.items():
        base = median_time(argv)
        t_strace = median_time([*strace, *argv])
        t_ours = median_time([*ours, *argv])
        rows.append(
            f"| {name} | {base:.3f} | {t_strace:.3f} ({t_strace / base:.1f}x) | "
            f"{t_ours:.3f} ({t_ours / base:.1f}x) | {t_ours / t_strace:.2f} |"
        )
    text = "\n".join(
        [
            f"### {datetime.date.today()} — trace overhead, median of {RUNS} "
            f"(ours: events kept in memory, no store)",
            "",
            "| workload | untraced s | strace --seccomp-bpf s | minicon ptrace s | ours / strace |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    print(text)
    with open(HERE / "RESULTS.md", "a") as fh:
        fh.write("\n## bench/trace_overhead.py — the ptrace backend\n\n" + text + "\n")


if __name__ == "__main__":
    main()
