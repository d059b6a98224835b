"""The eBPF backend: the same events as the ptrace backend on the same real programs."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shlex
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tracer.errors import TraceeStartError
from tracer.events import Event
from tracer.ptrace_backend import Options, PtraceBackend
from tracer.sandbox import Sandbox

from ..conftest import build_debian_root, missing
from .programs import THREADS

pytestmark = pytest.mark.usefixtures("as_root")
CC = Callable[..., Path]


@pytest.fixture
def ebpf() -> type:
    from tracer.ebpf_backend import EbpfBackend, available

    reason = available()
    if reason is not None:
        missing(f"eBPF backend unavailable: {reason}")
    return EbpfBackend


def events(backend: object) -> set[tuple[str, bytes, int]]:
    got: list[Event] = list(backend.events())  # type: ignore[attr-defined]
    return {(e.kind.value, e.path, e.errno) for e in got}


PROGRAM = r"""
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int c, char **v) {
    struct stat st;
    int dfd = open(v[1], O_RDONLY | O_DIRECTORY);
    int dup_fd = fcntl(dfd, F_DUPFD_CLOEXEC, 10);
    close(openat(dup_fd, "sub/f", O_RDONLY));             /* through a duplicated dirfd */
    fstatat(dfd, "missing", &st, 0);
    fstatat(dfd, "sub", &st, AT_EMPTY_PATH);  /* a name, and "about the fd": not recorded */
    DIR *d = fdopendir(dup(dfd)); while (readdir(d)) {} closedir(d);
    chdir(v[1]);
    close(open("link/f", O_RDONLY));                      /* cwd-relative, symlinked dir */
    mkdir("made", 0755);
    readlink("link", (char[64]){0}, 64);
    if (fork() == 0) { execl("/bin/true", "true", (char *)0); _exit(1); }
    wait(0);
    execl("/nonexistent", "x", (char *)0);                 /* a failed exec */
    return 0;
}
"""


REFUSED = """
import json, sys
from tracer import bpfsys, ebpf_backend
def refuse(*args):
    raise bpfsys.BpfError(22, "Invalid argument (as a kernel without tp_btf says)")
