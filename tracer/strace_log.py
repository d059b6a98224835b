"""Events from an ``strace -f -o FILE`` log, so traces captured wherever strace runs can be merged.

Reads what strace writes with or without ``-y`` (fd paths), ``-t``/``-tt``/``-ttt``/``-r``
timestamps, ``-x``/``-xx`` escapes, and the ``<unfinished ...>`` / ``<... resumed>`` pairs of
``-f``. Paths are made absolute the best way the log allows: an ``-y`` annotation when there is
one (exact, as the kernel saw it), otherwise each process's working directory and open
descriptors as followed through its own chdir, open and fork calls (a log that starts after a
chdir it did not record can only guess: ``cwd``). Directory symlinks are not resolved here: the
minimizer resolves every path inside the root it cuts.
"""

from __future__ import annotations

import errno as errno_mod
import os
import re
import signal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .events import Event, Kind, Process, RunResult
from .proctable import ProcState
from .syscalls import AT_FDCWD, TABLE, Syscall

BY_NAME: dict[str, Syscall] = {s.name: s for s in TABLE}
_FORKS = {"fork", "vfork", "clone", "clone3"}
_FD_TABLE = {"close", "dup", "dup2", "dup3", "fcntl"}  # followed when the log has them (no -e)
_ERRNO = {name: number for number, name in errno_mod.errorcode.items()}
_FLAG_VALUES = {
    "O_RDONLY": 0,
    "O_WRONLY": 0o1,
    "O_RDWR": 0o2,
    "O_CREAT": 0o100,
    "O_EXCL": 0o200,
    "O_NOCTTY": 0o400,
    "O_TRUNC": 0o1000,
    "O_APPEND": 0o2000,
    "O_NONBLOCK": 0o4000,
    "O_DSYNC": 0o10000,
    "O_DIRECT": 0o40000,
    "O_LARGEFILE": 0o100000,
    "O_DIRECTORY": 0o200000,
    "O_NOFOLLOW": 0o400000,
    "O_NOATIME": 0o1000000,
    "O_CLOEXEC": 0o2000000,
    "O_SYNC": 0o4010000,
    "O_PATH": 0o10000000,
    "O_TMPFILE": 0o20200000,
    "AT_SYMLINK_NOFOLLOW": 0x100,
    "AT_REMOVEDIR": 0x200,
    "AT_SYMLINK_FOLLOW": 0x400,
    "AT_NO_AUTOMOUNT": 0x800,
    "AT_EMPTY_PATH": 0x1000,
}
_PREFIX = re.compile(rb"^(?:(\d+)\s+)?(?:\d[\d:.]*\s+)?")
_RESULT = re.compile(
    rb"\s*=\s*(-?\d+|0x[0-9a-fA-F]+|\?)(?:<(?P<fdpath>(?:[^>\\]|\\.)*)>)?(?:\s+(E[A-Z0-9]+))?"
)
_EXIT = re.compile(rb"^\+\+\+ (?:exited with (\d+)|killed by (SIG[A-Z0-9]+))")


class StraceLogError(ValueError):
    """The input is not an strace log this reader understands."""


def unescape(text: bytes) -> bytes:
    """A C-escaped string as strace prints it (``\\n``, ``\\x3e``, ``\\377``) back to bytes."""
    if b"\\" not in text:
        return text
    out = bytearray()
    i = 0
    simple = {ord("n"): 10, ord("t"): 9, ord("r"): 13, ord("v"): 11, ord("f"): 12, ord("a"): 7}
    while i < len(text):
        c = text[i]
        if c != 0x5C or i + 1 == len(text):
            out.append(c)
            i += 1
            continue
        n = text[i + 1]
        if n == ord("x"):
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        elif 0x30 <= n <= 0x37:
            j = i + 1
            while j < len(text) and j < i + 4 and 0x30 <= text[j] <= 0x37:
                j += 1
            out.append(int(text[i + 1 : j], 8) & 0xFF)
            i = j
        else:
            out.append(simple.get(n, n))
            i += 2
    return bytes(out)


@dataclass
class _Arg:
    text: bytes
    string: bytes | None = None  # a quoted string argument, unescaped
    fdpath: bytes | None = None  # the <path> strace -y printed after a descriptor


