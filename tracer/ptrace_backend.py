"""The ptrace backend: a seccomp filter stops the tracee on recorded syscalls only.

The loop drives ``os.waitpid(-1, __WALL)`` itself (python-ptrace's debugger sleep-polls and is
~200x slower with many processes); python-ptrace provides the raw ``ptrace()`` binding.

One stop per recorded syscall, at its entry (the seccomp stop, tracee stopped): the path is read
from ``/proc/PID/mem``, resolved exactly through ``/proc/PID/cwd``, ``/proc/PID/fd/N`` and
``/proc/PID/root`` (:mod:`tracer.paths`), and the outcome of a read-only lookup is learned there
with a stat of the same path. Only calls whose outcome the kernel decides (execs, mkdir, creating
opens, chroot, /proc, /sys and /dev paths) take a second stop at their exit; a successful exec is
its ``PTRACE_EVENT_EXEC``. Where seccomp is not available, every syscall stops and the entry
stops are filtered here (slower, same events).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from ptrace.binding import func as _pt  # python-ptrace: the raw ptrace(2) binding
from ptrace.error import PtraceError

from . import seccomp
from .errors import TracerError, TracerUnavailableError
from .events import Event, Kind, Process, RunResult
from .launch import find_program, prepare_child
from .paths import Resolver, is_kernel_path, read_small, readlink
from .syscalls import (
    AT_EMPTY_PATH,
    AT_FDCWD,
    AT_SYMLINK_NOFOLLOW,
    BY_NR,
    O_CREAT,
    O_DIRECTORY,
    O_EXCL,
    O_NOFOLLOW,
    O_PATH,
    O_TMPFILE,
    Syscall,
    filter_rules,
)

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
_SECCOMP_STOP = (_EV_SECCOMP << 8) | signal.SIGTRAP  # status >> 8 of a seccomp stop
_WALL = 0x40000000
_X86_64 = seccomp.AUDIT_ARCH_X86_64  # a native call (32-bit ones have AUDIT_ARCH_I386)
_INFO = struct.Struct("=BxxxIQQ")  # op, arch, instruction pointer, stack pointer
_NR_ARGS = struct.Struct("=Q6Q")  # nr, args[6] (entry and seccomp)
_EXIT = struct.Struct("=qB")  # rval, is_error
# What a container's process gets by default: no locale (programs run in the C locale and load no
# locale files; a sample that needs one passes LANG itself, and those files are then kept).
CLEAN_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
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
    chroot: bytes | None = None  # run chrooted here (a Sandbox's merged dir); paths map back
    pin_cpu: bool = True  # tracer and tracees on one CPU: a stop costs ~6x less than across


@dataclass
class _Tracee:
    started: bool = False  # its first SIGSTOP (the attach) has been swallowed
    pending: tuple[Syscall, bytes, int] | None = None  # waiting for the outcome
    mem: int = -1
    root: bytes | None = None  # host path of its root directory (b"" for /); None: not read


class PtraceBackend:
    """Run one command under ptrace; iterate over :meth:`events`, then read :attr:`result`."""

    name = "ptrace"

    def __init__(self, options: Options) -> None:
        self.options = options
        self.result: RunResult | None = None
        self.lost_events = 0  # ptrace loses none: every traced syscall stops
        self.stops = 0  # every waitpid report: what tracing cost the tracees
        self._tracees: dict[int, _Tracee] = {}
        self._processes: dict[int, Process] = {}
        self._threads: set[int] = set()
        self._listed: set[tuple[int, int, bytes]] = set()
        self._timed_out = False
        self._info = ctypes.create_string_buffer(88)
        self._addr = ctypes.addressof(self._info)
        self._view = memoryview(self._info).cast("B")
        self._t0 = 0.0
        self._paths = Resolver(options.chroot or b"/")

    # -- start ---------------------------------------------------------------------------------

    def _spawn(self) -> int:
        env_path = self.options.env.get("PATH", CLEAN_ENV["PATH"])
        program = find_program(self._paths, self.options.argv[0], env_path, self.options.cwd)
        flt = seccomp.build_filter(filter_rules()) if self.options.use_seccomp else b""
        devnull = os.open(os.devnull, os.O_RDWR)
        pid = os.fork()
        if pid == 0:  # the child: only async-signal-safe-ish steps until exec
            try:
                prepare_child(
                    self.options.chroot, self.options.cwd, devnull, self.options.show_output
                )
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
        affinity = self._pin()
        try:
            yield from self._run()
        finally:
            if affinity:
                os.sched_setaffinity(0, affinity)
            self._paths.close()

    def _pin(self) -> set[int]:
        """Put this thread (and so every tracee) on one CPU; the former affinity, to restore.

        Every stop hands the CPU from tracee to tracer and back; across CPUs each handover is an
        inter-processor wake-up, ~6x slower on a VM (find /usr/share: 2.9 s vs 0.48 s). The
        cost is that a parallel workload runs on one CPU while traced.
        """
        if not self.options.pin_cpu:
            return set()
        allowed = sorted(os.sched_getaffinity(0))
        if len(allowed) < 2:
            return set()
        os.sched_setaffinity(0, {allowed[os.getpid() % len(allowed)]})
        return set(allowed)

    def _run(self) -> Iterator[Event]:
        root = self._spawn()
        timer = None
        if self.options.seconds > 0:
            timer = threading.Timer(self.options.seconds, self._time_out)
            timer.daemon = True
            timer.start()
        exit_code: int | None = None
        sig: int | None = None
        tracees = self._tracees
        try:
            for pid, status in self._waits():
                if status >> 8 == _SECCOMP_STOP:  # the common case, kept short
                    event = self._syscall_stop(pid, tracees.get(pid) or self._tracee(pid))
                    if event is not None:
                        yield event
                elif _ended(status):
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
            recorded = self._syscall_stop(pid, tracee)
            if recorded is not None:
                yield recorded
            return
        if stopsig == signal.SIGTRAP and event:
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
        """The parent's fork event. The child may have reported (even exec'd) already: what it
        learned then (its root, its new argv) is newer than the parent's and is kept."""
        early = child in self._tracees
        self._tracee(child)
        if thread and _tgid(child) != child:
            self._threads.add(child)
            self._processes.pop(child, None)
            return
        parent_tracee = self._tracees.get(parent)
        if parent_tracee is not None and not early:  # a child starts in its parent's root
            self._tracees[child].root = parent_tracee.root
        proc = self._processes.setdefault(child, Process(child, parent))
        proc.ppid = parent
        if not (early and proc.argv) and parent in self._processes:
            proc.argv = self._processes[parent].argv

    def _resume(self, pid: int, sig: int) -> None:
        tracee = self._tracees.get(pid)
        want_exit = tracee is not None and tracee.pending is not None
        request = PTRACE_SYSCALL if (want_exit or not self.options.use_seccomp) else PTRACE_CONT
        with contextlib.suppress(PtraceError):  # it died meanwhile: waitpid will say so
            _pt.ptrace(request, pid, 0, sig)

    # -- syscalls ------------------------------------------------------------------------------

    def _syscall_stop(self, pid: int, tracee: _Tracee) -> Event | None:
        """A seccomp stop (a recorded call's entry), or with every syscall stopping an entry or
        exit stop: at most one event, then the tracee runs on (to its exit stop if pending)."""
        event = None
        try:
            _ptrace(PTRACE_GET_SYSCALL_INFO, pid, 88, self._addr)
        except TracerError:
            pass
        else:
            op = self._view[0]
            if op == _OP_EXIT:
                if tracee.pending is not None:
                    event = self._exited(pid, tracee)
            elif op == _OP_SECCOMP or (op == _OP_ENTRY and self._native()):
                nr, *args = _NR_ARGS.unpack_from(self._info, _INFO.size)
                call = BY_NR.get(nr)
                if call is not None:
                    event = self._entered(pid, tracee, call, args)
        self._resume(pid, 0)
        return event

    def _native(self) -> bool:
        """An every-syscall entry stop of a native call: 32-bit ones have other numbers and
        arguments and are not recorded (the seccomp filter lets them through unstopped)."""
        return bool(_INFO.unpack_from(self._info)[1] == _X86_64)

    def _exited(self, pid: int, tracee: _Tracee) -> Event | None:
        """The exit stop of a call whose outcome only the kernel knows."""
        assert tracee.pending is not None
        call, path, flags = tracee.pending
        tracee.pending = None
        rval = _EXIT.unpack_from(self._info, _INFO.size)[0]
        err = -rval if -4096 < rval < 0 else 0
        if call.changes_root:
            tracee.root = None  # read again at its next path
        if call.kind == Kind.MKDIR and not err:
            self._paths.forget_dirs()
        if call.kind == Kind.EXEC and not err:
            return None  # a successful exec is its ptrace event
        return self._event(call.kind, path, err, pid, flags)

    def _entered(self, pid: int, tracee: _Tracee, call: Syscall, args: list[int]) -> Event | None:
        """A recorded call at its entry: an event now, or a pending one for the exit stop."""
        flags = call.fixed_flags
        if call.flags is not None:
            flags = args[call.flags] & 0xFFFFFFFF
        follow = call.follow
        if call.at_flags is not None and args[call.at_flags] & AT_SYMLINK_NOFOLLOW:
            follow = False
        if call.fd is not None:
            fd = _signed(args[call.fd])
            host = readlink(b"/proc/%d/fd/%d" % (pid, fd))
            if host is None:
                return None
            if call.kind == Kind.LIST:
                key = (pid, fd, host)
                if key in self._listed:
                    return None  # the same directory read on: already recorded
                self._listed.add(key)
        else:
            decoded = self._path_argument(pid, tracee, call, args)
            if decoded is None:
                return None
            host, raw = decoded
            if call.name == "openat2":
                how = self._read(pid, tracee, args[2], 8)
                flags = struct.unpack("=Q", how)[0] & 0xFFFFFFFF if len(how) == 8 else 0
            if raw.endswith(b"/"):
                follow = True
        path = self._paths.report(host)
        if path is None:
            return None  # outside the traced root: a descriptor inherited from the host
        kind = call.kind
        if kind == Kind.LIST:
            return self._event(kind, path, 0, pid, flags)
        if call.changes_root or is_kernel_path(path):
            tracee.pending = (call, path, flags)  # only the kernel can say
            return None
        if kind == Kind.OPEN and flags & O_NOFOLLOW:
            follow = False
        want_dir = kind == Kind.CHDIR or bool(flags & O_DIRECTORY)
        refuse_link = kind == Kind.OPEN and bool(flags & O_NOFOLLOW) and not flags & O_PATH
        err = self._paths.outcome(
            self._root_of(pid, tracee),
            host,
            follow=follow,
            want_dir=want_dir,
            refuse_link=refuse_link,
            want_link=call.name in ("readlink", "readlinkat"),
        )
        creates = kind == Kind.MKDIR or (kind == Kind.OPEN and flags & (O_CREAT | O_TMPFILE))
        if creates:
            if not err and (kind == Kind.MKDIR or flags & O_EXCL):
                return self._event(kind, path, errno.EEXIST, pid, flags)
            if err in (errno.ENOENT, errno.ELOOP):  # a new name: the kernel decides
                tracee.pending = (call, path, flags)
                return None
        elif kind == Kind.EXEC and not err:
            tracee.pending = (call, path, flags)  # it may still fail (format, interpreter)
            return None
        return self._event(kind, path, err, pid, flags)

    def _path_argument(
        self, pid: int, tracee: _Tracee, call: Syscall, args: list[int]
    ) -> tuple[bytes, bytes] | None:
        """The host path a path argument names (directory part resolved), and the raw string."""
        assert call.path is not None
        raw = self._read_string(pid, tracee, args[call.path])
        if raw is None:
            return None
        dirfd = _signed(args[call.dirfd]) if call.dirfd is not None else AT_FDCWD
        if not raw:
            at = args[call.at_flags] if call.at_flags is not None else 0
            if call.kind == Kind.EXEC and at & AT_EMPTY_PATH and dirfd >= 0:
                fd_path = readlink(b"/proc/%d/fd/%d" % (pid, dirfd))
                return (fd_path, raw) if fd_path else None
            return None  # about the fd itself (fstat through statx): no lookup
        proot = self._root_of(pid, tracee)
        base = None
        if not raw.startswith(b"/"):
            where = b"cwd" if dirfd == AT_FDCWD else b"fd/%d" % dirfd
            base = readlink(b"/proc/%d/%s" % (pid, where))
            if base is None:
                return None
        return self._paths.absolute(proot, base, raw), raw

    def _root_of(self, pid: int, tracee: _Tracee) -> bytes:
        if tracee.root is None:
            tracee.root = self._paths.process_root(pid)
        return tracee.root

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
        cmdline = read_small(f"/proc/{pid}/cmdline")
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
            self.stops += 1
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


def _tgid(pid: int) -> int:
    data = read_small(f"/proc/{pid}/status") or b""
    for line in data.splitlines():
        if line.startswith(b"Tgid:"):
            return int(line.split()[1])
    return pid