bpfsys.load_btf_raw_tracepoint = refuse
b = ebpf_backend.EbpfBackend(ebpf_backend.Options(sys.argv[1:]))
got = sorted({(e.kind.value, e.path.hex(), e.errno) for e in b.events()})
print(json.dumps([ebpf_backend._Loaded._instance.direct, got]))
"""


def test_same_events_as_ptrace(ebpf: type, cc: CC, tmp_path: Path) -> None:
    """Both flavours of the syscall probe: the BTF-typed one (plain loads of the kernel's
    fields), and the plain raw tracepoint a kernel that refuses it gets."""
    from tracer.ebpf_backend import _Loaded

    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "sub/f").write_text("x")
    (d / "link").symlink_to("sub")
    prog = cc(tmp_path / "p", PROGRAM)
    theirs = events(ebpf(Options([str(prog), str(d)])))
    assert _Loaded._instance is not None
    assert _Loaded._instance.direct == os.path.exists("/sys/kernel/btf/vmlinux")
    (d / "made").rmdir()
    out = subprocess.run(
        [sys.executable, "-c", REFUSED, str(prog), str(d)], capture_output=True, check=True
    ).stdout
    direct, plain = json.loads(out.splitlines()[-1])
    assert not direct
    assert {(k, bytes.fromhex(p), e) for k, p, e in plain} == theirs
    (d / "made").rmdir()
    ours = events(PtraceBackend(Options([str(prog), str(d)])))
    assert theirs == ours
    real = os.fsencode(os.path.realpath(d))
    assert ("open", real + b"/sub/f", 0) in theirs
    assert ("stat", real + b"/missing", 2) in theirs
    assert ("list", real, 0) in theirs
    assert ("exec", b"/nonexistent", 2) in theirs


def test_threads_vfork_spawn_and_processes(ebpf: type, cc: CC, tmp_path: Path) -> None:
    """Threads are followed and end (the run does not wait for them forever), and are no
    processes; every process has its own argv and exit status."""
    files = [tmp_path / name for name in ("a b", "c\nd", "e")]
    for f in files:
        f.write_text("x")
    script = tmp_path / "s.sh"
    script.write_text('#!/bin/sh\ncat "$@" >/dev/null\nexit 3\n')
    script.chmod(0o755)
    prog = cc(tmp_path / "p", THREADS, "-pthread")
    argv = [str(prog), str(script), *map(str, files)]
    started = time.monotonic()
    backend = ebpf(Options(argv))
    theirs = events(backend)
    assert time.monotonic() - started < 5
    ptrace = PtraceBackend(Options(argv))
    assert theirs == events(ptrace)
    assert ("open", os.fsencode(tmp_path / "a b"), 0) in theirs
    result = backend.result
    assert result is not None and result.exit_code == 4 and not result.timed_out
    procs = sorted(result.processes.values(), key=lambda p: p.pid)
    # the kernel's argv (a script's interpreter first), as ptrace records it
    assert [p.argv[0] for p in procs] == [str(prog).encode(), b"/bin/sh", b"cat", b"true"]
    assert procs[1].argv[1] == str(script).encode()
    assert [p.exit_code for p in procs] == [4, 3, 0, 0]
    assert processes(result) == processes(ptrace.result)
    assert backend.lost_events == 0 and backend.unresolved == 0
    assert traced_left() == []


def processes(result: object) -> list[tuple[tuple[bytes, ...], int | None, int | None]]:
    """Argv and status of each process of a run, in the order they started."""
    procs = sorted(result.processes.values(), key=lambda p: p.pid)  # type: ignore[attr-defined]
    return [(p.argv, p.exit_code, p.signal) for p in procs]


KILLED = ["/bin/sh", "-c", "/bin/sh -c 'kill -KILL $$'; /bin/sh -c 'exit 7'; exit 5"]


def test_statuses_of_killed_and_exited_processes(ebpf: type) -> None:
    """Exit codes and fatal signals of every process, as ptrace has them (read from the exiting
    task, at the offset of the kernel's BTF)."""
    backend = ebpf(Options(KILLED))
    events(backend)
    ptrace = PtraceBackend(Options(KILLED))
    events(ptrace)
    assert processes(backend.result) == processes(ptrace.result)
    assert [(code, sig) for _, code, sig in processes(backend.result)] == [
        (5, None),
        (None, 9),
        (7, None),
    ]


NO_BTF = """
import functools, json, sys
from tracer import ebpf_backend, ebpf_program
ebpf_backend.bpf_program = functools.partial(ebpf_program.bpf_program, use_btf=False)
assert "sys_enter" in ebpf_backend.bpf_program()
out = []
for argv in json.loads(sys.argv[1]):
    b = ebpf_backend.EbpfBackend(ebpf_backend.Options(argv))
    list(b.events())
    procs = sorted(b.result.processes.values(), key=lambda p: p.pid)
    out.append([[[a.decode() for a in p.argv], p.exit_code, p.signal] for p in procs])
    out[-1].append(b.unresolved)
print(json.dumps(out))
"""


def test_statuses_without_btf(ebpf: type, tmp_path: Path) -> None:
    """A kernel without BTF: exit codes come from exit/exit_group at their entry (a process
    killed by a signal, or a 32-bit program, then has none), and a 32-bit program's calls are
    told apart by their code segment."""
    runs = [KILLED]
    elf32 = i386_program(tmp_path)
    if elf32 is not None:
        runs.append(["/bin/sh", "-c", f"{shlex.quote(str(elf32))} one two; exit 0"])
    out = subprocess.run(
        [sys.executable, "-c", NO_BTF, json.dumps(runs)], capture_output=True, check=True, text=True
    ).stdout
    got = json.loads(out.splitlines()[-1])
    assert [(code, sig) for _, code, sig in got[0][:-1]] == [(5, None), (None, None), (7, None)]
    if elf32 is not None:
        # its argv; no status: its exit is a 32-bit call, which the entry probe does not read
        assert got[1][1] == [[str(elf32), "one", "two"], None, None] and got[1][-1] == 0


def i386_program(tmp_path: Path) -> Path | None:
    """A static 32-bit x86 program (written here: no multilib compiler needed) that exits
    with 7 through int 0x80; None where the kernel runs no 32-bit programs."""
    code = bytes.fromhex("b801000000bb07000000cd80")  # mov eax,1; mov ebx,7; int 0x80
    base, ehdr, phdr = 0x08048000, 52, 32
    size = ehdr + phdr + len(code)
    header = b"\x7fELF" + bytes([1, 1, 1]) + bytes(9)
    header += struct.pack(
        "<HHIIIIIHHHHHH", 2, 3, 1, base + ehdr + phdr, ehdr, 0, 0, ehdr, phdr, 1, 0, 0, 0
    )
    segment = struct.pack("<IIIIIIII", 1, 0, base, base, size, size, 5, 0x1000)
    path = tmp_path / "i386 prog"
    path.write_bytes(header + segment + code)
    path.chmod(0o755)
    if subprocess.run([path], check=False).returncode != 7:
        return None
    return path


INT80 = r"""
#include <stdio.h>
int main(void) {
    long ret;
    /* a 32-bit syscall from 64-bit code: 217 is pivot_root there (getdents64 in 64-bit), with
       a bogus fd where a 64-bit getdents64 has its fd */
    __asm__ volatile ("int $0x80" : "=a"(ret) : "a"(217L), "b"(0L), "c"(0L), "D"(12345L));
    return ret == -38;  /* ENOSYS: the kernel has no 32-bit syscalls */
}
"""


def test_32_bit_programs_and_syscalls(ebpf: type, cc: CC, tmp_path: Path) -> None:
    """32-bit syscalls are not recorded (as ptrace's seccomp filter lets them through): no
    bogus record from a 64-bit reading of their numbers; a 32-bit program's argv and status
    are the kernel's."""
    int80 = cc(tmp_path / "int80", INT80)
    elf32 = i386_program(tmp_path)
    if elf32 is None or subprocess.run([int80], check=False).returncode != 0:
        pytest.skip("this kernel runs no 32-bit code (IA32 emulation off)")
    argv = ["/bin/sh", "-c", f"{int80}; {shlex.quote(str(elf32))} one two; exit 0"]
    backend = ebpf(Options(argv))
    theirs = events(backend)
    ptrace = PtraceBackend(Options(argv))
    assert theirs == events(ptrace)
    assert backend.unresolved == 0 and backend.lost_events == 0
    assert processes(backend.result) == processes(ptrace.result)
    assert processes(backend.result)[-1] == ((os.fsencode(elf32), b"one", b"two"), 7, None)


DUPS = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int c, char **v) {
    int a = open(v[1], O_RDONLY | O_DIRECTORY), b = open(v[2], O_RDONLY | O_DIRECTORY);
    int e = fcntl(a, F_DUPFD_CLOEXEC, 20);      /* a dup the kernel resolves */
    int g = dup(e);                             /* a dup of a dup */
    close(a);
    int p[2]; pipe(p);
    if (fork() == 0) {                          /* inherits e and g */
        char x; read(p[0], &x, 1);              /* the parent changes fd 20 meanwhile */
        close(openat(e, "f", O_RDONLY));        /* the parent's entry is newer: not trusted */
        close(openat(g, "g", O_RDONLY));        /* inherited from before the fork */
        int h = dup(g);
        if (fork() == 0) { close(openat(h, "h", O_RDONLY)); _exit(0); }  /* a grandchild */
        wait(0);
        usleep(100000);
        _exit(0);
    }
    dup2(b, 20);                                /* fd 20 is another directory now */
    close(openat(20, "f", O_RDONLY));
    write(p[1], "x", 1);
    wait(0);
    /* beyond the kernel's table (1024 descriptors a process): sent, with where it comes from */
    struct rlimit lim; getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = lim.rlim_max < 4096 ? lim.rlim_max : 4096; setrlimit(RLIMIT_NOFILE, &lim);
    int big = fcntl(g, F_DUPFD, 1500), big2 = dup2(big, 1600);
    close(openat(big2, "i", O_RDONLY));
    dup2(b, 21);                                /* 21: a directory the kernel knows, */
    dup2(big, 21);                              /* then one it cannot tell: unknown there */
    close(openat(21, "j", O_RDONLY));
    return 0;
}
"""


def test_descriptors_duplicated_and_inherited(ebpf: type, cc: CC, tmp_path: Path) -> None:
    """Dups resolved in the kernel (no record), through forks, a parent reusing the number of
    a descriptor its child inherited, and descriptors beyond the kernel's table."""
    one, two = tmp_path / "one", tmp_path / "two"
    for d in (one, two):
        d.mkdir()
        for name in "fghij":
            (d / name).write_text(name)
    prog = cc(tmp_path / "p", DUPS)
    backend = ebpf(Options([str(prog), str(one), str(two)]))
    theirs = events(backend)
    assert backend.unresolved == 0 and backend.lost_events == 0
    opened = {p for kind, p, err in theirs if kind == "open" and not err}
    want = {one / "f", one / "g", one / "h", two / "f", one / "i", one / "j"}
    assert {os.fsencode(p) for p in want} <= opened
    assert not {os.fsencode(two / n) for n in "ghij"} & opened
    assert theirs == events(PtraceBackend(Options([str(prog), str(one), str(two)])))


