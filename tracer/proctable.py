"""A process's working directory and open descriptors, followed from its own calls.

For tracers that see calls after the fact (the eBPF backend, strace logs) and so cannot ask
``/proc``: relative and dirfd-relative paths resolve against this state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .events import Kind
from .syscalls import Syscall


@dataclass
class ProcState:
    cwd: bytes
    fds: dict[int, bytes] = field(default_factory=dict)
    root: bytes | None = None  # where it chrooted to (None: the traced root, as it started)

    def fork(self) -> ProcState:
        """The child's copy (a fork shares nothing afterwards)."""
        return ProcState(self.cwd, dict(self.fds), self.root)

    def dup(self, old: int, new: int) -> None:
        if old in self.fds:
            self.fds[new] = self.fds[old]
        else:
            self.fds.pop(new, None)

    def close(self, fd: int) -> None:
        self.fds.pop(fd, None)

    def after(self, call: Syscall, path: bytes, ret: int) -> None:
        """What a successful ``call`` on ``path`` that returned ``ret`` changes."""
        if call.kind == Kind.OPEN and ret >= 0:
            self.fds[ret] = path
        elif call.kind == Kind.CHDIR and not call.changes_root:
            self.cwd = path