def split_args(line: bytes, start: int) -> tuple[list[_Arg], int]:
    """The top-level arguments from ``line[start:]`` (just after ``name(``) up to the ``)``."""
    args: list[_Arg] = []
    depth = 0
    i = start
    token_start = i
    string: bytes | None = None
    fdpath: bytes | None = None
    n = len(line)
    while i < n:
        c = line[i]
        if c == 0x22:  # a quoted string
            j = i + 1
            while j < n and line[j] != 0x22:
                j += 2 if line[j] == 0x5C else 1
            if depth == 0 and string is None:
                string = unescape(line[i + 1 : j])
            i = j + 1
            continue
        if c == 0x3C and depth == 0 and i > token_start:  # "3</path>" or "AT_FDCWD</cwd>"
            j = i + 1
            while j < n and line[j] != 0x3E:
                j += 2 if line[j] == 0x5C else 1
            fdpath = unescape(line[i + 1 : j])
            i = j + 1
            continue
        if c in b"([{":
            depth += 1
        elif c in b")]}":
            if depth == 0:
                if i > token_start or args:
                    args.append(_Arg(line[token_start:i].strip(), string, fdpath))
                return args, i + 1
            depth -= 1
        elif c == 0x2C and depth == 0:
            args.append(_Arg(line[token_start:i].strip(), string, fdpath))
            string = fdpath = None
            token_start = i + 1
        i += 1
    raise StraceLogError("unbalanced parentheses")


def _number(text: bytes) -> int | None:
    t = text.split(b"<", 1)[0].strip()
    try:
        return int(t, 0)
    except ValueError:
        return AT_FDCWD if t == b"AT_FDCWD" else None


def _flags(text: bytes) -> int:
    value = 0
    for word in text.split(b"|"):
        word = word.strip()
        number = _number(word)
        if number is not None:
            value |= number
        else:
            value |= _FLAG_VALUES.get(word.decode("ascii", "replace"), 0)
    return value