REPEATS = r"""
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int c, char **v) {
    struct stat st;
    int d = open(v[1], O_RDONLY | O_DIRECTORY);
    for (int p = 0; p < 2; p++)                      /* the same calls in two processes */
        if (fork() == 0) {
            if (p == 0) chdir(v[1]);                 /* "f" is another file in each */
            for (int i = 0; i < 500; i++) {
                stat(v[2], &st);                     /* absolute */
                stat("f", &st);                      /* relative to the working directory */
                close(open(v[2], O_RDONLY));
                access("/nonexistent-minicon", F_OK); /* a failure */
            }
            for (int j = 0; j < 2; j++) {             /* by a directory fd: counted in */
                for (int i = 0; i < 3; i++) fstatat(d, "f", &st, 0);  /* the last place, */
                fstatat(d, "g", &st, 0);             /* and sent with the next call's record */
            }
            _exit(0);
        }
    while (wait(0) > 0) {}
    return 0;
}
"""


def counts(backend: object) -> tuple[dict[tuple[str, bytes, int], int], int]:
    """Calls per (kind, path, errno), and how many events told them."""
    total: dict[tuple[str, bytes, int], int] = {}
    got = list(backend.events())  # type: ignore[attr-defined]
    for e in got:
        key = (e.kind.value, e.path, e.errno)
        total[key] = total.get(key, 0) + e.calls
    return total, len(got)


