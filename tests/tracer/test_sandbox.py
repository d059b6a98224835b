"""Tracing inside --root: chrooted in a throw-away overlay, paths mapped back, source untouched."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tracer.errors import TraceeStartError
from tracer.events import Event, Kind
from tracer.ptrace_backend import Options, PtraceBackend
from tracer.sandbox import Sandbox

pytestmark = pytest.mark.usefixtures("as_root")
CC = Callable[..., Path]


def snapshot(root: Path) -> dict[bytes, tuple[int, int, bytes]]:
    """Every entry under root: mode, size and link target or content digest."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            extra = os.readlink(p) if os.path.islink(p) else b""
            out[p] = (st.st_mode, st.st_size if not os.path.isdir(p) else 0, extra)
    return out


def run(sandbox: Sandbox, argv: list[str], **kw: object) -> tuple[list[Event], PtraceBackend]:
    backend = PtraceBackend(Options(argv, chroot=sandbox.merged, **kw))  # type: ignore[arg-type]
    return list(backend.events()), backend


def has(events: list[Event], kind: Kind, path: bytes, err: int = 0) -> bool:
    return any(e.kind == kind and e.path == path and e.errno == err for e in events)


CHROOTED = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
int main(void) {
    struct stat st;
    close(open("/etc/conf", O_RDONLY));          /* an absolute symlink, followed in the root */
    stat("/lib/nothing-here", &st);              /* /lib -> usr/lib, resolved in the root */
    mkdir("/var/state", 0755);                   /* a write: lands in the scratch layer */
    close(open("/var/state/new", O_CREAT | O_WRONLY, 0644));
    chdir("/opt");
    close(open("real/conf", O_RDONLY));          /* cwd-relative inside the root */
    chroot("/opt");                              /* a tracee that chroots further */
    close(open("/real/conf", O_RDONLY));         /* reported as /opt/real/conf */
    return 0;
}
"""


def test_chrooted_paths_are_the_roots_and_the_source_is_untouched(
    cc: CC, mini_root: Path, tmp_path: Path
) -> None:
    (mini_root / "opt/real").mkdir(parents=True)
    (mini_root / "opt/real/conf").write_text("conf")
    (mini_root / "etc/conf").symlink_to("/opt/real/conf")  # absolute: means the root's /opt
    (mini_root / "var").mkdir()
    cc(mini_root / "usr/bin/prog", CHROOTED)
    before = snapshot(mini_root)
    with Sandbox(mini_root) as sandbox:
        base = sandbox.base
        assert base in Path("/proc/self/mountinfo").read_bytes()
        events, backend = run(sandbox, ["/usr/bin/prog"])
    assert backend.result is not None and backend.result.exit_code == 0
    assert has(events, Kind.EXEC, b"/usr/bin/prog")
    assert has(events, Kind.OPEN, b"/etc/conf")
    assert has(events, Kind.STAT, b"/usr/lib/nothing-here", errno.ENOENT)
    assert has(events, Kind.MKDIR, b"/var/state")
    assert has(events, Kind.OPEN, b"/var/state/new")
    assert has(events, Kind.CHDIR, b"/opt")
    assert has(events, Kind.OPEN, b"/opt/real/conf")
    assert sum(1 for e in events if e.path == b"/opt/real/conf" and e.kind == Kind.OPEN) == 2
    assert not any(str(tmp_path).encode() in e.path for e in events)  # no host path leaks
    assert snapshot(mini_root) == before  # the source root never changes
    assert base not in Path("/proc/self/mountinfo").read_bytes()  # everything unmounted
    assert not os.path.exists(base)


def test_runs_share_one_scratch_layer_thrown_away_after(mini_root: Path) -> None:
    before = snapshot(mini_root)
    with Sandbox(mini_root) as sandbox:
        _, first = run(sandbox, ["/bin/sh", "-c", "echo kept > /etc/written"])
        events, second = run(sandbox, ["/bin/sh", "-c", "read x < /etc/written; exit $?"])
        assert has(events, Kind.OPEN, b"/etc/written")  # the first run's file is there
        assert first.result is not None and first.result.exit_code == 0
        assert second.result is not None and second.result.exit_code == 0
    assert snapshot(mini_root) == before
    with Sandbox(mini_root) as sandbox:
        events, _ = run(sandbox, ["/bin/sh", "-c", "read x < /etc/written"])
        assert has(events, Kind.OPEN, b"/etc/written", errno.ENOENT)  # a new scratch layer


def test_proc_dev_and_tmp_inside(mini_root: Path) -> None:
    script = (
        "echo > /dev/null && read l < /proc/self/status && echo x > /tmp/t "
        "&& [ -c /dev/urandom ] && [ -d /dev/pts ] && [ -d /proc/1 ]"
    )
    with Sandbox(mini_root) as sandbox:
        events, backend = run(sandbox, ["/bin/sh", "-c", script])
    assert backend.result is not None and backend.result.exit_code == 0
    assert has(events, Kind.OPEN, b"/dev/null")
    assert has(events, Kind.OPEN, b"/proc/self/status")
    assert not (mini_root / "tmp/t").exists()


def test_mounts_never_reach_the_host_namespace(mini_root: Path) -> None:
    """The overlay lives in a private mount namespace: even a SIGKILLed tracer leaks nothing."""
    code = (
        "import os, sys, time\n"
        "from tracer.sandbox import Sandbox\n"
        "s = Sandbox(sys.argv[1]); s.open()\n"
        "print(s.base.decode(), flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(mini_root)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().strip().encode()
        assert base
        assert base in Path(f"/proc/{proc.pid}/mountinfo").read_bytes()
        assert base not in Path("/proc/1/mountinfo").read_bytes()
    finally:
        proc.kill()
        proc.wait()
    assert base not in Path("/proc/1/mountinfo").read_bytes()


def test_unknown_program_in_the_root(mini_root: Path) -> None:
    with Sandbox(mini_root) as sandbox, pytest.raises(TraceeStartError, match="not found"):
        run(sandbox, ["python3"])  # on the host's PATH, not in this root
