"""The ptrace backend on tiny real programs: every recorded path, resolved as the kernel saw it."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tracer.errors import TraceeStartError
from tracer.events import Event, Kind
from tracer.ptrace_backend import Options, PtraceBackend

from .programs import THREADS

pytestmark = pytest.mark.usefixtures("as_root")
CC = Callable[..., Path]


def trace(argv: list[str], **kw: object) -> tuple[list[Event], PtraceBackend]:
    backend = PtraceBackend(Options(argv, **kw))  # type: ignore[arg-type]
    return list(backend.events()), backend


def has(events: list[Event], kind: Kind, path: bytes | str, err: int = 0) -> bool:
    p = os.fsencode(path)
    return any(e.kind == kind and e.path == p and e.errno == err for e in events)


@pytest.fixture(params=[True, False], ids=["seccomp", "every-syscall"])
def use_seccomp(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_openat_dirfd_chdir_enoent_getdents(cc: CC, tmp_path: Path, use_seccomp: bool) -> None:
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "sub/f").write_text("x")
    (d / "link").symlink_to("sub")
    prog = cc(
        tmp_path / "p",
        r"""
#include <fcntl.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/stat.h>
int main(int c, char **v) {
    int dfd = open(v[1], O_RDONLY | O_DIRECTORY);
    close(openat(dfd, "link/f", O_RDONLY));          /* dirfd-relative, through a symlink */
    chdir(v[1]);
    close(open("sub/../sub/f", O_RDONLY));           /* cwd-relative with .. */
    open("missing", O_RDONLY);                       /* ENOENT is kept */
    struct stat st; fstatat(dfd, "sub", &st, 0);
    DIR *dir = opendir("sub"); while (readdir(dir)) {} closedir(dir);
    mkdir("made", 0755);
    return 3;
}
""",
    )
    events, backend = trace([str(prog), str(d)], use_seccomp=use_seccomp)
    real = os.fsencode(os.path.realpath(d))
    assert has(events, Kind.EXEC, str(prog))
    assert has(events, Kind.OPEN, real + b"/sub/f")  # dirfd + symlinked dir resolved
    assert has(events, Kind.OPEN, real + b"/missing", errno.ENOENT)
    assert has(events, Kind.STAT, real + b"/sub")
    assert has(events, Kind.LIST, real + b"/sub")
    assert has(events, Kind.CHDIR, real)
    assert has(events, Kind.MKDIR, real + b"/made")
    assert backend.result is not None and backend.result.exit_code == 3


def test_script_exec_fork_threads_and_names(cc: CC, tmp_path: Path) -> None:
    odd = tmp_path / "odd"
    odd.mkdir()
    names = [b"new\nline", b"sp ace", b"bad\xffbyte"]
    for n in names:
        with open(os.fsencode(odd) + b"/" + n, "wb"):
            pass
    script = tmp_path / "s.sh"
    script.write_text('#!/bin/sh\ncat "$@" >/dev/null\n')
    script.chmod(0o755)
    prog = cc(tmp_path / "p", THREADS, "-pthread")
    p = [os.fsencode(odd) + b"/" + n for n in names]
    events, backend = trace(
        [str(prog), str(script), os.fsdecode(p[0]), os.fsdecode(p[1]), os.fsdecode(p[2])]
    )
    assert has(events, Kind.OPEN, p[0]) and has(events, Kind.OPEN, p[1])  # from two threads
    assert has(events, Kind.EXEC, str(script))  # the script, not only its interpreter
    assert has(events, Kind.OPEN, p[2])  # opened by cat, a grandchild
    assert any(e.kind == Kind.EXEC and e.path.endswith(b"/true") and e.errno == 0 for e in events)
    assert backend.result is not None
    argvs = [pr.argv for pr in backend.result.processes.values()]
    assert any(a[:1] == (b"cat",) for a in argvs), argvs  # even if cat exec'd before the fork event
    assert all(
        pr.exit_code is not None or pr.signal is not None
        for pr in backend.result.processes.values()
    )


def test_time_limit_kills_a_double_forking_daemon(cc: CC, tmp_path: Path) -> None:
    marker = tmp_path / "daemon-ran"
    prog = cc(
        tmp_path / "daemon",
        r"""
