"""--root on a real Debian root filesystem built with mmdebstrap: the result runs on its own."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from ..conftest import chroot, extract, run_minicon

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("as_root")]


@pytest.fixture(scope="module")
def minimized(debian_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("deb")
    tar = tmp / "min.tar"
    run_minicon(
        "--root",
        str(debian_root),
        "-t",
        str(tar),
        "bash",
        "ls",
        "mkdir",
        "less",
        "cat",
        "find",
        "ping",
        "getcap",
    )
    return extract(tar, tmp / "d")


def test_uc1_programs_run(minimized: Path) -> None:
    assert chroot(minimized, "/bin/bash", "-c", "echo ok").stdout == b"ok\n"
    assert b"usr" in chroot(minimized, "/bin/ls", "/").stdout
    assert chroot(minimized, "/bin/mkdir", "/tmp/x").returncode == 0
    assert chroot(minimized, "/usr/bin/find", "/tmp").stdout == b"/tmp\n/tmp/x\n"


def test_capability_of_ping_survives(minimized: Path, debian_root: Path) -> None:
    want = os.getxattr(debian_root / "usr/bin/ping", "security.capability")
    assert os.getxattr(minimized / "usr/bin/ping", "security.capability") == want
    proc = chroot(minimized, "/sbin/getcap", "/usr/bin/ping")
    assert b"cap_net_raw=ep" in proc.stdout, proc.stderr


def test_ping_works(minimized: Path, mounted: Callable[[Path], Path]) -> None:
    mounted(minimized)
    proc = chroot(minimized, "/usr/bin/ping", "-c1", "-W2", "127.0.0.1")
    assert proc.returncode == 0, proc.stderr
    assert b"1 received" in proc.stdout


def test_nothing_from_the_host(minimized: Path, debian_root: Path) -> None:
    """Every regular file in the result is byte-identical to the Debian root's, not the host's."""
    for dirpath, _, files in os.walk(minimized):
        for name in files:
            path = Path(dirpath) / name
            rel = path.relative_to(minimized)
            if str(rel).startswith("etc/ld.so."):
                continue  # generated
            assert (debian_root / rel).read_bytes() == path.read_bytes(), rel


def test_scripts_in_debian_root(debian_root: Path, tmp_path: Path) -> None:
    """#!/usr/bin/env python3 with includefolders, and #!/bin/sh -e, run in the result."""
    app = debian_root / "opt/minicon-test"
    app.mkdir(parents=True, exist_ok=True)
    (app / "py").write_text('#!/usr/bin/env python3\nimport re\nprint(re.findall("[0-9]", "a1"))\n')
    (app / "sh").write_text("#!/bin/sh -e\nfalse\necho unreachable\n")
    for f in ("py", "sh"):
        (app / f).chmod(0o755)
    tar = tmp_path / "s.tar"
    run_minicon(
        "--root",
        str(debian_root),
        "--plugin=scripts:includefolders",
        "-t",
        str(tar),
        "/opt/minicon-test/py",
        "/opt/minicon-test/sh",
    )
    d = extract(tar, tmp_path / "s")
    proc = chroot(d, "/opt/minicon-test/py")
    assert proc.stdout == b"['1']\n", proc.stderr
    proc = chroot(d, "/opt/minicon-test/sh")
    assert proc.returncode == 1 and proc.stdout == b""  # -e reached the interpreter
    assert (d / "usr/bin/env").is_file() and (d / "bin").is_symlink()

    plain = tmp_path / "plain.tar"
    run_minicon("--root", str(debian_root), "-t", str(plain), "/opt/minicon-test/py")
    bare = extract(plain, tmp_path / "p")
    assert chroot(bare, "/opt/minicon-test/py").returncode != 0  # no stdlib without the folders


def test_rootfs_output_runs(debian_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "rootfs"
    run_minicon(
        "--root",
        str(debian_root),
        "-r",
        str(out),
        "-E",
        "bash -c 'echo hi'",
        "-e",
        "/usr/share/doc",
    )
    assert chroot(out, "/bin/bash", "-c", "echo ok").stdout == b"ok\n"
    subprocess.run(["rm", "-rf", str(out)], check=True)
