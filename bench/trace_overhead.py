"""Tracing overhead: untraced vs ``strace --seccomp-bpf`` vs minicon's ptrace backend.

The three workloads of ``shared/notes/tracing.md``. Run by hand as root
(``.venv/bin/python bench/trace_overhead.py``); prints markdown tables of medians, each ratio
against the untraced run measured in the same session, and appends them to ``bench/RESULTS.md``.

Columns: strace as users run it (``-f --seccomp-bpf -e trace=%file,%process``), the same strace
pinned to one CPU with ``taskset`` (what our tracer does by default: see ``PtraceBackend._pin``),
and our backend pinned (the default) and not.

Ours records into a SQLite trace store (as ``minicon trace`` does; one store for all runs, so
each run pays opening it, not creating it); the "in memory" column is the backend alone,
without importing SQLAlchemy.

The path sets are compared too: one ``strace -f -y`` run per workload (with getdents64, which
we record as listings), read back with :mod:`tracer.strace_log`, directory parts resolved like
ours; both sets are restricted to the syscalls our table records.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tracer.ebpf_backend import EbpfBackend  # noqa: E402
from tracer.events import Kind  # noqa: E402
from tracer.paths import Resolver  # noqa: E402
from tracer.ptrace_backend import CLEAN_ENV, Options, PtraceBackend  # noqa: E402
from tracer.strace_log import read_log  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
WORKLOADS = {
    "find /usr -name nothing": ["find", "/usr", "-name", "nothing"],
    "python3 imports": ["/usr/bin/python3", "-c", "import json, ssl, email, http.client, sqlite3"],
    "200 x ls /usr/bin": ["sh", "-c", "for i in $(seq 200); do ls /usr/bin >/dev/null; done"],
    # what builds and test suites do a lot: the same lookup again and again
    "100k stats of one path": [
        "/usr/bin/python3",
        "-c",
        "import os\nfor _ in range(100000): os.stat('/usr/lib')",
    ],
}
OURS = (
    "import sys\n"
    "pin = sys.argv[1] == 'pin'\n"
    "if sys.argv[2].startswith('sqlite:'):\n"
    "    from store.db import Store\n"
    "    from store.recording import TraceRequest, trace_run\n"
    "    store = Store(sys.argv[2])\n"
    "    trace_run(store, TraceRequest(sys.argv[3:], pin_cpu=pin))\n"
    "elif sys.argv[2] == 'ebpf':\n"
    "    from tracer.ebpf_backend import EbpfBackend\n"
    "    from tracer.ptrace_backend import Options\n"
    "    b = EbpfBackend(Options(sys.argv[3:]))\n"
    "    paths = {(e.kind, e.path, e.errno) for e in b.events()}\n"
    "    assert b.lost_events == 0 and b.unresolved == 0, (b.lost_events, b.unresolved)\n"
    "else:\n"
    "    from tracer.ptrace_backend import Options, PtraceBackend\n"
    "    b = PtraceBackend(Options(sys.argv[3:], pin_cpu=pin))\n"
    "    paths = {(e.kind, e.path, e.errno) for e in b.events()}\n"
)
# The eBPF backend in a process that has loaded its program already (as ``minicon serve`` and
# an invocation with several -E do): each run's time, and the same workload with the records
# left in the ring buffer until it has exited (what the probes cost the traced program itself),
# also as CPU time. Each round measures the workload untraced with nothing loaded first, loads
# the program (and warms it up with one traced `true`), takes the traced runs and one untraced
# while loaded, unloads it, and takes one run with only an empty probe attached: every ratio is
# to the same round's untraced runs, so this VM's drifts fall on all of them alike.
EBPF_LOADED = (
    "import json, os, resource, statistics, subprocess, sys, time\n"
    "from tracer import ebpf_backend as eb\n"
    "from tracer.ptrace_backend import Options\n"
    "runs, argv = int(sys.argv[1]), sys.argv[2:]\n"
    "bcc = eb.load_bcc()\n"
    "def cpu():\n"
    "    r = resource.getrusage(resource.RUSAGE_CHILDREN); return r.ru_utime + r.ru_stime\n"
    "def untraced():\n"
    "    c, t = cpu(), time.perf_counter()\n"
    "    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd='/')\n"
    "    return time.perf_counter() - t, cpu() - c\n"
    "got = {k: [] for k in ('base', 'base_cpu', 'per_run', 'kernel', 'kernel_cpu', 'others',\n"
    "                       'floor', 'load', 'unload')}\n"
    "for _ in range(runs):\n"
    "    for _ in range(2):\n"
    "        w, c = untraced(); got['base'].append(w); got['base_cpu'].append(c)\n"
    "    t = time.perf_counter(); loaded = eb._Loaded.acquire(bcc); loaded.release(None)\n"
    "    got['load'].append(time.perf_counter() - t)\n"
    "    list(eb.EbpfBackend(Options(['true'])).events())\n"
    "    b = eb.EbpfBackend(Options(argv))\n"
    "    t = time.perf_counter(); n = sum(1 for _ in b.events())\n"
    "    got['per_run'].append(time.perf_counter() - t)\n"
    "    assert b.lost_events == 0 and b.unresolved == 0, (b.lost_events, b.unresolved)\n"
    "    b = eb.EbpfBackend(Options(argv)); loaded = eb._Loaded.acquire(b._bcc)\n"
    "    c, t = cpu(), time.perf_counter(); b._spawn(loaded).wait()\n"
    "    got['kernel'].append(time.perf_counter() - t); got['kernel_cpu'].append(cpu() - c)\n"
    "    loaded.release(None)\n"
    "    got['others'].append(untraced()[0])\n"
    "    t = time.perf_counter(); eb._Loaded.unload()\n"
    "    got['unload'].append(time.perf_counter() - t)\n"
    "    empty = bcc.BPF(text=b'RAW_TRACEPOINT_PROBE(sys_exit) { return 0; }')\n"
    "    got['floor'].append(untraced()[0])\n"
    "    empty.cleanup()\n"
    "out = {k: statistics.median(v) for k, v in got.items()}\n"
    "out['events'] = n\n"
    "print(json.dumps(out))\n"
)
STRACE = ["strace", "-f", "--seccomp-bpf", "-e", "trace=%file,%process", "-o", "/dev/null"]


ENV = {**CLEAN_ENV, "PYTHONPATH": str(HERE.parent)}  # every run: the tracer's clean env, cwd /
# Ours runs as a regular install would: the checkout and the venv's packages on the path, and
# python -S, so that site does not process the dev venv's .pth files (the editable install's
# import hook costs every Python start ~11 ms on these machines; a wheel pip installed has none).
# Bytecode is written on the first run (the clean env has no PYTHONDONTWRITEBYTECODE).
OURS_ENV = {**ENV, "PYTHONPATH": f"{HERE.parent}:{sysconfig.get_paths()['purelib']}"}


def median_times(variants: dict[str, list[str]]) -> dict[str, float]:
    """The median wall time of each command line, run in turns (one of each, RUNS times), so a
    slow spell of this shared machine falls on every variant alike."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(RUNS):
        for name, argv in variants.items():
            t0 = time.perf_counter()
            subprocess.run(
                argv,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
                env=OURS_ENV if argv[0] == sys.executable else ENV,
                cwd="/",
            )
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def path_sets(argv: list[str]) -> tuple[set[bytes], set[bytes], set[bytes]]:
    """(strace's, ours, eBPF's): every path a recorded call named, directory parts resolved."""
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "log")
        subprocess.run(
            ["strace", "-f", "-y", "-e", "trace=%file,%process,getdents64", "-o", log, *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
            env=CLEAN_ENV,  # exactly the traced run's environment
            cwd="/",
        )
        resolver = Resolver()
        theirs = set()
        for e in read_log(log).events():
            if e.kind == Kind.EXEC and e.errno == 0:
                continue  # ours records a successful exec once; strace may too: compare lookups
            theirs.add(resolver.absolute(b"", None, e.path))
        resolver.close()
    ours = {
        e.path
        for e in PtraceBackend(Options(argv)).events()
        if not (e.kind == Kind.EXEC and e.errno == 0)
    }
    bpf = {
        e.path
        for e in EbpfBackend(Options(argv)).events()
        if not (e.kind == Kind.EXEC and e.errno == 0)
    }
    return theirs, ours, bpf


def ebpf_loaded(argv: list[str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", EBPF_LOADED, str(RUNS), *argv],
        capture_output=True,
        env=ENV,
        cwd="/",
        check=True,
    ).stdout
    result: dict[str, float] = json.loads(out.splitlines()[-1])
    return result


def _commit() -> str:
    """The commit measured (and whether the tree had changes other than earlier results), for
    the table's heading."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(HERE), *args], capture_output=True, text=True
        ).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "an unknown commit"
    return head + (
        " with changes"
        if git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/RESULTS.md")
        else ""
    )


def main() -> None:
    if shutil.which("strace") is None or shutil.which("taskset") is None:
        sys.exit("needs strace and taskset (apt-get install strace util-linux)")
    ours = [sys.executable, "-S", "-c", OURS]
    cpu = str(min(os.sched_getaffinity(0)))
    rows, paths = [], []
    loads = (0.0, 0.0)
    tmp = tempfile.mkdtemp(prefix="minicon-bench-")
    db = f"sqlite:///{tmp}/store.db"  # one store for every run, created (migrated) up front
    subprocess.run([sys.executable, "-c", f"from store.db import Store; Store({db!r})"], env=ENV)
    for name, argv in WORKLOADS.items():
        t = median_times(
            {
                "base": argv,
                "strace": [*STRACE, *argv],
                "pinned": ["taskset", "-c", cpu, *STRACE, *argv],
                "ours": [*ours, "pin", db, *argv],
                "free": [*ours, "nopin", db, *argv],
                "mem": [*ours, "pin", "memory", *argv],
                "ebpf": [*ours, "pin", "ebpf", *argv],
            }
        )
        base, t_strace, t_pinned = t["base"], t["strace"], t["pinned"]
        t_ours, t_free, t_mem, t_ebpf = t["ours"], t["free"], t["mem"], t["ebpf"]
        loaded = ebpf_loaded(argv)
        t_run, t_kernel, local = loaded["per_run"], loaded["kernel"], loaded["base"]
        loads = (loaded["load"], loaded["unload"])
        rows.append(
            f"| {name} | {base:.3f} | {t_strace:.3f} ({t_strace / base:.1f}x) | "
            f"{t_pinned:.3f} ({t_pinned / base:.1f}x) | {t_ours:.3f} ({t_ours / base:.1f}x) | "
            f"{t_free:.3f} ({t_free / base:.1f}x) | {t_mem:.3f} ({t_mem / base:.1f}x) | "
            f"{t_ebpf:.3f} ({t_ebpf / base:.1f}x) | {t_run:.3f} ({t_run / local:.2f}x) | "
            f"{t_kernel:.3f} ({t_kernel / local:.2f}x) | "
            f"{loaded['kernel_cpu'] / loaded['base_cpu']:.2f}x | "
            f"{loaded['others']:.3f} ({loaded['others'] / local:.2f}x) | "
            f"{loaded['floor']:.3f} ({loaded['floor'] / local:.2f}x) | {local:.3f} | "
            f"{loaded['events']} | "
            f"{t_ours / t_strace:.2f} | {t_ours / t_pinned:.2f} |"
        )
        theirs, mine, bpf = path_sets(argv)
        only_theirs = sorted(theirs - mine)
        only_ours = sorted(mine - theirs)
        example = os.fsdecode(only_theirs[0]) if only_theirs else ""
        paths.append(
            f"| {name} | {len(theirs)} | {len(mine)} | {len(only_theirs)} | {len(only_ours)} | "
            f"{len(bpf ^ mine)} | {example} |"
        )
    shutil.rmtree(tmp)
    text = "\n".join(
        [
            f"### {datetime.date.today()} — trace overhead, median of {RUNS} "
            "(ours: recording into a SQLite trace store, Python start-up included; "
            f"at {_commit()})",
            "",
            "| workload | untraced s | strace s | strace pinned s | ours s (pinned, default) "
            "| ours unpinned s | ours, events in memory only s | eBPF, new process s "
            "| eBPF per run, program loaded s | eBPF, the program's own time s "
            "| eBPF, its own CPU time "
            "| eBPF loaded, the workload untraced s | one empty sys_exit probe, untraced s "
            "| untraced, the eBPF columns' own s | events | ours / strace | ours / strace pinned |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "eBPF columns: *new process* is a whole `python -c` that loads bcc, compiles and "
            "attaches the program, traces and detaches; *per run* is one trace in a process "
            "that loaded the program already (as `minicon serve` or one invocation with several "
            f"-E do: loading took {loads[0]:.2f} s and unloading {loads[1]:.2f} s here); "
            "*own time* is the traced program alone with the records read after it exited "
            "(what the probes cost it; the rest of *per run* is reading and resolving records), "
            "and *its own CPU time* the same as CPU time (user and system, to the untraced "
            "runs' CPU time); "
            "*loaded, untraced* is what a process the trace does not follow pays while one runs; "
            "*one empty probe* is the floor of syscall tracepoints: the workload untraced with "
            "only an empty raw `sys_exit` program attached. The ratios of these columns are "
            "to the untraced time measured in the same process (*the eBPF columns' own*), two "
            "runs in each round with nothing loaded: each round loads the program, takes one "
            "run of each column and unloads it, so the VM's drifts fall on all alike "
            "(loading and unloading are medians over the rounds).",
            "",
            "Path sets (one `strace -f -y` run read back with tracer.strace_log vs one of ours):",
            "",
            "| workload | strace paths | our paths | only strace's | only ours "
            "| eBPF differs from ptrace | e.g. |",
            "|---|---|---|---|---|---|---|",
            *paths,
            "",
        ]
    )
    print(text)
    with open(HERE / "RESULTS.md", "a") as fh:
        fh.write("\n" + text + "\n")


if __name__ == "__main__":
    main()
