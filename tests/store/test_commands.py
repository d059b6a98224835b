"""The store's commands end to end: trace, runs, minimize; concurrent writers; a killed tracer."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from store import queries
from store.db import Store

from ..conftest import chroot, extract, run_minicon

pytestmark = pytest.mark.usefixtures("as_root")
CC = Callable[..., Path]

READER = r"""
#include <fcntl.h>
#include <unistd.h>
int main(int c, char **v) {
    char buf[256];
    int fd = open(v[1], O_RDONLY);            /* a data file only tracing can find */
    if (fd < 0) return 1;
    ssize_t n = read(fd, buf, sizeof buf);
    write(1, buf, n > 0 ? n : 0);
    return 0;
}
"""


@pytest.fixture
def tree() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="minicon-store-", dir="/var/tmp"))
    yield base
    shutil.rmtree(base)


def minicon(db: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return run_minicon(*args, check=check, env={**os.environ, "MINICON_DB": db})


def test_merge_three_labelled_runs(cc: CC, tree: Path, tmp_path: Path) -> None:
    """Three workloads traced under three labels; minimized by label, all three run chrooted."""
    db = f"sqlite:///{tmp_path / 's.db'}"
    progs = []
    for name in ("alpha", "beta", "gamma"):
        data = tree / f"{name}.txt"
        data.write_text(f"{name} data\n")
        prog = cc(tree / name, READER)
        progs.append((name, prog, data))
        out = minicon(db, "trace", "--label", name, "--", str(prog), str(data)).stdout
        assert out.strip().isdigit()
    listing = json.loads(minicon(db, "runs", "list", "--json").stdout)
    assert [r["label"] for r in listing] == ["alpha", "beta", "gamma"]
    assert all(r["status"] == "completed" for r in listing)
    tar = tmp_path / "all.tar"
    labels = [a for name, _, _ in progs for a in ("--label", name)]
    minicon(db, "minimize", *labels, "-t", str(tar))
    root = extract(tar, tmp_path / "all")
    for name, prog, data in progs:
        assert chroot(root, str(prog), str(data)).stdout == f"{name} data\n".encode()
    two = tmp_path / "two.tar"
    minicon(db, "minimize", "--label", "alpha", "--label", "beta", "-t", str(two))
    part = extract(two, tmp_path / "two")
    assert chroot(part, str(progs[2][1]), str(progs[2][2])).returncode != 0  # gamma: not kept


def test_runs_commands(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 's.db'}"
    first = minicon(db, "trace", "--label", "l", "--", "sh", "-c", "cat /etc/hostname; ls /nope")
    run_id = first.stdout.strip().decode()
    assert b"completed (exit 2)" in first.stderr
    shown = minicon(db, "runs", "show", run_id).stdout.decode()
    assert "failed lookups" in shown and "/nope" in shown and "cat /etc/hostname" in shown
    files = minicon(db, "runs", "files", run_id, "--mode", "slim").stdout.decode()
    assert "file\t/etc/hostname\topened by run" in files
    exported = tmp_path / "r.jsonl"
    minicon(db, "runs", "export", run_id, "-o", str(exported))
    other = f"sqlite:///{tmp_path / 'other.db'}"
    new_id = minicon(other, "runs", "import", str(exported)).stdout.strip().decode()
    assert minicon(other, "runs", "diff", new_id, new_id).stdout == b""
    second = minicon(db, "trace", "--", "ls", "/").stdout.strip().decode()
    diff = minicon(db, "runs", "diff", run_id, second).stdout.decode()
    assert "- open  ok     /etc/hostname" in diff and "+ list" in diff
    minicon(db, "runs", "rm", run_id)
    assert minicon(db, "runs", "show", run_id, check=False).returncode == 1
    bad = minicon(db, "runs", "rm", "12345", check=False)
    assert bad.returncode == 1 and b"no run 12345" in bad.stderr


def test_bad_input(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 's.db'}"
    missing = minicon(db, "trace", "--", "no-such-program-minicon", check=False)
    assert missing.returncode == 1 and b"command not found" in missing.stderr
    assert b"failed" in minicon(db, "runs", "list").stdout  # recorded as a failed run
    nothing = minicon(db, "minimize", "-t", str(tmp_path / "x.tar"), check=False)
    assert nothing.returncode == 2 and b"no runs" in nothing.stderr
    assert not (tmp_path / "x.tar").exists()
    wrong = minicon("nosuchdb://x", "runs", "list", check=False)
    assert wrong.returncode == 1 and b"error" in wrong.stderr


def start(db: str, *args: str) -> subprocess.Popen[bytes]:
    """``minicon ARGS`` on store ``db``, in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "minicon", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "MINICON_DB": db},
    )