def test_repeats_counted_in_the_kernel(ebpf: type, cc: CC, tmp_path: Path) -> None:
    """Repeated calls cost no record each, and the counts come out as the ptrace backend's."""
    (tmp_path / "f").write_text("x")
    prog = cc(tmp_path / "p", REPEATS)
    argv = [str(prog), str(tmp_path), str(tmp_path / "f")]
    theirs, told = counts(ebpf(Options(argv)))
    ours, _ = counts(PtraceBackend(Options(argv)))
    assert theirs == ours
    assert told < 100  # 4,016 calls: each first one, then one event with its repeats
    f = os.fsencode(tmp_path / "f")
    assert theirs[("stat", f, 0)] == 2 * 500 + 500 + 2 * 2 * 3
    assert theirs[("stat", os.fsencode(tmp_path / "g"), 2)] == 2 * 2
    assert theirs[("stat", b"/f", 2)] == 500
    assert theirs[("open", f, 0)] == 2 * 500
    assert theirs[("stat", b"/nonexistent-minicon", 2)] == 2 * 500


CHROOTS = r"""
#include <sys/stat.h>
#include <unistd.h>
int main(int c, char **v) {
    struct stat st;
    for (int i = 0; i < 3; i++) stat("/etc/hostname", &st);  /* the host's */
    chdir(v[1]); chroot(".");
    for (int i = 0; i < 3; i++) stat("/etc/hostname", &st);  /* another file: no repeat */
    for (int i = 0; i < 3; i++) stat("etc/hostname", &st);   /* the same, from the new cwd */
    return 0;
}
"""


