"""A real `minicon serve` process over HTTP: traces in a Debian root, big and concurrent
downloads in constant memory, a daemon killed mid-trace, the Unix socket, the bind policy."""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ..conftest import chroot, extract
from .conftest import AUTH, Server, start_server, stop, wait_run

pytestmark = pytest.mark.usefixtures("as_root")


@pytest.fixture
def debian_server(debian_root: Path, tmp_path: Path) -> Iterator[Server]:
    server = start_server(tmp_path, "--allow-root", str(debian_root))
    yield server
    stop(server)


@pytest.mark.e2e
def test_trace_python_in_a_debian_root_and_run_its_tar(
    debian_server: Server, debian_root: Path, tmp_path: Path, mounted: Callable[[Path], Path]
) -> None:
    with debian_server.client() as c:
        r = c.post(
            "/runs",
            json={
                "argv": ["python3", "-c", "import json"],
                "root": str(debian_root),
                "seconds": 60,
                "label": "py",
            },
        )
        assert r.status_code == 202, r.text
        run = wait_run(c, r.json()["id"])
        assert run["status"] == "completed" and run["exit_code"] == 0, run
        tar = tmp_path / "py.tar"
        with c.stream("GET", f"/runs/{run['id']}/tar") as resp:
            assert resp.status_code == 200
            with open(tar, "wb") as fh:
                for chunk in resp.iter_bytes():
                    fh.write(chunk)
    root = mounted(extract(tar, tmp_path / "py"))
    proc = chroot(root, "python3", "-c", "import json; print(json.dumps([1]))")
    assert proc.stdout == b"[1]\n", proc.stderr
    assert chroot(root, "python3", "-c", "import sqlite3").returncode != 0  # not traced, not kept


@pytest.fixture
def big_tree() -> Iterator[Path]:
    """A root with 400 MB of files (a real Debian root would do, this is quicker to make)."""
    base = Path("/var/tmp") / f"minicon-big-{os.getpid()}"
    (base / "data").mkdir(parents=True)
    block = os.urandom(1 << 20)
    for i in range(40):
        with open(base / f"data/f{i:02}", "wb") as fh:
            for _ in range(10):
                fh.write(block)
    yield base
    subprocess.run(["rm", "-rf", str(base)], check=False)


def test_big_download_in_constant_memory_and_concurrent_downloads(
    big_tree: Path, tmp_path: Path
) -> None:
    server = start_server(tmp_path, "--allow-root", str(big_tree), "--workers", "2")
    try:
        with server.client(timeout=300) as c:
            made = c.post("/tarballs", json={"includes": ["/data"], "root": str(big_tree)})
            assert made.status_code == 201, made.text
            url = made.json()["url"]
            assert made.json()["size"] > 400e6
            # an import makes a run to stream: its tar is built and streamed on the fly
            before = server.rss_kb()
            peak = [before]
            done = threading.Event()

            def watch() -> None:
                while not done.is_set():
                    peak[0] = max(peak[0], server.rss_kb())
                    time.sleep(0.02)

            watcher = threading.Thread(target=watch)
            watcher.start()
            digest = hashlib.sha256()
            size = 0
            export = (
                b'{"format":"minicon-run","version":1,"run":{"argv":["x"],"root":'
                + f'"{big_tree}"'.encode()
                + b',"status":"completed"}}\n'
            )
            run_id = c.post("/runs/import", content=export).json()["id"]
            with c.stream("GET", f"/runs/{run_id}/tar", params={"include": "/data"}) as resp:
                assert resp.status_code == 200
                for chunk in resp.iter_bytes():
                    digest.update(chunk)
                    size += len(chunk)
            done.set()
            watcher.join()
            assert size > 400e6
            assert (peak[0] - before) < 50 * 1024, f"RSS grew by {(peak[0] - before) // 1024} MB"

            def fetch(_: int) -> str:
                h = hashlib.sha256()
                with (
                    httpx.Client(base_url=server.url, headers=AUTH, timeout=300) as one,
                    one.stream("GET", url) as resp,
                ):
                    assert resp.status_code == 200
                    for chunk in resp.iter_bytes():
                        h.update(chunk)
                return h.hexdigest()

            with concurrent.futures.ThreadPoolExecutor(20) as pool:
                digests = set(pool.map(fetch, range(20)))
            assert digests == {made.json()["digest"]}
    finally:
        stop(server)


def test_kill_9_during_a_trace_then_restart(mini_root: Path, tmp_path: Path) -> None:
    server = start_server(tmp_path, "--allow-root", str(mini_root))
    marker = "minicon-kill9-marker"
    with server.client() as c:
        r = c.post(
            "/runs",
            json={
                "argv": [f"while :; do :; done # {marker}"],
                "shell": True,
                "root": str(mini_root),
                "seconds": 300,
            },
        )
        run_id = r.json()["id"]
        wait_run(c, run_id, timeout=10, until="running")
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the job and its tracee die with the daemon
        left = subprocess.run(["pgrep", "-f", marker], capture_output=True).stdout
        if not left:
            break
        time.sleep(0.1)
    assert left == b""
    again = start_server(tmp_path, "--allow-root", str(mini_root), db=server.db)
    try:
        with again.client() as c:
            assert c.get(f"/runs/{run_id}").json()["status"] == "interrupted"
    finally:
        stop(again)
    with sqlite3.connect(server.db.removeprefix("sqlite:///")) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_unix_socket_and_bind_policy(tmp_path: Path) -> None:
    sock = tmp_path / "minicon.sock"
    env = {**os.environ, "MINICON_DB": f"sqlite:///{tmp_path / 'u.db'}"}
    env.pop("MINICON_TOKEN", None)
    token_file = tmp_path / "token"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "minicon",
            "serve",
            "--uds",
            str(sock),
            "--token-file",
            str(token_file),
        ],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600  # created on first start
        token = token_file.read_text().strip()
        transport = httpx.HTTPTransport(uds=str(sock))
        with httpx.Client(transport=transport, base_url="http://minicon") as c:
            assert c.get("/runs").status_code == 401
            assert c.get("/runs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "minicon",
            "serve",
            "--host",
            "0.0.0.0",
            "--token-file",
            str(tmp_path / "none"),
        ],
        env=env,
        capture_output=True,
        timeout=30,
    )
    assert refused.returncode == 2 and b"needs a token" in refused.stderr
    assert not (tmp_path / "none").exists()