class StraceLog:
    """Iterate over :meth:`events` of a log; then :attr:`result` holds its processes."""

    def __init__(self, lines: Iterable[bytes], cwd: bytes = b"/") -> None:
        self._lines = lines
        self._cwd = cwd
        self._procs: dict[int, ProcState] = {}
        self._processes: dict[int, Process] = {}
        self._pending: dict[int, bytes] = {}
        self.result: RunResult | None = None
        self.lines = 0
        self.skipped = 0  # lines of recorded calls that could not be read
        self.calls = 0  # lines read as a system call and its result
        self.root_pid: int | None = None  # the pid of the log's first line

    def _proc(self, pid: int) -> ProcState:
        proc = self._procs.get(pid)
        if proc is None:
            proc = self._procs[pid] = ProcState(self._cwd)
            self._processes.setdefault(pid, Process(pid, 0))
        return proc

    def events(self) -> Iterator[Event]:
        first: int | None = None
        for raw in self._lines:
            self.lines += 1
            line = raw.rstrip(b"\n")
            m = _PREFIX.match(line)
            assert m is not None
            pid = int(m.group(1)) if m.group(1) else 0
            if first is None:
                first = pid
            body = line[m.end() :]
            if body.startswith((b"---", b"+++")):
                self._status(pid, body)
                continue
            if body.startswith(b"<... "):
                head = self._pending.pop(pid, None)
                if head is None:
                    continue
                body = head + body[body.index(b">") + 1 :]
            elif body.endswith(b"<unfinished ...>"):
                self._pending[pid] = body[: -len(b"<unfinished ...>")].rstrip()
                continue
            try:
                yield from self._call(pid, body)
            except (StraceLogError, ValueError, IndexError):
                self.skipped += 1
        self.root_pid = first
        if self.lines and not self.calls:
            raise StraceLogError(
                f"no system call in {self.lines} lines: not a log of strace -f -o FILE"
            )
        root = self._processes.get(first or 0)
        self.result = RunResult(
            root.exit_code if root else None, root.signal if root else None, False, self._processes
        )

    def _status(self, pid: int, body: bytes) -> None:
        m = _EXIT.match(body)
        if m is None:
            return
        self._proc(pid)
        proc = self._processes[pid]
        if m.group(1) is not None:
            proc.exit_code = int(m.group(1))
        else:
            name = m.group(2).decode()
            proc.signal = signal.Signals[name].value if name in signal.Signals.__members__ else 0

    def _call(self, pid: int, body: bytes) -> Iterator[Event]:
        paren = body.find(b"(")
        if paren <= 0 or not body[:paren].replace(b"_", b"").isalnum():
            return
        self.calls += 1
        name = body[:paren].decode("ascii", "replace")
        call = BY_NAME.get(name)
        if call is None and name not in _FORKS and name not in _FD_TABLE:
            return
        args, end = split_args(body, paren + 1)
        m = _RESULT.match(body, end)
        if m is None or m.group(1) == b"?":
            return
        ret = int(m.group(1), 0)
        err = _ERRNO.get(m.group(3).decode(), errno_mod.EIO) if ret < 0 and m.group(3) else 0
        proc = self._proc(pid)
        if name in _FORKS:
            if ret > 0:
                self._procs[ret] = proc.fork()
                child = self._processes.setdefault(ret, Process(ret, pid))
                child.ppid, child.argv = pid, self._processes[pid].argv
            return
        if call is None:
            self._fd_table(proc, name, args, ret)
            return
        event = self._event(pid, proc, call, args, err)
        if event is None:
            return
        if not err:
            self._after(pid, proc, call, event.path, args, ret, m.group("fdpath"))
        yield event

    def _event(
        self, pid: int, proc: ProcState, call: Syscall, args: list[_Arg], err: int
    ) -> Event | None:
        flags = call.fixed_flags
        if call.flags is not None and call.flags < len(args):
            flags = _flags(args[call.flags].text)
        elif call.name == "openat2" and len(args) > 2:
            m = re.search(rb"flags=([A-Z_0-9|x]+)", args[2].text)
            flags = _flags(m.group(1)) if m else 0
        if call.fd is not None:
            path = self._fd_path(proc, args[call.fd])
        else:
            assert call.path is not None
            raw = args[call.path].string
            if raw is None:
                return None
            if not raw:
                if call.kind != Kind.EXEC or call.dirfd is None:
                    return None  # the fd itself (AT_EMPTY_PATH): no lookup
                path = self._fd_path(proc, args[call.dirfd])
            elif raw.startswith(b"/"):
                path = raw
            else:
                base = self._fd_path(proc, args[call.dirfd]) if call.dirfd is not None else None
                path = (base or proc.cwd).rstrip(b"/") + b"/" + raw
        if path is None:
            return None
        return Event(call.kind, _normalize(path), err, pid, flags)

    @staticmethod
    def _fd_table(proc: ProcState, name: str, args: list[_Arg], ret: int) -> None:
        """close and dup*: keep the descriptor table right for logs without ``-y``."""
        fd = _number(args[0].text) if args else None
        if fd is None or ret < 0:
            return
        if name == "close":
            proc.close(fd)
        elif name != "fcntl" or (len(args) > 1 and args[1].text.startswith(b"F_DUPFD")):
            proc.dup(fd, ret)

    def _fd_path(self, proc: ProcState, arg: _Arg) -> bytes | None:
        if arg.fdpath is not None:
            return arg.fdpath
        fd = _number(arg.text)
        if fd == AT_FDCWD:
            return proc.cwd
        return proc.fds.get(fd) if fd is not None else None

    def _after(
        self,
        pid: int,
        proc: ProcState,
        call: Syscall,
        path: bytes,
        args: list[_Arg],
        ret: int,
        fdpath: bytes | None,
    ) -> None:
        """Follow the state later relative paths depend on."""
        proc.after(call, unescape(fdpath) if fdpath is not None else path, ret)
        if call.kind == Kind.EXEC:
            argv = args[1].text if len(args) > 1 else b""
            words = [unescape(w) for w in re.findall(rb'"((?:[^"\\]|\\.)*)"', argv)]
            if words:
                self._processes[pid].argv = tuple(words)


def _normalize(path: bytes) -> bytes:
    return os.path.normpath(path) if path.startswith(b"/") else path


def read_log(path: str | bytes, cwd: bytes = b"/") -> StraceLog:
    """A reader over the log file at ``path`` (iterate its ``events()``)."""

    def lines() -> Iterator[bytes]:
        with open(path, "rb") as fh:
            yield from fh

    return StraceLog(lines(), cwd)
