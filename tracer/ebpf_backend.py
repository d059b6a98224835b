"""The eBPF backend (bcc): syscall tracepoints, no stop of the traced programs.

One probe pair per recorded syscall (``syscalls:sys_enter_X`` saves the arguments of a traced
process's call, ``sys_exit_X`` sends them with the path string and the return value through a
ring buffer), and ``sched_process_fork``/``exec``/``exit`` keep the set of traced processes in a
kernel map, so other processes on the machine cost one map lookup. The program is generated from
the same syscall table as the ptrace backend's seccomp filter.

The command starts only once the probes are attached: the child waits on a pipe until its pid
is in the map. Relative and dirfd-relative paths are resolved here, from each process's working
directory and descriptors followed through its own chdir, open and fork events (as the kernel
resolves them; the directory part's symlinks as :mod:`tracer.paths` does). Events the ring
buffer could not take are counted (``lost_events``), never silently dropped.

bcc comes from Debian's python3-bpfcc and compiles the program with the running kernel's
headers: ``scripts/ebpf.sh`` installs them (see its comments for kernels without their own).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import struct
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from .errors import TracerUnavailableError
from .events import Event, Kind, Process, RunResult
from .launch import find_program, prepare_child
from .paths import Resolver, read_small, readlink
from .proctable import ProcState
from .ptrace_backend import CLEAN_ENV, Options
from .syscalls import AT_EMPTY_PATH, AT_FDCWD, BY_NR, TABLE, Syscall

PATH_MAX = 4096
_NR_DUP, _NR_DUP2, _NR_DUP3, _NR_FCNTL = 32, 33, 292, 72
_NR_GETDENTS64, _NR_GETDENTS = 217, 78
_DIST = "/usr/lib/python3/dist-packages"  # where Debian's python3-bpfcc installs bcc
_EV_CALL, _EV_EXEC_PATH, _EV_FORK, _EV_EXEC, _EV_EXIT = 0, 1, 2, 3, 4
_HEAD = struct.Struct("=IIIIqiIII")  # type, tgid, tid, nr, ret, dirfd, flags, other, len


def load_bcc() -> Any:
    """The bcc module, or a TracerUnavailableError saying exactly what is missing."""
    if os.geteuid() != 0:
        raise TracerUnavailableError("the eBPF backend needs root (CAP_BPF, CAP_PERFMON)")
    if _DIST not in sys.path and os.path.isdir(_DIST):
        sys.path.append(_DIST)
    try:
        import bcc
    except ImportError:
        raise TracerUnavailableError(
            "the eBPF backend needs bcc: apt-get install python3-bpfcc, and kernel headers "
            "(bash scripts/ebpf.sh installs both)"
        ) from None
    release = os.uname().release
    if not os.path.exists(f"/lib/modules/{release}/build"):
        raise TracerUnavailableError(
            f"bcc needs headers of the running kernel: /lib/modules/{release}/build is missing "
            "(bash scripts/ebpf.sh installs the nearest Debian headers and links them)"
        )
    if not os.path.isdir("/sys/kernel/tracing/events/syscalls"):
        with contextlib.suppress(OSError):
            os.system("mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null")
        if not os.path.isdir("/sys/kernel/tracing/events/syscalls"):
            raise TracerUnavailableError("no syscall tracepoints (tracefs) on this kernel")
    return bcc


def bpf_program() -> str:
    """The C source bcc compiles: probes for every syscall of the table, and the sched ones."""
    parts = [
        f"""
#define PATH_MAX_ {PATH_MAX}
struct inflight {{ u64 ptr; s32 dirfd; u32 flags; u32 nr; u32 other; u32 other2; }};
struct event {{
    u32 type; u32 tgid; u32 tid; u32 nr; s64 ret; s32 dirfd; u32 flags; u32 other; u32 len;
    char path[PATH_MAX_];
}};
BPF_HASH(traced, u32, u8, 65536);
BPF_HASH(inflight, u64, struct inflight, 65536);
BPF_ARRAY(lost, u64, 1);
static __always_inline void count_lost(void) {{
    int zero = 0;
    u64 *n = lost.lookup(&zero);
    if (n) __sync_fetch_and_add(n, 1);
}}
BPF_RINGBUF_OUTPUT(events, 8192);
BPF_PERCPU_ARRAY(scratch, struct event, 1);  /* built here, sent with only its path's length */

