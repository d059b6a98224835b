"""What the tracer records: one value per observed operation, and one per process."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple


class Kind(StrEnum):
    EXEC = "exec"  # execve, execveat
    OPEN = "open"  # open, openat, openat2, creat
    STAT = "stat"  # stat family, access family, readlink
    LIST = "list"  # getdents64 on a directory fd
    MKDIR = "mkdir"
    CHDIR = "chdir"


class Event(NamedTuple):
    """One operation on a path, resolved to an absolute path inside the traced root.

    ``errno`` is 0 for success. ``flags`` holds open(2) flags for ``open`` events.
    ``time`` is seconds since the run started. ``calls``: how many such calls this stands for
    (the eBPF backend counts repeats in the kernel and reports them at the end). A named
    tuple: tracers make one per recorded call (64k for ``find /usr``), in a third of the time
    a frozen dataclass takes.
    """

    kind: Kind
    path: bytes
    errno: int
    pid: int
    flags: int = 0
    time: float = 0.0
    calls: int = 1


@dataclass
class Process:
    pid: int
    ppid: int
    argv: tuple[bytes, ...] = ()
    exit_code: int | None = None
    signal: int | None = None


@dataclass
class RunResult:
    """How the traced command ended: its exit status, and every process it started."""

    exit_code: int | None
    signal: int | None
    timed_out: bool
    processes: dict[int, Process]
