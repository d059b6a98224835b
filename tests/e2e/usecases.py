"""The seed's four use cases as data: packages, programs, sample commands, checks.

Used by the e2e tests and by ``scripts/usecase_results.py`` (docs/results.md). Each check runs
a use case's programs in a chroot of a tree (minimized or full, /proc and /dev mounted) and
raises AssertionError when they do not do their work.
"""

from __future__ import annotations

import http.server
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..conftest import chroot

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"


def ok(root: Path, *argv: str, **kw: object) -> bytes:
    proc = chroot(root, *argv, **kw)  # type: ignore[arg-type]
    assert proc.returncode == 0, (argv, proc.stderr.decode(errors="replace")[-2000:])
    return proc.stdout + proc.stderr


@dataclass(frozen=True)
class UseCase:
    name: str
    what: str
    packages: tuple[str, ...]
    programs: tuple[str, ...]
    checks: Callable[[Path], None]
    plugin: str = ""  # extra strace plugin options, e.g. ":seconds=30"
    setup: Callable[[Path], None] | None = None
    setup_key: str = ""
    extra: tuple[str, ...] = field(default=())  # more minicon arguments
    original_mb: float = 0.0  # the original minicon's published size (Ubuntu 16.04)

    @property
    def commands(self) -> Path:
        return EXAMPLES / f"{self.name}.commands"


# -- uc1 ------------------------------------------------------------------------------------------


def check_uc1(root: Path) -> None:
    ok(root, "mkdir", "-p", "/tmp/uc1/sub")
    assert b"sub" in ok(root, "ls", "-la", "/tmp/uc1")
    assert ok(root, "find", "/etc", "-maxdepth", "1", "-name", "os-release").strip() == (
        b"/etc/os-release"
    )
    assert b"Debian" in ok(root, "cat", "/etc/os-release")
    assert b"Debian" in ok(root, "less", "/etc/os-release")
    assert ok(root, "bash", "-c", "echo $((6 * 7))") == b"42\n"


# -- uc2 ------------------------------------------------------------------------------------------

PAGE = b"<html><body>minicon uc2 page</body></html>\n"


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def web_page() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_uc2(root: Path) -> None:
    assert b"OpenSSH_" in ok(root, "ssh", "-V")
    assert b"hostname example.org" in ok(root, "ssh", "-G", "example.org")
    proc = chroot(root, "ssh", "-o", "BatchMode=yes", "-p", str(closed_port()), "127.0.0.1", "x")
    assert b"Connection refused" in proc.stderr, proc.stderr
    assert b"127.0.0.1" in ok(root, "ip", "addr")
    assert b"1 received" in ok(root, "ping", "-c", "1", "127.0.0.1")
    with web_page() as url:
        assert ok(root, "wget", "-q", "-O", "-", url) == PAGE
    assert b"uid=0(root)" in ok(root, "id")
    check_uc1_subset(root)


def check_uc1_subset(root: Path) -> None:
    ok(root, "mkdir", "-p", "/tmp/made/deeper")
    assert b"deeper" in ok(root, "ls", "/tmp/made")
    assert b"Debian" in ok(root, "cat", "/etc/os-release")


# -- uc3 ------------------------------------------------------------------------------------------


