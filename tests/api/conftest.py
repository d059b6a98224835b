"""The daemon in-process (TestClient) and as a real `minicon serve` process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings

TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_client(tmp_path: Path, roots: list[Path]) -> TestClient:
    settings = Settings(
        token=TOKEN,
        db_url=f"sqlite:///{tmp_path / 'api.db'}",
        allow_roots=[os.fsencode(os.path.realpath(r)) for r in roots],
        artifacts_dir=str(tmp_path / "artifacts"),
        python=sys.executable,
    )
    return TestClient(create_app(settings))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    with make_client(tmp_path, [allowed]) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    db: str
    args: list[str]

    def client(self, timeout: float = 60) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=AUTH, timeout=timeout)

    def rss_kb(self) -> int:
        """The daemon's resident memory (it is the python process itself)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0


def start_server(tmp_path: Path, *args: str, db: str | None = None) -> Server:
    port = free_port()
    db = db or f"sqlite:///{tmp_path / 'daemon.db'}"
    cmd = [sys.executable, "-m", "minicon", "serve", "--port", str(port), *args]
    env = {**os.environ, "MINICON_TOKEN": TOKEN, "MINICON_DB": db}
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return Server(url, proc, db, list(args))
        except httpx.TransportError:
            time.sleep(0.1)
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "died")
    proc.kill()
    raise RuntimeError("the daemon did not come up")


def stop(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.proc.kill()


def wait_run(
    c: httpx.Client | TestClient, run_id: int, timeout: float = 60, until: str | None = None
) -> dict[str, object]:
    """The run once it has ended (or reached status ``until``); an error after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = c.get(f"/runs/{run_id}").json()
        if run["status"] == until or (until is None and run["status"] not in ("queued", "running")):
            return dict(run)
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} still {run['status']}")
