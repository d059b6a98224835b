"""strace logs read back into events: real strace runs compared with our own tracer."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import missing
from tracer.events import Kind
from tracer.ptrace_backend import Options, PtraceBackend
from tracer.strace_log import StraceLog, StraceLogError, read_log, unescape

CC = Callable[..., Path]

PROGRAM = r"""
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int c, char **v) {
    struct stat st;
    int dfd = open(v[1], O_RDONLY | O_DIRECTORY);
    for (int i = 2; i < c; i++) close(openat(dfd, v[i], O_RDONLY));   /* dirfd-relative */
    fstatat(dfd, "missing", &st, 0);
    DIR *d = fdopendir(dup(dfd)); while (readdir(d)) {} closedir(d);
    if (fork() == 0) { chdir(v[1]); close(open(v[2], O_RDONLY)); _exit(0); }  /* cwd in a child */
    wait(0);
    return 0;
}
"""
NAMES = ["plain", "sp ace", "new\nline", "bad\xffbyte", "angle>bracket", 'quo"te']


def _strace(argv: list[str], log: Path, *flags: str) -> None:
    if shutil.which("strace") is None:
        missing("strace is not installed (apt-get install strace)")
    subprocess.run(["strace", "-f", *flags, "-o", str(log), *argv], check=True)


@pytest.mark.usefixtures("as_root")
@pytest.mark.parametrize("flags", [("-y",), (), ("-tt", "-x")], ids=["y", "plain", "tt-x"])
def test_same_paths_as_our_tracer(cc: CC, tmp_path: Path, flags: tuple[str, ...]) -> None:
    d = tmp_path / "d"
    d.mkdir()
    names = [os.fsencode(n.replace("\xff", "\udcff")) for n in NAMES]
    for n in names:
        with open(os.fsencode(d) + b"/" + n, "wb"):
            pass
    prog = cc(tmp_path / "p", PROGRAM)
    argv = [str(prog), str(d), *(os.fsdecode(n) for n in names)]
    log = tmp_path / "log"
    _strace(argv, log, *flags)
    theirs = read_log(str(log))
    from_log = {(e.kind, e.path, e.errno) for e in theirs.events()}
    ours = {(e.kind, e.path, e.errno) for e in PtraceBackend(Options(argv)).events()}

    def mine(kind: Kind) -> set[tuple[bytes, int]]:
        return {(p, err) for k, p, err in from_log if k == kind and p.startswith(os.fsencode(d))}

    real = os.fsencode(os.path.realpath(d))
    expected = {(os.fsencode(d) + b"/" + n, 0) for n in names}
    assert expected <= mine(Kind.OPEN)
    assert (os.fsencode(d) + b"/missing", 2) in mine(Kind.STAT)
    assert (os.fsencode(d), 0) in mine(Kind.LIST)
    # the same accesses as our tracer, once directory symlinks are resolved (tmp is real here)
    assert real == os.fsencode(d)
    for kind in (Kind.OPEN, Kind.STAT, Kind.LIST, Kind.CHDIR):
        ours_k = {(p, err) for k, p, err in ours if k == kind and p.startswith(real)}
        assert mine(kind) == ours_k, kind
    assert theirs.result is not None and theirs.result.exit_code == 0
    assert len(theirs.result.processes) == 2
    assert theirs.skipped == 0


def test_unfinished_and_resumed_lines_join() -> None:
    lines = [
        b'10 openat(AT_FDCWD, "/a", O_RDONLY <unfinished ...>\n',
        b'11 execve("/bin/true", ["true"], 0x1 /* 3 vars */ <unfinished ...>\n',
        b"10 <... openat resumed>) = -1 ENOENT (No such file or directory)\n",
        b"11 <... execve resumed>) = 0\n",
        b"11 +++ exited with 0 +++\n",
        b"10 +++ killed by SIGKILL +++\n",
    ]
    log = StraceLog(lines)
    got = [(e.kind, e.path, e.errno) for e in log.events()]
    assert got == [(Kind.OPEN, b"/a", 2), (Kind.EXEC, b"/bin/true", 0)]
    assert log.result is not None and log.result.signal == 9


def test_not_a_log() -> None:
    with pytest.raises(StraceLogError, match="not a log"):
        list(StraceLog([b"this is not strace output\n", b"nor this\n"]).events())
    log = StraceLog([b'1 openat(AT_FDCWD, "/x", O_RDONLY\n', b'1 stat("/y", {}) = 0\n'])
    assert [e.path for e in log.events()] == [b"/y"] and log.skipped == 1  # a cut line


def _escape(data: bytes) -> bytes:
    """Escape as strace does: C escapes for controls, octal for other non-printables."""
    out = bytearray()
    for b in data:
        if b == 0x0A:
            out += b"\\n"
        elif b in (0x22, 0x5C):
            out += b"\\" + bytes([b])
        elif 0x20 <= b < 0x7F:
            out.append(b)
        else:
            out += b"\\%03o" % b
    return bytes(out)


@given(st.binary(max_size=64))
def test_unescape_round_trip(data: bytes) -> None:
    assert unescape(_escape(data)) == data
    assert unescape(b"".join(b"\\x%02x" % b for b in data)) == data