def setup_uc3(root: Path) -> None:
    """The Express app in /usr/src/app, installed by the root's own npm (trusting the host's CA
    certificates, for registries reached through a TLS-inspecting proxy)."""
    app = root / "usr/src/app"
    app.mkdir(parents=True)
    for name in ("package.json", "server.js", "selftest.js"):
        shutil.copy2(EXAMPLES / "uc3-app" / name, app / name)
    host_ca = Path("/etc/ssl/certs/ca-certificates.crt")
    ca = root / "etc/ssl/host-ca.crt"
    if host_ca.exists():
        shutil.copy2(host_ca, ca)
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink() or not resolv.exists():
        resolv.unlink(missing_ok=True)
        shutil.copy2("/etc/resolv.conf", resolv)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/root",
        "NODE_EXTRA_CA_CERTS": "/etc/ssl/host-ca.crt",
        "npm_config_cafile": "/etc/ssl/host-ca.crt",
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
    }
    proc = subprocess.run(
        [CHROOT, str(root), "sh", "-c", "cd /usr/src/app && npm install --omit=dev"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"npm install failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    for name in ("root/.npm", "root/.cache"):
        shutil.rmtree(root / name, ignore_errors=True)


def check_uc3(root: Path) -> None:
    assert re.match(rb"v\d+\.", ok(root, "node", "--version"))
    port = closed_port()
    env = {"PATH": "/usr/bin:/bin", "PORT": str(port), "HOME": "/root"}
    server = subprocess.Popen(
        [CHROOT, str(root), "node", "/usr/src/app/server.js"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        body = _get_retry(f"http://127.0.0.1:{port}/")
        assert body == (200, b"Hello from minicon uc3\n"), body
        assert _get_retry(f"http://127.0.0.1:{port}/nope")[0] == 404
    finally:
        server.kill()
        server.communicate()
    assert server.returncode is not None


def _get_retry(url: str) -> tuple[int, bytes]:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# -- uc4 ------------------------------------------------------------------------------------------


def check_uc4(root: Path) -> None:
    ok(
        root, "ffmpeg", "-hide_banner", "-y", "-f", "lavfi", "-i",
        "testsrc=duration=1:size=320x240:rate=25", "-f", "lavfi", "-i",
        "sine=frequency=440:duration=1", "-shortest", "-c:v", "libx264", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "/tmp/check.mp4",
    )  # fmt: skip
    ok(
        root, "ffmpeg", "-hide_banner", "-y", "-i", "/tmp/check.mp4", "-c:v", "mpeg4", "-c:a",
        "libvorbis", "/tmp/check.mkv",
    )  # fmt: skip
    out = ok(
        root, "ffmpeg", "-hide_banner", "-i", "/tmp/check.mkv", "-map", "0:v", "-f", "null", "-"
    )
    frames = [int(n) for n in re.findall(rb"frame=\s*(\d+)", out)]
    assert frames and frames[-1] == 25, out[-500:]
    for name in ("check.mp4", "check.mkv"):
        (root / "tmp" / name).unlink(missing_ok=True)


UC1 = UseCase(
    "uc1", "a base system: bash ls mkdir less cat find", ("less",),
    ("bash", "ls", "mkdir", "less", "cat", "find"), check_uc1, original_mb=5.54,
)  # fmt: skip
UC2 = UseCase(
    "uc2", "+ ssh ip id ping wget", ("openssh-client", "iproute2", "iputils-ping", "wget"),
    ("bash", "ssh", "ip", "id", "cat", "ls", "mkdir", "ping", "wget"), check_uc2,
    original_mb=10.8,
)  # fmt: skip
UC3 = UseCase(
    "uc3", "node and an Express app in /usr/src/app", ("nodejs", "npm", "ca-certificates"),
    ("node",), check_uc3, plugin=":seconds=5", setup=setup_uc3, setup_key="uc3-app-1",
    extra=("-I", "/usr/src/app/package.json"), original_mb=45.3,
)  # fmt: skip
UC4 = UseCase(
    "uc4", "ffmpeg", ("ffmpeg",), ("ffmpeg",), check_uc4, plugin=":seconds=60",
    original_mb=119.0,
)  # fmt: skip
ALL = (UC1, UC2, UC3, UC4)


def minicon_args(uc: UseCase, root: Path, tar: Path) -> list[str]:
    return [
        "--root", str(root), f"--plugin=strace:execfile={uc.commands}{uc.plugin}",
        "-t", str(tar), *uc.extra, *uc.programs,
    ]  # fmt: skip


def tree_size(root: Path) -> tuple[int, int]:
    """(bytes of regular files, number of regular files) under root, links not followed."""
    size = count = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if not os.path.islink(os.path.join(dirpath, name)):
                size += st.st_size
                count += 1
    return size, count
