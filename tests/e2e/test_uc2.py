"""The seed's use case 2 on a Debian root: ssh, ip, ping and wget traced, minimized, and run.

The root is built with mmdebstrap (bookworm minbase + the uc2 packages) and cached. minicon
traces the sample commands of ``examples/uc2.commands`` (plus a wget of a live local page)
chrooted in an overlay of the root, writes a tar, and the same commands run in a chroot of it.
Every check runs against the full root too, so a check that cannot fail is caught.
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ..conftest import build_debian_root, chroot, extract, run_minicon

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("as_root")]
UC2_PACKAGES = ("openssh-client", "iproute2", "iputils-ping", "wget")
UC2_PROGRAMS = ("bash", "ssh", "ip", "id", "cat", "ls", "mkdir", "ping", "wget")
COMMANDS = Path(__file__).resolve().parents[2] / "examples/uc2.commands"
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


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="module")
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed


@pytest.fixture(scope="module")
def uc2_root() -> Path:
    return build_debian_root(UC2_PACKAGES)


@pytest.fixture(scope="module")
def uc2_min(uc2_root: Path, web: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("uc2")
    tar = tmp / "uc2.tar"
    run_minicon(
        "--root",
        str(uc2_root),
        f"--plugin=strace:execfile={COMMANDS}",
        "-t",
        str(tar),
        "-E",
        f"wget -q -O /tmp/page {web}",
        *UC2_PROGRAMS,
    )
    return extract(tar, tmp / "root")


Check = Callable[[Path], None]


def _ok(root: Path, *argv: str) -> bytes:
    proc = chroot(root, *argv)
    assert proc.returncode == 0, (argv, proc.stderr.decode(errors="replace"))
    return proc.stdout + proc.stderr


def check_ssh(root: Path, closed_port: int) -> None:
    assert b"OpenSSH_" in _ok(root, "ssh", "-V")
    assert b"hostname example.org" in _ok(root, "ssh", "-G", "example.org")
    proc = chroot(root, "ssh", "-o", "BatchMode=yes", "-p", str(closed_port), "127.0.0.1", "true")
    assert b"Connection refused" in proc.stderr, proc.stderr


def check_ip_ping(root: Path) -> None:
    assert b"127.0.0.1" in _ok(root, "ip", "addr")
    assert b"1 received" in _ok(root, "ping", "-c", "1", "127.0.0.1")


def check_wget(root: Path, web: str) -> None:
    assert _ok(root, "wget", "-q", "-O", "-", web) == PAGE


def check_shell_tools(root: Path) -> None:
    _ok(root, "mkdir", "-p", "/tmp/made/deeper")
    assert b"deeper" in _ok(root, "ls", "/tmp/made")
    assert b"uid=0(root)" in _ok(root, "id")
    assert b"Debian" in _ok(root, "cat", "/etc/os-release")
    assert _ok(root, "bash", "-c", "echo $((6 * 7))") == b"42\n"


@pytest.fixture(params=["minimized", "full"])
def tree(request: pytest.FixtureRequest, mounted: Callable[[Path], Path]) -> Path:
    name = "uc2_min" if request.param == "minimized" else "uc2_root"
    return mounted(request.getfixturevalue(name))


def test_ssh(tree: Path, closed_port: int) -> None:
    check_ssh(tree, closed_port)


def test_ip_and_ping(tree: Path) -> None:
    check_ip_ping(tree)


def test_wget_fetches_a_local_page(tree: Path, web: str) -> None:
    check_wget(tree, web)


def test_shell_tools(tree: Path) -> None:
    check_shell_tools(tree)


def test_minimized_is_small(uc2_min: Path, uc2_root: Path) -> None:
    def size(root: Path) -> int:
        return sum(p.lstat().st_size for p in root.rglob("*") if p.is_file())

    assert size(uc2_min) < size(uc2_root) / 5
