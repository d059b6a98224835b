"""The ptrace backend: a seccomp filter stops the tracee on recorded syscalls only.

The loop drives ``os.waitpid(-1, __WALL)`` itself (python-ptrace's debugger sleep-polls and is
~200x slower with many processes); python-ptrace provides the raw ``ptrace()`` binding.

Per recorded syscall: at the seccomp stop (syscall entry, tracee stopped) the path is read from
``/proc/PID/mem`` and resolved exactly through ``/proc/PID/cwd`` or ``/proc/PID/fd/N``; then one
``PTRACE_SYSCALL`` brings the exit stop, where the outcome (ok or errno) is read. An execve's
success is its ``PTRACE_EVENT_EXEC``. Where seccomp is not available, every syscall stops and
the entry stops are filtered here (slower, same events).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from ptrace.binding import func as _pt  # python-ptrace: the raw ptrace(2) binding
from ptrace.error import PtraceError

from . import seccomp
from .errors import TraceeStartError, TracerError, TracerUnavailableError
from .events import Event, Kind, Process, RunResult
from .syscalls import AT_EMPTY_PATH, AT_FDCWD, BY_NR, Syscall

PTRACE_CONT = 7
PTRACE_SYSCALL = 24
PTRACE_SETOPTIONS = 0x4200
PTRACE_GETEVENTMSG = 0x4201
PTRACE_GET_SYSCALL_INFO = 0x420E
_OPTIONS = (
    0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x80 | 0x100000
)  # SYSGOOD FORK VFORK CLONE EXEC SECCOMP EXITKILL
_EV_FORK, _EV_VFORK, _EV_CLONE, _EV_EXEC, _EV_SECCOMP = 1, 2, 3, 4, 7
_OP_ENTRY, _OP_EXIT, _OP_SECCOMP = 1, 2, 3
_WALL = 0x40000000
_INFO = struct.Struct("=BxxxIQQ")  # op, arch, instruction pointer, stack pointer
_NR_ARGS = struct.Struct("=Q6Q")  # nr, args[6] (entry and seccomp)
_EXIT = struct.Struct("=qB")  # rval, is_error
CLEAN_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}


def _ptrace(request: int, pid: int, addr: int = 0, data: int = 0) -> int:
    try:
        return int(_pt.ptrace(request, pid, addr, data))
    except PtraceError as exc:  # never leaves the package as python-ptrace's type
        raise TracerError(f"ptrace({request:#x}, {pid}): {exc}") from exc


@dataclass
class Options:
    """How to run the traced command."""

    argv: list[str]
    seconds: float = 0.0  # 0: until every traced process has exited
    env: dict[str, str] = field(default_factory=lambda: dict(CLEAN_ENV))
    cwd: str = "/"
    show_output: bool = False
    use_seccomp: bool = True


@dataclass
class _Tracee:
    started: bool = False  # its first SIGSTOP (the attach) has been swallowed
    pending: tuple[Syscall, bytes, int] | None = None  # waiting for the outcome
    mem: int = -1


class PtraceBackend:
    """Run one command under ptrace; iterate over :meth:`events`, then read :attr:`result`."""

    name = "ptrace"

    def __init__(self, options: Options) -> None:
        self.options = options
        self.result: RunResult | None = None
        self._tracees: dict[int, _Tracee] = {}
        self._processes: dict[int, Process] = {}
        self._threads: set[int] = set()
        self._listed: set[tuple[int, int, bytes]] = set()
        self._timed_out = False
        self._info = ctypes.create_string_buffer(88)
        self._addr = ctypes.addressof(self._info)
        self._t0 = 0.0

    # -- start ---------------------------------------------------------------------------------

    def _program(self) -> str:
        prog = self.options.argv[0]
        if "/" in prog:
            return prog
        found = shutil.which(prog, path=self.options.env.get("PATH", CLEAN_ENV["PATH"]))
        if found is None:
            raise TraceeStartError(f"{prog}: command not found on PATH")
        return found

    def _spawn(self) -> int:
        program = self._program()
        if not os.access(program, os.X_OK):
            raise TraceeStartError(f"{program}: not an executable file")
        flt = seccomp.build_filter(BY_NR) if self.options.use_seccomp else b""
        devnull = os.open(os.devnull, os.O_RDWR)
        pid = os.fork()
        if pid == 0:  # the child: only async-signal-safe-ish steps until exec
            try:
                os.chdir(self.options.cwd)
                os.dup2(devnull, 0)
                if not self.options.show_output:
                    os.dup2(devnull, 1)
                    os.dup2(devnull, 2)
                _pt.ptrace_traceme()
                os.kill(os.getpid(), signal.SIGSTOP)  # the tracer sets its options now
                if flt and seccomp.install(flt) != 0:
                    os._exit(125)
                os.execve(program, self.options.argv, self.options.env)
            finally:
                os._exit(127)
        os.close(devnull)
        _, status = os.waitpid(pid, _WALL)
        if not os.WIFSTOPPED(status):
            raise TracerUnavailableError("the traced child did not stop for the tracer")
        _ptrace(PTRACE_SETOPTIONS, pid, 0, _OPTIONS)
        self._tracees[pid] = _Tracee(started=True)
        self._processes[pid] = Process(
            pid, os.getpid(), tuple(os.fsencode(a) for a in self.options.argv)
        )
        self._resume(pid, 0)
        return pid

    # -- the loop ------------------------------------------------------------------------------

    def events(self) -> Iterator[Event]:
        self._t0 = time.monotonic()
        root = self._spawn()
        timer = None
        if self.options.seconds > 0:
            timer = threading.Timer(self.options.seconds, self._time_out)
            timer.daemon = True
            timer.start()
        exit_code: int | None = None
        sig: int | None = None
        try:
            for pid, status in self._waits():
                if _ended(status):
                    if pid == root:
                        exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
                        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
                elif os.WIFSTOPPED(status):
                    yield from self._stopped(pid, status)
        finally:
            if timer is not None:
                timer.cancel()
            self._kill_all(reap=True)
            for t in self._tracees.values():
                if t.mem >= 0:
                    os.close(t.mem)
        self.result = RunResult(exit_code, sig, self._timed_out, self._processes)

    def _stopped(self, pid: int, status: int) -> Iterator[Event]:
        tracee = self._tracee(pid)
        stopsig = os.WSTOPSIG(status)
        event = status >> 16
        if stopsig == signal.SIGTRAP | 0x80:  # syscall stop (entry or exit)
            yield from self._syscall_stop(pid, tracee)
            return
        if stopsig == signal.SIGTRAP and event:
            if event == _EV_SECCOMP:
                yield from self._syscall_stop(pid, tracee)
                return
            if event in (_EV_FORK, _EV_VFORK, _EV_CLONE):
                _ptrace(PTRACE_GETEVENTMSG, pid, 0, self._addr)
                child = struct.unpack_from("=Q", self._info)[0]
                self._new_process(child, pid, thread=event == _EV_CLONE)
            elif event == _EV_EXEC:
                yield from self._exec_done(pid)
            self._resume(pid, 0)
            return
        if stopsig == signal.SIGSTOP and not tracee.started:
            tracee.started = True  # the automatic attach stop of a new process
            self._resume(pid, 0)
            return
        self._resume(pid, stopsig)  # a signal for the tracee: deliver it

    def _tracee(self, pid: int) -> _Tracee:
        tracee = self._tracees.get(pid)
        if tracee is None:  # a child may report before its parent's fork event
            tracee = self._tracees[pid] = _Tracee()
            self._processes.setdefault(pid, Process(pid, 0))
            if self._timed_out:
                self._kill(pid)
        return tracee

    def _new_process(self, child: int, parent: int, *, thread: bool) -> None:
        self._tracee(child)
        if thread and _tgid(child) != child:
            self._threads.add(child)
            self._processes.pop(child, None)
            return
        proc = self._processes.setdefault(child, Process(child, parent))
        proc.ppid = parent
        proc.argv = self._processes[parent].argv if parent in self._processes else ()

    def _resume(self, pid: int, sig: int) -> None:
        tracee = self._tracees.get(pid)
        want_exit = tracee is not None and tracee.pending is not None
        request = PTRACE_SYSCALL if (want_exit or not self.options.use_seccomp) else PTRACE_CONT
        with contextlib.suppress(PtraceError):  # it died meanwhile: waitpid will say so
            _pt.ptrace(request, pid, 0, sig)

    # -- syscalls ------------------------------------------------------------------------------

    def _syscall_stop(self, pid: int, tracee: _Tracee) -> Iterator[Event]:
        try:
            _ptrace(PTRACE_GET_SYSCALL_INFO, pid, 88, self._addr)
        except TracerError:
            self._resume(pid, 0)
            return
        op = _INFO.unpack_from(self._info)[0]
        if op == _OP_EXIT:
            if tracee.pending is not None:
                call, path, flags = tracee.pending
                tracee.pending = None
                rval, _ = _EXIT.unpack_from(self._info, _INFO.size)
                err = -rval if -4096 < rval < 0 else 0
                if call.kind != Kind.EXEC or err:  # a successful exec is its event
                    yield self._event(call.kind, path, err, pid, flags)
        elif op in (_OP_ENTRY, _OP_SECCOMP):
            nr, *args = _NR_ARGS.unpack_from(self._info, _INFO.size)
            entered = BY_NR.get(nr)
            if entered is not None:
                decoded = self._decode(pid, tracee, entered, args)
                if decoded is not None:
                    tracee.pending = (entered, *decoded)
        self._resume(pid, 0)

    def _decode(
        self, pid: int, tracee: _Tracee, call: Syscall, args: list[int]
    ) -> tuple[bytes, int] | None:
        """The resolved path and open flags of a recorded call, or None to let it pass."""
        flags = call.fixed_flags
        if call.flags is not None:
            flags = args[call.flags] & 0xFFFFFFFF
        if call.fd is not None:
            fd = _signed(args[call.fd])
            path = _readlink(f"/proc/{pid}/fd/{fd}")
            if path is None:
                return None
            if call.kind == Kind.LIST:
                key = (pid, fd, path)
                if key in self._listed:
                    return None  # the same directory read on: already recorded
                self._listed.add(key)
            return path, flags
        assert call.path is not None
        raw = self._read_string(pid, tracee, args[call.path])
        if raw is None:
            return None
        dirfd = _signed(args[call.dirfd]) if call.dirfd is not None else AT_FDCWD
        if not raw:
            at = args[call.at_flags] if call.at_flags is not None else 0
            if at & AT_EMPTY_PATH and dirfd >= 0:  # the call is about the fd itself
                if call.kind != Kind.EXEC:
                    return None
                fd_path = _readlink(f"/proc/{pid}/fd/{dirfd}")
                return (fd_path, flags) if fd_path else None
            return None
        if call.name == "openat2":
            how = self._read(pid, tracee, args[2], 8)
            flags = struct.unpack("=Q", how)[0] & 0xFFFFFFFF if len(how) == 8 else 0
        path = self._absolute(pid, dirfd, raw)
        return (path, flags) if path is not None else None

    def _absolute(self, pid: int, dirfd: int, raw: bytes) -> bytes | None:
        """``raw`` as the kernel saw it: relative to cwd or dirfd, directory part resolved."""
        if raw.startswith(b"/"):
            full = raw
        else:
            base = _readlink(f"/proc/{pid}/cwd" if dirfd == AT_FDCWD else f"/proc/{pid}/fd/{dirfd}")
            if base is None:
                return None
            full = base.rstrip(b"/") + b"/" + raw
        head, _, name = full.rstrip(b"/").rpartition(b"/")
        if name in (b".", b"..", b""):
            return os.path.realpath(full)
        return os.path.realpath(head or b"/").rstrip(b"/") + b"/" + name

    def _exec_done(self, pid: int) -> Iterator[Event]:
        """PTRACE_EVENT_EXEC: the exec succeeded (a thread's exec takes the leader's pid)."""
        _ptrace(PTRACE_GETEVENTMSG, pid, 0, self._addr)
        former = struct.unpack_from("=Q", self._info)[0]
        tracee = self._tracees[pid]
        if former != pid and former in self._tracees:
            tracee.pending = self._tracees.pop(former).pending
        if tracee.mem >= 0:
            os.close(tracee.mem)  # bound to the old address space
            tracee.mem = -1
        pending, tracee.pending = tracee.pending, None
        if pending is not None:
            yield self._event(Kind.EXEC, pending[1], 0, pid, 0)
        cmdline = _read_small(f"/proc/{pid}/cmdline")
        if pid in self._processes and cmdline is not None:
            self._processes[pid].argv = tuple(cmdline.rstrip(b"\0").split(b"\0"))

    def _event(self, kind: Kind, path: bytes, err: int, pid: int, flags: int) -> Event:
        return Event(kind, path, err, pid, flags, time.monotonic() - self._t0)

    # -- tracee memory -------------------------------------------------------------------------

    def _read(self, pid: int, tracee: _Tracee, addr: int, size: int) -> bytes:
        if tracee.mem < 0:
            try:
                tracee.mem = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return b""
        try:
            return os.pread(tracee.mem, size, addr)
        except OSError:
            return b""

    def _read_string(self, pid: int, tracee: _Tracee, addr: int) -> bytes | None:
        if addr == 0:
            return None
        data = b""
        while len(data) < 4096:
            chunk = self._read(pid, tracee, addr + len(data), 256)
            if not chunk:
                return data if data else None
            end = chunk.find(b"\0")
            if end >= 0:
                return data + chunk[:end]
            data += chunk
        return data

    # -- ending ----------------------------------------------------------------------------------

    def _gone(self, pid: int, status: int) -> None:
        tracee = self._tracees.pop(pid, None)
        if tracee is not None and tracee.mem >= 0:
            os.close(tracee.mem)
        proc = self._processes.get(pid)
        if proc is not None:
            if os.WIFEXITED(status):
                proc.exit_code = os.WEXITSTATUS(status)
            else:
                proc.signal = os.WTERMSIG(status)

    def _waits(self) -> Iterator[tuple[int, int]]:
        """Every stop and exit of the tracees until none is left; exits are recorded here."""
        while self._tracees:
            try:
                pid, status = os.waitpid(-1, _WALL)
            except ChildProcessError:
                return
            if _ended(status):
                self._gone(pid, status)
            yield pid, status

    def _time_out(self) -> None:  # runs in the timer's thread: kill only, the loop reaps
        self._timed_out = True
        self._kill_all(reap=False)

    def _kill_all(self, *, reap: bool) -> None:
        while True:  # the timer thread may look while the loop changes the dict
            try:
                pids = tuple(self._tracees)
                break
            except RuntimeError:
                continue
        for pid in pids:
            self._kill(pid)
        if pids and reap:  # nothing survives the run, not even a zombie
            for pid, status in self._waits():
                if not _ended(status):
                    self._kill(pid)
                    self._resume(pid, 0)

    @staticmethod
    def _kill(pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _ended(status: int) -> bool:
    return os.WIFEXITED(status) or os.WIFSIGNALED(status)


def _signed(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _readlink(path: str) -> bytes | None:
    try:
        return os.readlink(os.fsencode(path))
    except OSError:
        return None


def _read_small(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read(65536)
    except OSError:
        return None


def _tgid(pid: int) -> int:
    data = _read_small(f"/proc/{pid}/status") or b""
    for line in data.splitlines():
        if line.startswith(b"Tgid:"):
            return int(line.split()[1])
    return pid
