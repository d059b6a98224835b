"""Benchmark of the static half: the uc1 command end to end, and whole-directory closures.

Run by hand as root (``.venv/bin/python bench/closure.py``); it prints a markdown table and
appends it, dated, to ``bench/RESULTS.md``. Times are medians of several runs of the real command
line in a child process (Python start-up included). Each row has a reference measured in the
same run, because these machines are shared and noisy:

- ``python -c 'import minicon.cli'``: the floor any run of the command pays before working;
- ``tar cf`` of the same files minicon kept: what copying them costs without any analysis.

Peak memory is the child's maximum RSS (``getrusage(RUSAGE_CHILDREN)``).
"""

from __future__ import annotations

import datetime
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.conftest import DEBIAN_PACKAGES, build_debian_root  # noqa: E402

PY = sys.executable
RUNS = int(os.environ.get("BENCH_RUNS", "7"))


def timed(argv: list[str]) -> tuple[float, int]:
    """Median wall time of ``argv`` over RUNS runs, and the largest child RSS in MB."""
    times = []
    peak = 0
    for _ in range(RUNS):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
        peak = max(peak, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before)
    return statistics.median(times), peak // 1024


def kept_files(listing: bytes, root: str) -> list[str]:
    out = []
    for line in listing.splitlines():
        path = line.split(b"\t", 1)[0].decode()
        if os.path.isfile(root.rstrip("/") + path) and not os.path.islink(root.rstrip("/") + path):
            out.append("." + path)
    return out


def row(name: str, argv: list[str], root: str, tmp: str) -> list[str]:
    listing = subprocess.run([*argv[:3], "--list", *argv[3:]], capture_output=True, check=True)
    files = kept_files(listing.stdout, root)
    (Path(tmp) / "files").write_text("\n".join(files) + "\n")
    t_list, _ = timed([*argv[:3], "--list", *argv[3:]])
    t_minicon, rss = timed([*argv, "-t", f"{tmp}/out.tar", "-q"])
    t_tar, _ = timed(["tar", "-C", root, "-cf", f"{tmp}/ref.tar", "-T", f"{tmp}/files"])
    size = os.path.getsize(f"{tmp}/out.tar") / 1e6
    return [
        name,
        str(len(listing.stdout.splitlines())),
        f"{size:.1f}",
        f"{t_list:.3f}",
        f"{t_minicon:.3f}",
        f"{t_tar:.3f}",
        f"{rss}",
    ]


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("run as root (the Debian root is built with mmdebstrap)")
    debian = str(build_debian_root(DEBIAN_PACKAGES))
    minicon = [PY, "-m", "minicon"]
    floor, _ = timed([PY, "-c", "import minicon.cli"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(
            row(
                "uc1 from the host (bash ls mkdir less cat find)",
                [*minicon, "--root", "/", "bash", "ls", "mkdir", "less", "cat", "find"],
                "/",
                tmp,
            )
        )
        rows.append(
            row(
                "uc1 from the Debian root",
                [*minicon, "--root", debian, "bash", "ls", "mkdir", "less", "cat", "find"],
                debian,
                tmp,
            )
        )
        rows.append(
            row(
                "whole /usr/bin of the Debian root (every ELF's closure)",
                [*minicon, "--root", debian, "-I", "/usr/bin"],
                debian,
                tmp,
            )
        )
        rows.append(
            row(
                "whole /usr/bin and /usr/lib of the Debian root",
                [*minicon, "--root", debian, "-I", "/usr/bin", "-I", "/usr/lib"],
                debian,
                tmp,
            )
        )
        rows.append(
            row("whole /usr/bin of the host", [*minicon, "--root", "/", "-I", "/usr/bin"], "/", tmp)
        )
    head = [
        "workload",
        "kept paths",
        "tar MB",
        "closure only (--list) s",
        "minicon -t s",
        "tar cf same files s",
        "peak RSS MB",
    ]
    lines = [
        f"### {datetime.date.today()} — {os.uname().nodename}, {os.cpu_count()} cores, "
        f"median of {RUNS}; `python -c 'import minicon.cli'` alone: {floor:.3f} s",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    with open(HERE / "RESULTS.md", "a") as fh:
        fh.write(text + "\n")


if __name__ == "__main__":
    main()