def all_succeed(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    for p in procs:
        _, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err


def test_concurrent_writers_on_one_sqlite_file(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 's.db'}"
    workload = "for i in $(seq 60); do ls /usr/bin > /dev/null; cat /etc/os-release; done"
    all_succeed(
        [start(db, "trace", "--label", f"w{i}", "--", "sh", "-c", workload) for i in range(2)],
        timeout=120,
    )
    with Store(db) as store:
        runs = queries.list_runs(store)
        assert [r.status for r in runs] == ["completed", "completed"]
        counts = [{(a.path, a.kind): a.count for a in queries.accesses(store, r.id)} for r in runs]
    for c in counts:
        assert c[(b"/etc/os-release", "open")] == 60  # every event of both writers is there
        assert c[(b"/usr/bin", "list")] == 60


def test_kill_9_marks_the_run_interrupted_and_keeps_its_events(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 's.db'}"
    marker = tmp_path / "started"
    script = f"touch {marker}; while true; do cat /etc/os-release > /dev/null; done"
    proc = start(db, "trace", "--", "sh", "-c", script)
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(2.5)  # at least two flushes
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.3)  # the traced tree dies with its tracer (PTRACE_O_EXITKILL)
    left = subprocess.run(["pgrep", "-f", str(marker)], capture_output=True)
    assert left.stdout == b""
    with Store(db) as store:  # opening marks what nobody records any more
        (run,) = queries.list_runs(store)
        assert run.status == "interrupted"
        rows = {(a.path, a.kind): a.count for a in queries.accesses(store, run.id)}
    assert rows[(b"/etc/os-release", "open")] > 10
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_many_processes_open_a_new_store_at_once(tmp_path: Path) -> None:
    """Creating the schema and switching to WAL happen once, whoever comes first."""
    for round_ in range(3):
        db = f"sqlite:///{tmp_path / f'new{round_}.db'}"
        all_succeed([start(db, "runs", "list") for _ in range(6)], timeout=60)


LIGHT_TRACE = """
import sys
from minicon.cli import main
try:
    main(["trace", "--label", "light", "--", "/bin/true"], prog_name="minicon")
except SystemExit as exc:
    assert not exc.code, exc.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "alembic", "minimizer"))
assert not heavy, heavy
# each of these cost every trace milliseconds of start-up: python-ptrace's libc lookup
# (ctypes.util runs ldconfig), the host name (socket), the --root overlay's temporary dirs
slow = [m for m in ("ctypes.util", "socket", "tempfile", "subprocess") if m in sys.modules]
assert not slow, slow
"""


def test_trace_records_without_sqlalchemy(tmp_path: Path) -> None:
    """`minicon trace` on a store at the current schema imports neither SQLAlchemy nor the
    minimizer (a third of a second before every run) nor the modules its start-up does not
    need, and what it writes reads back."""
    db = f"sqlite:///{tmp_path / 's.db'}"
    Store(db).close()  # created and migrated (that needs SQLAlchemy, once)
    env = {**os.environ, "MINICON_DB": db}
    proc = subprocess.run([sys.executable, "-c", LIGHT_TRACE], env=env, capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    with Store(db) as store:
        (run,) = queries.list_runs(store, label="light")
        assert run.status == "completed" and run.exit_code == 0 and run.processes == 1
        assert run.created_at.tzinfo is not None and run.ended_at is not None
        assert run.ended_at >= run.created_at
        paths = {a.path for a in queries.accesses(store, run.id)}
        assert any(p.endswith(b"/true") for p in paths)