def test_repeats_across_chroot(ebpf: type, cc: CC, tmp_path: Path) -> None:
    """A process's absolute paths after it chroots are other files: never repeats of the same
    paths before."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("inside")
    prog = cc(tmp_path / "p", CHROOTS)
    theirs, _ = counts(ebpf(Options([str(prog), str(root)])))
    ours, _ = counts(PtraceBackend(Options([str(prog), str(root)])))
    assert theirs == ours
    assert theirs[("stat", b"/etc/hostname", 0)] == 3
    assert theirs[("stat", os.fsencode(root / "etc/hostname"), 0)] == 6


def test_time_limit_and_unknown_program(ebpf: type, tmp_path: Path) -> None:
    marker = "minicon-ebpf-daemon"
    script = f"(sleep 300; : {marker}) & sleep 300"
    started = time.monotonic()
    backend = ebpf(Options(["sh", "-c", script], seconds=1.0))
    list(backend.events())
    assert time.monotonic() - started < 15
    assert backend.result.timed_out
    time.sleep(0.2)
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).stdout == b""
    assert traced_left() == []  # the killed tree is out of the kernel's traced set
    with pytest.raises(TraceeStartError):
        list(ebpf(Options(["no-such-program-minicon"])).events())
    assert traced_left() == []


def test_a_command_that_cannot_exec(ebpf: type, tmp_path: Path) -> None:
    """Found and executable, but the kernel refuses its exec: a clear error, nothing left
    armed in the kernel (the next command is traced as usual)."""
    from tracer.ebpf_backend import _Loaded

    garbage = tmp_path / "not an image"
    garbage.write_bytes(b"\x01\x02 no format")
    script = tmp_path / "script"
    script.write_text("#!/nonexistent/interpreter\n")
    for path, why in ((garbage, "Exec format error"), (script, "No such file or directory")):
        path.chmod(0o755)
        with pytest.raises(TraceeStartError, match=f"cannot be executed: {why}"):
            list(ebpf(Options([str(path)])).events())
        assert _Loaded._instance is not None
        slot = _Loaded._instance.bpf[b"spawning"][ctypes.c_int(0)]
        assert (slot.spawner, slot.child) == (0, 0)
        assert traced_left() == []
    assert ("open", b"/etc/hostname", 0) in events(ebpf(Options(["cat", "/etc/hostname"])))


def traced_left() -> list[int]:
    """The pids still in the kernel's traced set (a bit per pid)."""
    from tracer.ebpf_backend import _Loaded

    assert _Loaded._instance is not None
    traced = _Loaded._instance.bpf[b"traced"]
    return [
        int(key) * 64 + bit
        for key, word in traced.items_lookup_batch()
        for bit in range(64)
        if int(word) >> bit & 1
    ]


UC2 = ("openssh-client", "iproute2", "iputils-ping", "wget")


@pytest.mark.e2e
def test_uc2_sample_commands_agree(ebpf: type) -> None:
    """Every line of examples/uc2.commands, traced by both backends in the same sandbox."""
    root = build_debian_root(UC2)
    lines = Path(__file__).resolve().parents[2] / "examples/uc2.commands"
    commands = [
        shlex.split(line) for line in lines.read_text().splitlines() if line and line[0] != "#"
    ]
    for argv in commands:  # each in a fresh overlay: a mkdir must find what the other found
        with Sandbox(root) as sandbox:
            theirs = events(ebpf(Options(argv, seconds=10, chroot=sandbox.merged)))
        with Sandbox(root) as sandbox:
            ours = events(PtraceBackend(Options(argv, seconds=10, chroot=sandbox.merged)))
        assert theirs == ours, (argv, sorted(theirs ^ ours)[:10])


