"""The strace plugin on the host root: real tracing, and the four modes differing as designed."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import chroot, extract, run_minicon

pytestmark = pytest.mark.usefixtures("as_root")
CC = Callable[..., Path]

PLUGIN_HOST = r"""
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
int main(int c, char **v) {
    char p[4096];
    snprintf(p, sizeof p, "%s/plugins", v[1]);
    DIR *d = opendir(p); while (readdir(d)) {} closedir(d);      /* discover plugins */
    snprintf(p, sizeof p, "%s/plugins/b.so", v[1]); close(open(p, O_RDONLY));
    snprintf(p, sizeof p, "%s/data/used.txt", v[1]); close(open(p, O_RDONLY));
    struct stat st; snprintf(p, sizeof p, "%s/checked/probe", v[1]); stat(p, &st);
    snprintf(p, sizeof p, "%s/nowhere/x", v[1]); open(p, O_RDONLY);  /* a failed lookup */
    return 0;
}
"""


@pytest.fixture
def tree() -> Iterator[Path]:
    """A tree outside /tmp (whose contents minicon leaves out unless included)."""
    base = Path(tempfile.mkdtemp(prefix="minicon-modes-", dir="/var/tmp"))
    for rel in (
        "plugins/a.so",
        "plugins/b.so",
        "plugins/c.so",
        "data/used.txt",
        "data/sibling.txt",
        "checked/probe",
        "checked/other",
    ):
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(rel)
    yield base
    shutil.rmtree(base)


def names(tar: Path, base: Path) -> set[str]:
    prefix = "." + str(base) + "/"
    with tarfile.open(tar) as tf:
        return {n[len(prefix) :] for n in tf.getnames() if n.startswith(prefix)}


@pytest.mark.parametrize(
    ("mode", "present", "absent"),
    [
        (
            "skinny",
            {"plugins/b.so", "data/used.txt", "checked/probe", "plugins"},
            {"plugins/a.so", "data/sibling.txt", "checked/other", "nowhere"},
        ),
        (
            "slim",
            {"plugins/a.so", "plugins/b.so", "plugins/c.so"},
            {"data/sibling.txt", "checked/other"},
        ),
        ("regular", {"plugins/a.so", "data/sibling.txt"}, {"checked/other"}),
        ("loose", {"plugins/a.so", "data/sibling.txt", "checked/other"}, set()),
    ],
)
def test_modes_differ(
    cc: CC, tmp_path: Path, tree: Path, mode: str, present: set[str], absent: set[str]
) -> None:
    prog = cc(tmp_path / "plugin-host", PLUGIN_HOST)
    tar = tmp_path / f"{mode}.tar"
    run_minicon(f"--plugin=strace:mode={mode}", "-t", str(tar), "-E", f"{prog} {tree}")
    got = names(tar, tree)
    assert present <= got, (mode, got)
    assert not (absent & got), (mode, got)
    with tarfile.open(tar) as tf:
        all_names = tf.getnames()
    assert "./usr/share/doc" not in all_names and "./etc/passwd" not in all_names  # no sweeping
    assert not any(n.startswith("./proc/") for n in all_names)


def test_traced_files_make_the_result_run(tmp_path: Path) -> None:
    """Static closure alone lacks what only tracing finds: the data a program reads."""
    tar = tmp_path / "t.tar"
    run_minicon("--plugin=strace", "-t", str(tar), "-E", "cat /etc/os-release")
    d = extract(tar, tmp_path / "d")
    assert chroot(d, "/bin/cat", "/etc/os-release").returncode == 0
    static = tmp_path / "s.tar"
    run_minicon("-t", str(static), "-E", "cat /etc/os-release")
    s = extract(static, tmp_path / "s")
    assert chroot(s, "/bin/cat", "/etc/os-release").returncode != 0  # the check can fail


def test_execfile_and_per_command_seconds(tmp_path: Path) -> None:
    execfile = tmp_path / "samples"
    execfile.write_text("# samples\ncat /etc/hostname\nls /nothing\n")
    tar = tmp_path / "e.tar"
    proc = run_minicon(
        f"--plugin=strace:execfile={execfile}",
        "-v",
        "-t",
        str(tar),
        "cat",
        "-E",
        "seconds=2,sleep 30",
    )
    assert b"traced cat /etc/hostname" in proc.stderr
    assert b"traced ls /nothing" not in proc.stderr  # ls was not asked for
    assert b"traced sleep 30: " in proc.stderr and b"killed at the time limit" in proc.stderr
    with tarfile.open(tar) as tf:
        assert "./etc/hostname" in tf.getnames()


READS_DATA = r"""
#include <fcntl.h>
#include <unistd.h>
int main(void) {
    char buf[64];
    int fd = open("/usr/share/app/data.txt", O_RDONLY);   /* found only by tracing */
    if (fd < 0) return 1;
    ssize_t n = read(fd, buf, sizeof buf);
    write(1, buf, n > 0 ? n : 0);
    close(open("/usr/share/app/logs/trace.log", O_RDONLY));
    close(open("/var/lib/app/state", O_RDONLY));           /* written by an earlier -E */
    return 0;
}
"""


def test_trace_inside_root(cc: CC, mini_root: Path, tmp_path: Path) -> None:
    """--root with tracing: programs run chrooted in an overlay of the root; the tar runs."""
    cc(mini_root / "usr/bin/reader", READS_DATA)
    (mini_root / "usr/share/app/logs").mkdir(parents=True)
    (mini_root / "usr/share/app/data.txt").write_text("data from the root\n")
    (mini_root / "usr/share/app/logs/trace.log").write_text("log")
    (mini_root / "usr/share/app/logs/kept-by-I").write_text("I")
    (mini_root / "var/lib").mkdir(parents=True)
    listing = sorted(p for p in mini_root.rglob("*"))
    tar = tmp_path / "r.tar"
    run_minicon(
        "--root",
        str(mini_root),
        "--plugin=strace:exclude=/usr/share/app/logs",
        "-t",
        str(tar),
        "-E",
        "sh -c 'mkdir -p /var/lib/app && echo s > /var/lib/app/state'",
        "-E",
        "reader",
        "-I",
        "/usr/share/app/logs/kept-by-I",
    )
    assert sorted(p for p in mini_root.rglob("*")) == listing  # nothing written to the source
    d = extract(tar, tmp_path / "d")
    assert chroot(d, "/usr/bin/reader").stdout == b"data from the root\n"
    assert not (d / "usr/share/app/logs/trace.log").exists()  # exclude= drops a traced path
    assert (d / "usr/share/app/logs/kept-by-I").exists()  # but not what -I asks for
    assert not (d / "var/lib/app").exists()  # scratch writes are not part of the root
    static = tmp_path / "s.tar"
    run_minicon("--root", str(mini_root), "-t", str(static), "reader")
    s = extract(static, tmp_path / "s")
    assert chroot(s, "/usr/bin/reader").returncode == 1  # without tracing it cannot work
