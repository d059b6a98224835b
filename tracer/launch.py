"""What both backends do to start the traced command: find it, and set the child up."""

from __future__ import annotations

import os

from .errors import TraceeStartError
from .paths import Resolver


def find_program(paths: Resolver, argv0: str, path_var: str, cwd: str) -> bytes:
    """The program to exec, looked up on PATH inside the traced root like execvp would (so the
    traced process makes no PATH walk of ours)."""
    prog = os.fsencode(argv0)
    if b"/" in prog:
        candidates = [prog]
    else:
        candidates = [os.fsencode(d).rstrip(b"/") + b"/" + prog for d in path_var.split(":") if d]
    base = os.fsencode(cwd)
    for candidate in candidates:
        inner = candidate if candidate.startswith(b"/") else base + b"/" + candidate
        if paths.is_executable(inner):
            return candidate
    what = "not an executable file" if b"/" in prog else "command not found on PATH"
    raise TraceeStartError(f"{os.fsdecode(prog)}: {what}")


def prepare_child(chroot: bytes | None, cwd: str, devnull: int, show_output: bool) -> None:
    """In the forked child, before exec: its root, cwd, stdin from /dev/null, output hidden."""
    if chroot:
        os.chroot(chroot)
    os.chdir(cwd)
    os.dup2(devnull, 0)
    if not show_output:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