def bpf_handles() -> int:
    """This process's descriptors of BPF programs, links and maps."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the listing's own descriptor
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("anon_inode:bpf")
    return count


def test_unload_frees_the_program_and_the_next_run_loads_it(ebpf: type) -> None:
    from tracer.ebpf_backend import _Loaded

    list(ebpf(Options(["true"])).events())
    assert _Loaded._instance is not None and bpf_handles() > 0
    _Loaded.unload()
    assert _Loaded._instance is None
    assert bpf_handles() == 0  # programs, links and maps all closed: nothing left attached
    got = events(ebpf(Options(["cat", "/etc/hostname"])))
    assert ("open", b"/etc/hostname", 0) in got


def test_a_map_emptied_in_batches(ebpf: type) -> None:
    """The map of repeats is read and emptied a batch at a time, through as many as it takes,
    each key with its own value."""
    from tracer import bpfsys
    from tracer.ebpf_backend import load_bcc

    bpf = load_bcc().BPF(text=b"BPF_HASH(m, u64, u64, 20000);")
    try:
        table = bpf[b"m"]
        n = 10007
        keys, values = (ctypes.c_uint64 * n)(*range(1, n + 1)), (ctypes.c_uint64 * n)()
        for i in range(n):
            values[i] = (i + 1) * 3
        table.items_update_batch(keys, values)
        got = bpfsys.U64Batches(batch=1000).pop_all(table.map_fd)
        assert sorted(got) == [(k, k * 3) for k in range(1, n + 1)]
        assert len(table) == 0
        assert bpfsys.U64Batches(batch=1000).pop_all(table.map_fd) == []
    finally:
        bpf.cleanup()


def walk_tree(top: Path) -> None:
    """Directories in directories, one named with a space, a newline and a non-UTF-8 byte,
    and a symlink to one (find does not follow it, and names below it are not its target's)."""
    odd = top / os.fsdecode(b"a b\nc\xff")
    (odd / "deeper/deepest").mkdir(parents=True)
    (odd / "deeper/deepest/file").write_text("x")
    (top / "plain/sub").mkdir(parents=True)
    (top / "plain/sub/file").write_text("x")
    (top / "link").symlink_to("plain")


def test_tree_walks_agree(ebpf: type, tmp_path: Path) -> None:
    """find opens each directory with O_DIRECTORY | O_NOFOLLOW, relative to its parent's
    descriptor: the reader takes the kernel's word that it is a real directory."""
    walk_tree(tmp_path / "t")
    for argv in (["find", str(tmp_path / "t")], ["find", "-L", str(tmp_path / "t")]):
        theirs = events(ebpf(Options(argv)))
        assert theirs == events(PtraceBackend(Options(argv))), argv
        deepest = os.fsencode(tmp_path / "t") + b"/a b\nc\xff/deeper/deepest"
        assert ("list", deepest, 0) in theirs
        assert ("list", os.fsencode(tmp_path / "t/plain/sub"), 0) in theirs


@pytest.mark.e2e
def test_tree_walk_in_a_root_agrees(ebpf: type) -> None:
    """The same walk inside a Debian root (the paths the reader keeps are the root's)."""
    root = build_debian_root(UC2)
    argv = ["find", "/usr/share/doc", "/etc", "-name", "nothing"]
    with Sandbox(root) as sandbox:
        theirs = events(ebpf(Options(argv, seconds=20, chroot=sandbox.merged)))
    with Sandbox(root) as sandbox:
        ours = events(PtraceBackend(Options(argv, seconds=20, chroot=sandbox.merged)))
    assert theirs == ours, sorted(theirs ^ ours)[:10]
    assert ("list", b"/usr/share/doc/wget", 0) in theirs