static __always_inline void send(struct event *e) {{
    /* a mask the verifier can follow (a 4095-byte path loses its tail: counted as lost) */
    u32 len = e->len & (PATH_MAX_ - 1);
    if (len != e->len) count_lost();
    if (events.ringbuf_output(e, sizeof(struct event) - PATH_MAX_ + len, 0) != 0) count_lost();
}}

static __always_inline int is_traced(void) {{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    return traced.lookup(&tgid) != 0;
}}

TRACEPOINT_PROBE(raw_syscalls, sys_exit) {{
    s64 ret = args->ret;
    u64 id = bpf_get_current_pid_tgid();
    struct inflight *f = inflight.lookup(&id);
    if (!f) return 0;
    if (ret == 0 && (f->nr == {_NR_GETDENTS64} || f->nr == {_NR_GETDENTS})) {{
        inflight.delete(&id);  /* the end of a listing already recorded by its first read */
        return 0;
    }}
    int zero = 0;
    struct event *e = scratch.lookup(&zero);
    if (!e) {{ inflight.delete(&id); return 0; }}
    e->type = {_EV_CALL}; e->tgid = id >> 32; e->tid = (u32)id; e->nr = f->nr; e->ret = ret;
    e->dirfd = f->dirfd; e->flags = f->flags; e->other = f->other; e->len = 0;
    /* a successful exec is in a new image now: its path comes with sched_process_exec */
    if (f->ptr && !(f->other2 && ret == 0)) {{
        long n = bpf_probe_read_user_str(e->path, sizeof(e->path), (void *)f->ptr);
        e->len = n > 0 ? n : 0;
        /* an empty path with AT_EMPTY_PATH is about the fd itself (glibc's fstat): no lookup */
        if (n == 1 && (f->other & {AT_EMPTY_PATH}) && !f->other2) {{
            inflight.delete(&id);
            return 0;
        }}
    }}
    send(e);
    inflight.delete(&id);
    return 0;
}}

TRACEPOINT_PROBE(sched, sched_process_fork) {{
    u32 parent = args->parent_pid;
    if (!traced.lookup(&parent)) return 0;
    u32 child = args->child_pid;
    u8 one = 1;
    traced.update(&child, &one);
    struct event *e = events.ringbuf_reserve(sizeof(struct event) - PATH_MAX_);
    if (!e) {{ count_lost(); return 0; }}
    e->type = {_EV_FORK}; e->tgid = bpf_get_current_pid_tgid() >> 32; e->tid = child;
    e->other = parent; e->len = 0;
    events.ringbuf_submit(e, 0);
    return 0;
}}

TRACEPOINT_PROBE(sched, sched_process_exec) {{
    if (!is_traced()) return 0;
    struct event *e = events.ringbuf_reserve(sizeof(struct event) - PATH_MAX_);
    if (!e) {{ count_lost(); return 0; }}
    e->type = {_EV_EXEC}; e->tgid = bpf_get_current_pid_tgid() >> 32; e->tid = args->pid;
    e->other = args->old_pid; e->len = 0;
    events.ringbuf_submit(e, 0);
    int zero = 0;  /* the kernel's own copy of the file name: always readable */
    struct event *x = scratch.lookup(&zero);
    if (!x) return 0;
    x->type = {_EV_EXEC_PATH}; x->tgid = bpf_get_current_pid_tgid() >> 32; x->tid = args->pid;
    x->nr = 59; x->ret = 0;
    x->dirfd = {AT_FDCWD}; x->flags = 0; x->other = 0;
    unsigned short loc = args->data_loc_filename & 0xFFFF;
    long n = bpf_probe_read_kernel_str(x->path, sizeof(x->path), (char *)args + loc);
    x->len = n > 0 ? n : 0;
    send(x);
    return 0;
}}

