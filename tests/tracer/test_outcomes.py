"""Outcomes learned at the entry stop agree with what the kernel returned to the program."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tracer.events import Kind
from tracer.ptrace_backend import Options, PtraceBackend

pytestmark = pytest.mark.usefixtures("as_root")
CC = Callable[..., Path]

# Each call is made by the program, which writes "<kind> <errno> <path>" for it to v[2].
PROBE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
static FILE *out; static char p[4096]; static const char *base;
static const char *at(const char *rel) { snprintf(p, sizeof p, "%s/%s", base, rel); return p; }
static void note(const char *kind, int res) {
    fprintf(out, "%s %d %s\n", kind, res < 0 ? errno : 0, p);
}
int main(int c, char **v) {
    base = v[1]; out = fopen(v[2], "w"); setvbuf(out, 0, _IONBF, 0);
    struct stat st; char buf[64]; int fd;
    fd = open(at("file"), O_RDONLY); note("open", fd); if (fd >= 0) close(fd);
    fd = open(at("file"), O_RDONLY | O_DIRECTORY); note("open", fd);
    fd = open(at("link-to-file"), O_RDONLY | O_NOFOLLOW); note("open", fd);
    fd = open(at("link-to-file"), O_PATH | O_NOFOLLOW); note("open", fd); if (fd >= 0) close(fd);
    fd = open(at("dangling"), O_RDONLY); note("open", fd);
    fd = open(at("file/below"), O_RDONLY); note("open", fd);
    fd = open(at("dir"), O_RDONLY | O_DIRECTORY); note("open", fd); if (fd >= 0) close(fd);
    fd = open(at("link-to-dir"), O_RDONLY | O_DIRECTORY); note("open", fd); if (fd >= 0) close(fd);
    note("stat", stat(at("dangling"), &st));
    note("stat", lstat(at("dangling"), &st));
    note("stat", stat(at("loop"), &st));
    note("stat", access(at("missing"), F_OK));
    note("stat", (int)readlink(at("link-to-file"), buf, sizeof buf));
    note("stat", fstatat(AT_FDCWD, at("link-to-dir/"), &st, AT_SYMLINK_NOFOLLOW));
    note("chdir", chdir(at("file")));
    note("chdir", chdir(at("link-to-dir")));
    return 0;
}
"""


def test_outcomes_match_the_kernel(cc: CC, tmp_path: Path) -> None:
    base = tmp_path / "t"
    (base / "dir").mkdir(parents=True)
    (base / "file").write_text("x")
    (base / "link-to-file").symlink_to("file")
    (base / "link-to-dir").symlink_to("dir")
    (base / "dangling").symlink_to("nowhere")
    (base / "loop").symlink_to("loop")
    prog = cc(tmp_path / "probe", PROBE)
    report = tmp_path / "report"
    backend = PtraceBackend(Options([str(prog), str(base), str(report)]))
    events = list(backend.events())
    lines = report.read_bytes().splitlines()
    assert len(lines) == 16
    real = os.path.realpath(base).encode()
    checked = 0
    for line in lines:
        kind, err, path = line.split(b" ", 2)
        path = path.replace(os.fsencode(base), real)
        if path.endswith(b"/"):
            path = path.rstrip(b"/")
        found = [e for e in events if e.kind == Kind(kind.decode()) and e.path == path]
        assert found, (line, [e for e in events if e.path.startswith(real)])
        assert int(err) in {e.errno for e in found}, (line, found)
        checked += 1
    assert checked == 16
    seen_errnos = {int(line.split()[1]) for line in lines}
    assert {0, 2, 20, 40} <= seen_errnos  # ok, ENOENT, ENOTDIR, ELOOP all exercised