#include <fcntl.h>
#include <unistd.h>
int main(int c, char **v) {
    if (fork() > 0) return 0;
    setsid();
    if (fork() > 0) return 0;
    close(open(v[1], O_CREAT | O_WRONLY, 0644));
    for (;;) pause();
}
""",
    )
    started = time.monotonic()
    events, backend = trace([str(prog), str(marker)], seconds=1.0)
    assert time.monotonic() - started < 10
    assert has(events, Kind.OPEN, str(marker))
    assert backend.result is not None and backend.result.timed_out
    left = subprocess.run(["pgrep", "-f", str(prog)], capture_output=True)
    assert left.stdout == b""  # nothing left running
    daemons = [p for p in backend.result.processes.values() if p.signal == signal.SIGKILL]
    assert daemons


def test_killed_by_a_signal(tmp_path: Path) -> None:
    _, backend = trace(["sh", "-c", "kill -TERM $$"])
    assert backend.result is not None and backend.result.signal == signal.SIGTERM


def test_signals_are_delivered(tmp_path: Path) -> None:
    _, backend = trace(["sh", "-c", "trap 'exit 7' USR1; kill -USR1 $$; sleep 5"])
    assert backend.result is not None and backend.result.exit_code == 7


def test_unknown_program() -> None:
    with pytest.raises(TraceeStartError):
        trace(["no-such-program-minicon"])


def test_clean_environment_and_cwd(tmp_path: Path) -> None:
    out = tmp_path / "env"
    events, _ = trace(["sh", "-c", f"env > {out}; ls . > /dev/null"])
    env = out.read_text()
    assert "PATH=" in env and "PYTEST" not in env
    assert has(events, Kind.LIST, "/")  # cwd is / unless given


def test_filter_stops_only_on_recorded_lookups(cc: CC, tmp_path: Path) -> None:
    """fstat (newfstatat with AT_EMPTY_PATH), read and getpid never stop; stat does, once."""
    prog = cc(
        tmp_path / "busy",
        r"""
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
int main(int c, char **v) {
    struct stat st; char b[8];
    int fd = open(v[1], O_RDONLY);
    for (int i = 0; i < 2000; i++) { fstat(fd, &st); pread(fd, b, 1, 0); getpid(); }
    for (int i = 0; i < 100; i++) stat(v[1], &st);
    return 0;
}
""",
    )
    target = tmp_path / "f"
    target.write_text("x")
    events, backend = trace([str(prog), str(target)])
    stats = [e for e in events if e.kind == Kind.STAT and e.path == os.fsencode(target)]
    assert len(stats) == 100
    assert backend.stops < 400  # the loader's calls, 100 stats, one open: not 6000
    _, every = trace([str(prog), str(target)], use_seccomp=False)
    assert every.stops > 6000  # the fallback stops on each syscall (entry and exit)


INT80_PATH = r"""
static const char path[] = "/int80-path";
int main(void) {
    long ret;
    /* 32-bit readlink (85) from 64-bit code, with rdi pointing at a path: read as a 64-bit
       call, 85 is creat(rdi) */
    __asm__ volatile ("int $0x80" : "=a"(ret) : "a"(85L), "b"(path), "c"(0L), "d"(0L),
                      "D"(path) : "memory");
    return ret == -38;  /* ENOSYS: no 32-bit syscalls in this kernel */
}
"""


def test_32_bit_syscalls_are_not_recorded(cc: CC, tmp_path: Path, use_seccomp: bool) -> None:
    """A 32-bit syscall has other numbers and arguments: never read as a 64-bit one (the filter
    lets it through; with every syscall stopping, its architecture tells)."""
    prog = cc(tmp_path / "int80", INT80_PATH, "-no-pie")  # the path's address fits 32 bits
    if subprocess.run([prog], check=False).returncode != 0:
        pytest.skip("this kernel has no 32-bit syscalls (IA32 emulation off)")
    events, _ = trace([str(prog)], use_seccomp=use_seccomp)
    assert not [e for e in events if b"int80-path" in e.path]
    assert has(events, Kind.EXEC, prog)