TRACEPOINT_PROBE(sched, sched_process_exit) {{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    if (!traced.lookup(&tgid)) return 0;
    struct event *e = events.ringbuf_reserve(sizeof(struct event) - PATH_MAX_);
    if (e) {{
        e->type = {_EV_EXIT}; e->tgid = tgid; e->tid = (u32)id; e->len = 0;
        events.ringbuf_submit(e, 0);
    }} else count_lost();
    if ((u32)id == tgid) traced.delete(&tgid);
    return 0;
}}
"""
    ]
    parts.append(_enter_probe())
    return "\n".join(parts)


def _arg(index: int | None, cast: str) -> str:
    return f"({cast})args->args[{index}]" if index is not None else "0"


def _enter_probe() -> str:
    """One probe on raw_syscalls:sys_enter for every recorded syscall (a switch on its number,
    constant argument offsets for the verifier): two probes attach and detach in milliseconds,
    where one pair per syscall took seconds to detach."""
    cases = []
    for call in TABLE:
        dirfd = _arg(call.dirfd, "s32") if call.dirfd is not None else str(AT_FDCWD)
        if call.fd is not None:
            dirfd = _arg(call.fd, "s32")  # the fd the call is about travels as dirfd
        flags = _arg(call.flags, "u32")
        if call.name == "openat2":
            flags = (
                "0; { u64 how = 0; bpf_probe_read_user(&how, sizeof(how), "
                "(void *)args->args[2]); f.flags = (u32)how; }"
            )
        cases.append(
            f"    case {call.nr}: f.ptr = {_arg(call.path, 'u64')}; f.dirfd = {dirfd}; "
            f"f.flags = {flags}; f.other = {_arg(call.at_flags, 'u32')}; "
            f"exec = {1 if call.kind == Kind.EXEC else 0}; break;"
        )
    # dup, dup2, dup3 and fcntl(F_DUPFD, F_DUPFD_CLOEXEC): the descriptor table of a process
    # (find walks with duplicated directory fds), sent as an fd-only call with nr kept
    cases.append(
        f"    case {_NR_DUP}: case {_NR_DUP2}: case {_NR_DUP3}: f.dirfd = (s32)args->args[0]; "
        "break;"
    )
    cases.append(
        f"    case {_NR_FCNTL}: if (args->args[1] != 0 && args->args[1] != 1030) return 0; "
        "f.dirfd = (s32)args->args[0]; break;"
    )
    return f"""
