"""The syscalls the tracer records, as data: which argument is a path, a dirfd, flags or an fd.

The seccomp filter is derived from this table, so a tracee stops only on these syscalls.
Numbers are x86_64's (``asm/unistd_64.h``); fork, clone and exec are followed through ptrace
events, whatever the filter says.
"""

from __future__ import annotations

from dataclasses import dataclass

from .events import Kind
from .seccomp import Rule

AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
O_CREAT = 0o100
O_WRONLY = 0o1
O_EXCL = 0o200
O_TRUNC = 0o1000
O_DIRECTORY = 0o200000
O_NOFOLLOW = 0o400000
O_PATH = 0o10000000
O_TMPFILE = 0o20000000 | O_DIRECTORY
AT_SYMLINK_NOFOLLOW = 0x100


@dataclass(frozen=True)
class Syscall:
    name: str
    nr: int
    kind: Kind
    path: int | None = None  # argument index of the path string
    dirfd: int | None = None  # argument index of the directory fd the path is relative to
    fd: int | None = None  # argument index of an fd whose own path is what was used
    flags: int | None = None  # argument index of open flags
    at_flags: int | None = None  # argument index of AT_* flags (AT_EMPTY_PATH means "the fd")
    fixed_flags: int = 0  # flags implied by the call (creat)
    follow: bool = True  # the last component's symlink is followed (unless AT_SYMLINK_NOFOLLOW)
    changes_root: bool = False  # chroot: later absolute paths of the process start elsewhere
    unstopped_if: int = 0  # at_flags bits that mean "about the fd, no lookup": no stop at all


TABLE: tuple[Syscall, ...] = (
    Syscall("open", 2, Kind.OPEN, path=0, flags=1),
    Syscall("openat", 257, Kind.OPEN, dirfd=0, path=1, flags=2),
    Syscall("openat2", 437, Kind.OPEN, dirfd=0, path=1),  # flags are in struct open_how
    Syscall("creat", 85, Kind.OPEN, path=0, fixed_flags=O_CREAT | O_WRONLY | O_TRUNC),
    Syscall("stat", 4, Kind.STAT, path=0),
    Syscall("lstat", 6, Kind.STAT, path=0, follow=False),
    # AT_EMPTY_PATH: fstat; a caller that sets it *and* names a path is not recorded
    Syscall("newfstatat", 262, Kind.STAT, dirfd=0, path=1, at_flags=3, unstopped_if=AT_EMPTY_PATH),
    Syscall("statx", 332, Kind.STAT, dirfd=0, path=1, at_flags=2, unstopped_if=AT_EMPTY_PATH),
    Syscall("access", 21, Kind.STAT, path=0),
    Syscall("faccessat", 269, Kind.STAT, dirfd=0, path=1),
    Syscall("faccessat2", 439, Kind.STAT, dirfd=0, path=1, at_flags=3),
    Syscall("readlink", 89, Kind.STAT, path=0, follow=False),
    Syscall("readlinkat", 267, Kind.STAT, dirfd=0, path=1, follow=False),
    Syscall("execve", 59, Kind.EXEC, path=0),
    Syscall("execveat", 322, Kind.EXEC, dirfd=0, path=1, at_flags=4),
    Syscall("getdents64", 217, Kind.LIST, fd=0),
    Syscall("getdents", 78, Kind.LIST, fd=0),
    Syscall("mkdir", 83, Kind.MKDIR, path=0),
    Syscall("mkdirat", 258, Kind.MKDIR, dirfd=0, path=1),
    Syscall("chdir", 80, Kind.CHDIR, path=0),
    Syscall("fchdir", 81, Kind.CHDIR, fd=0),
    Syscall("chroot", 161, Kind.CHDIR, path=0, changes_root=True),
)

BY_NR: dict[int, Syscall] = {s.nr: s for s in TABLE}


def filter_rules() -> list[Rule]:
    """The seccomp rules for :data:`TABLE`."""
    return [Rule(s.nr, s.at_flags, s.unstopped_if) if s.unstopped_if else Rule(s.nr) for s in TABLE]