TRACEPOINT_PROBE(raw_syscalls, sys_enter) {{
    if (!is_traced()) return 0;
    u64 id = bpf_get_current_pid_tgid();
    struct inflight f = {{}};
    int exec = 0;
    switch (args->id) {{
{chr(10).join(cases)}
    default: return 0;
    }}
    f.nr = args->id;
    f.other2 = exec;
    inflight.update(&id, &f);
    return 0;
}}
"""


class _Loaded:
    """The compiled, attached program: one per process, reused by every run. Compiling takes
    ~0.4 s and detaching as long (also at exit), so an invocation tracing fifteen sample
    commands pays it once. Runs take turns; between them the maps are emptied."""

    _lock = threading.Lock()
    _instance: _Loaded | None = None

    def __init__(self, bcc: Any) -> None:
        try:
            self.bpf = bcc.BPF(text=bpf_program())
        except Exception as exc:  # bcc raises plain Exceptions when the kernel refuses
            raise TracerUnavailableError(f"the kernel refused the eBPF program: {exc}") from None
        self.sink: Any = None
        self.bpf["events"].open_ring_buffer(self._dispatch)

    def _dispatch(self, ctx: Any, data: Any, size: int) -> None:
        sink = self.sink
        if sink is not None:
            sink(ctx, data, size)

    @classmethod
    def acquire(cls, bcc: Any) -> _Loaded:
        if not cls._lock.acquire(blocking=False):
            raise TracerUnavailableError("another eBPF trace is running in this process")
        try:
            if cls._instance is None:
                cls._instance = cls(bcc)
            return cls._instance
        except BaseException:
            cls._lock.release()
            raise

    def release(self) -> None:
        self.sink = None
        self.bpf["traced"].clear()
        self.bpf["inflight"].clear()
        self.bpf["lost"][ctypes.c_int(0)] = ctypes.c_ulonglong(0)
        type(self)._lock.release()


class EbpfBackend:
    """Run one command traced by eBPF; iterate over :meth:`events`, then read :attr:`result`."""

    name = "ebpf"

    def __init__(self, options: Options) -> None:
        self.options = options
        self.result: RunResult | None = None
        self.lost_events = 0
        self.unresolved = 0  # paths whose directory could not be known (a bug if not 0)
        self._bcc = load_bcc()
        self._procs: dict[int, ProcState] = {}
        self._processes: dict[int, Process] = {}
        self._live: set[int] = set()
        self._paths = Resolver(options.chroot or b"/")
        self._queue: list[Event] = []
        self._t0 = 0.0
        self._timed_out = False
        self._listed: set[tuple[int, int, bytes]] = set()

    # -- events ----------------------------------------------------------------------------------

    def events(self) -> Iterator[Event]:
        loaded = _Loaded.acquire(self._bcc)
        loaded.sink = self._on_event
        try:
            yield from self._run(loaded.bpf)
        finally:
            self._paths.close()
            loaded.release()

    def _run(self, bpf: Any) -> Iterator[Event]:
        traced = bpf["traced"]
        self._t0 = time.monotonic()
        pid, gate = self._spawn()
        traced[ctypes.c_uint32(pid)] = ctypes.c_uint8(1)
        self._procs[pid] = ProcState(os.fsencode(self.options.cwd))
        self._processes[pid] = Process(pid, os.getpid(), tuple(map(os.fsencode, self.options.argv)))
        self._live.add(pid)
        os.write(gate, b"go")
        os.close(gate)
        deadline = time.monotonic() + self.options.seconds if self.options.seconds > 0 else None
        status = None
        while True:
            bpf.ring_buffer_poll(30)
            yield from self._drain()
            if status is None:
                done, st = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = st
                    self._live.discard(pid)
            if status is not None and not self._live:
                break
            if deadline is not None and time.monotonic() > deadline:
                self._timed_out = True
                self._kill_all(pid)
                if status is None:
                    _, status = os.waitpid(pid, 0)
                break
        time.sleep(0.02)  # the last events of the tree still in flight
        bpf.ring_buffer_consume()
        yield from self._drain()
        self._kill_all(pid)  # daemons left behind: nothing survives the run
        self.lost_events = int(bpf["lost"][ctypes.c_int(0)].value)
        exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        root = self._processes[pid]
        root.exit_code, root.signal = exit_code, sig
        self.result = RunResult(exit_code, sig, self._timed_out, self._processes)

    def _drain(self) -> Iterator[Event]:
        queue, self._queue = self._queue, []
        yield from queue

    def _kill_all(self, root: int) -> None:
        for pid in {root, *self._live}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _spawn(self) -> tuple[int, int]:
        """A child that sets itself up, says so, and waits (until the probes see it) to exec."""
        env_path = self.options.env.get("PATH", CLEAN_ENV["PATH"])
        program = find_program(self._paths, self.options.argv[0], env_path, self.options.cwd)
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        devnull = os.open(os.devnull, os.O_RDWR)
        pid = os.fork()
        if pid == 0:
            try:
                os.close(ready_r)
                os.close(go_w)
                prepare_child(
                    self.options.chroot, self.options.cwd, devnull, self.options.show_output
                )
                os.write(ready_w, b"r")
                os.read(go_r, 2)
                os.execve(program, self.options.argv, self.options.env)
            finally:
                os._exit(127)
        for fd in (ready_w, go_r, devnull):
            os.close(fd)
        os.read(ready_r, 1)  # its own set-up is done: from here on, every call is the command's
        os.close(ready_r)
        return pid, go_w

    # -- one ring-buffer record ------------------------------------------------------------------

    def _on_event(self, ctx: Any, data: Any, size: int) -> None:
        raw = ctypes.string_at(data, size)
        kind, tgid, tid, nr, ret, dirfd, flags, other, length = _HEAD.unpack_from(raw)
        if kind == _EV_FORK:
            parent = self._procs.get(tgid) or self._procs.get(other)
            if parent is not None and tid not in self._procs:
                self._procs[tid] = parent.fork()
            if tid not in self._processes:
                argv = self._processes[tgid].argv if tgid in self._processes else ()
                self._processes[tid] = Process(tid, tgid, argv)
            self._live.add(tid)
            return
        if kind == _EV_EXIT:
            if tid == tgid:
                self._live.discard(tgid)
            return
        if kind == _EV_EXEC:
            cmdline = read_small(f"/proc/{tgid}/cmdline")
            if cmdline is not None and tgid in self._processes:
                self._processes[tgid].argv = tuple(cmdline.rstrip(b"\0").split(b"\0"))
            return
        call = BY_NR.get(nr)
        proc = self._procs.setdefault(tgid, ProcState(b"/"))
        if call is None:
            if nr in (_NR_DUP, _NR_DUP2, _NR_DUP3, _NR_FCNTL) and ret >= 0:
                proc.dup(dirfd, int(ret))
            return
        path_raw = raw[_HEAD.size : _HEAD.size + max(length - 1, 0)]
        err = -ret if -4096 < ret < 0 else 0
        if kind == _EV_EXEC_PATH or (call.kind == Kind.EXEC and err):
            # a successful exec, with the kernel's copy of its file name; or a failed one
            resolved = self._resolve(proc, call, path_raw, dirfd, other, tgid)
            if resolved is not None:
                self._emit(Kind.EXEC, resolved, err, tgid, 0)
            return
        if call.kind == Kind.EXEC:
            return  # a successful exec's own exit: its path came with sched_process_exec
        if call.fd is not None:
            path = proc.fds.get(dirfd) if dirfd >= 0 else None
            if path is None:
                path = self._fd_from_proc(tgid, dirfd)
            if path is None:
                self.unresolved += 1
                return
        else:
            resolved = self._resolve(proc, call, path_raw, dirfd, other, tgid)
            if resolved is None:
                return
            path = resolved
        if call.kind == Kind.LIST:
            if (tgid, dirfd, path) in self._listed:
                return  # the same directory read on: already recorded
            self._listed.add((tgid, dirfd, path))
        if not err:
            proc.after(call, path, int(ret))
            if call.kind == Kind.MKDIR:
                self._paths.forget_dirs()
        self._emit(call.kind, path, err, tgid, flags)

    def _resolve(
        self, proc: ProcState, call: Syscall, raw: bytes, dirfd: int, at_flags: int, tgid: int
    ) -> bytes | None:
        """The path inside the root, directory part resolved; None for an fd-only call."""
        if not raw:
            if call.kind == Kind.EXEC and at_flags & AT_EMPTY_PATH and dirfd >= 0:
                return proc.fds.get(dirfd)
            return None
        if raw.startswith(b"/"):
            base = None
        elif dirfd == AT_FDCWD:
            base = proc.cwd
        else:
            base = proc.fds.get(dirfd)
            if base is None:  # opened before we knew (or by a call we do not follow)
                base = self._fd_from_proc(tgid, dirfd)
                if base is None:
                    self.unresolved += 1
                    return None
                proc.fds[dirfd] = base
        prefix = self._paths.prefix  # the traced root on the host (b"" for /)
        host_base = None if base is None else (prefix + base if base != b"/" else prefix or b"/")
        return self._paths.report(self._paths.absolute(prefix, host_base, raw))

    def _fd_from_proc(self, pid: int, fd: int) -> bytes | None:
        host = readlink(b"/proc/%d/fd/%d" % (pid, fd))
        return self._paths.report(host) if host is not None else None

    def _emit(self, kind: Kind, path: bytes, err: int, pid: int, flags: int) -> None:
        self._queue.append(Event(kind, path, err, pid, flags, time.monotonic() - self._t0))


def available() -> str | None:
    """None when the eBPF backend can run here, else why not."""
    try:
        load_bcc()
    except TracerUnavailableError as exc:
        return str(exc)
    return None
