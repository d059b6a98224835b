"""The eBPF backend (bcc): syscall tracepoints, no stop of the traced programs.

The raw tracepoint ``sys_enter`` saves the arguments of a traced process's recorded call (a
switch on the syscall number, generated from the same table as the ptrace backend's seccomp
filter; raw tracepoints cost every other syscall on the machine half what perf tracepoints do:
find /usr untraced ran 1.10x slower with them attached, 1.20x with ``raw_syscalls:sys_enter``)
and ``sys_exit`` sends them with the path string and the return value through a ring buffer;
``sched_process_fork``/``exec``/``exit`` keep the set of traced processes in a kernel map, so
other processes on the machine cost one map lookup. An exec also sends its argv (read at its
entry) and exit_group its status, so processes are recorded as the ptrace backend records them.

Aggregated in the kernel: a ``dup`` is traced back to the open its descriptor comes from (no
record), and a call that repeats one already sent in the same run (same call, outcome and
absolute path, or cwd-relative path from the same working directory; any process that has not
chrooted) only adds to a count, which the reader collects when the run ends (an event with
``calls`` = the repeats): 100,000 stats of one path cost 1.6x untraced instead of 4.4x.

The command starts only once the probes are attached: the child waits on a pipe until its pid
is in the map. The run ends when the exit record of its last task has been read (a task's
exit comes after its last call in the buffer): no polling delay, no grace period. Threads are
followed (they share their process's entry) and are not processes. Relative and dirfd-relative
paths are resolved here, from each process's working directory and descriptors followed through
its own chdir, open, dup and fork events (as the kernel resolves them; the directory part's
symlinks as :mod:`tracer.paths` does). Events the ring buffer could not take are counted
(``lost_events``), never silently dropped.

bcc comes from Debian's python3-bpfcc and compiles the program with the running kernel's
headers: ``scripts/ebpf.sh`` installs them (see its comments for kernels without their own).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import mmap
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
from .ringbuf import RingBuffer
from .syscalls import AT_EMPTY_PATH, AT_FDCWD, BY_NR, TABLE, Syscall

PATH_MAX = 4096
RING_PAGES = 8192  # 32 MiB of ring buffer: ~300k records before one is lost
_NR_DUP, _NR_DUP2, _NR_DUP3, _NR_FCNTL = 32, 33, 292, 72
_NR_GETDENTS64, _NR_GETDENTS = 217, 78
_TRACEFS = "/sys/kernel/tracing"
_DIST = "/usr/lib/python3/dist-packages"  # where Debian's python3-bpfcc installs bcc
_EV_CALL, _EV_EXEC_PATH, _EV_FORK, _EV_EXEC, _EV_EXIT, _EV_STATUS, _EV_ARGV = range(7)
ARGV_MAX, ARGV_COUNT = 4096, 64  # what the kernel copies of an exec's argv (bytes, strings)
_NR_EXIT, _NR_EXIT_GROUP, _NR_CHROOT, _NR_BPF = 60, 231, 161, 321
_BATCH = 0.01  # records are read in batches this often (s); an exit record wakes the reader
_IDLE = 0.1  # how long without a record before checking for exits that were lost (s)
# type, tgid, tid, nr, ret, dirfd, flags, other, len, base, serial, agg
_HEAD = struct.Struct("=IIIIqiIIIQQQ")


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
    if not os.path.isdir(f"{_TRACEFS}/events/syscalls"):
        with contextlib.suppress(OSError):
            os.system(f"mount -t tracefs tracefs {_TRACEFS} 2>/dev/null")
        if not os.path.isdir(f"{_TRACEFS}/events/syscalls"):
            raise TracerUnavailableError("no syscall tracepoints (tracefs) on this kernel")
    return bcc


def bpf_program() -> str:
    """The C source bcc compiles: probes for every syscall of the table, and the sched ones."""
    parts = [
        f"""
#include <uapi/linux/ptrace.h>
#define PATH_MAX_ {PATH_MAX}
#define WHAT_EXEC 1
#define WHAT_OPEN 2
#define WHAT_DUP 3
#define WHAT_STATE 4  /* chdir, fchdir, chroot: what later paths resolve against */
struct inflight {{ u64 ptr; s32 dirfd; u32 flags; u32 nr; u32 other; u32 what; }};
/* base: the open record the call's fd comes from; serial: the one an open's new fd gets */
struct event {{
    u32 type; u32 tgid; u32 tid; u32 nr; s64 ret; s32 dirfd; u32 flags; u32 other; u32 len;
    u64 base; u64 serial; u64 agg;
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

/* Where each descriptor comes from, so that a dup costs no record (find duplicates every
   directory it opens: 43% of its records were dups). fds: (tgid, fd) -> the serial of the open
   record that made it, and when it was set; forks: a child's parent and when it forked, for
   the descriptors a child inherited: a parent's entry counts only if set before the fork (an
   entry set later means the parent reused the number: unknown, as is anything evicted). */
struct fdval {{ u64 serial; u64 at; }};
struct forkval {{ u32 parent; u32 pad; u64 at; }};
BPF_TABLE("lru_hash", u64, struct fdval, fds, 262144);
BPF_TABLE("lru_hash", u32, struct forkval, forks, 65536);
BPF_ARRAY(clock, u64, 1);
static __always_inline u64 tick(void) {{
    int zero = 0;
    u64 *c = clock.lookup(&zero);
    return c ? __sync_fetch_and_add(c, 1) + 1 : 0;
}}
static __always_inline void set_fd(u32 tgid, s64 fd, u64 serial) {{
    u64 key = ((u64)tgid << 32) | (u32)fd;
    struct fdval v = {{ .serial = serial, .at = tick() }};
    fds.update(&key, &v);
}}
/* Repeats, counted here instead of sent (issue: per-path counts in a map): a call whose path
   does not depend on a process's cwd (absolute, or relative to a descriptor traced to its open)
   is keyed by what decides its result; the first is sent with an id, the others only add to
   repeats[id], which the reader collects when the run ends. A process that chroots keys its
   own (its absolute paths are other files); a run's keys never match another run's. */
#define SEEN_PATH 128
struct seenkey {{
    u32 run; u32 tgid; u32 nr; u32 flags; s64 ret; u64 base; char path[SEEN_PATH];
}};
struct seenval {{ u64 agg; u64 serial; }};
BPF_TABLE("lru_hash", struct seenkey, struct seenval, seen, 131072);
BPF_HASH(repeats, u64, u64, 131072);
BPF_PERCPU_ARRAY(seen_scratch, struct seenkey, 1);
BPF_ARRAY(run, u32, 1);
BPF_HASH(rooted, u32, u8, 4096);
BPF_HASH(cwdgen, u32, u64, 65536);  /* a process's working directory since its last chdir */

static __always_inline u64 origin(u32 tgid, s32 fd) {{
    if (fd < 0) return 0;
    u64 before = (u64)-1;
    #pragma unroll
    for (int i = 0; i < 8; i++) {{
        u64 key = ((u64)tgid << 32) | (u32)fd;
        struct fdval *v = fds.lookup(&key);
        if (v) return v->at < before ? v->serial : 0;
        struct forkval *f = forks.lookup(&tgid);
        if (!f) return 0;
        if (f->at < before) before = f->at;
        tgid = f->parent;
    }}
    return 0;
}}
BPF_RINGBUF_OUTPUT(events, {RING_PAGES});
BPF_PERCPU_ARRAY(scratch, struct event, 1);  /* built here, sent with only its path's length */

static __always_inline void send(struct event *e) {{
    /* a mask the verifier can follow (a 4095-byte path loses its tail: counted as lost) */
    u32 len = e->len & (PATH_MAX_ - 1);
    if (len != e->len) count_lost();
    if (events.ringbuf_output(e, sizeof(struct event) - PATH_MAX_ + len, BPF_RB_NO_WAKEUP) != 0)
        count_lost();
}}

/* an exec's argv, read from the caller at its entry (the new image's is out of reach without
   task_struct offsets): the last one a thread sent before its exec succeeded is the one */
struct argv_event {{
    u32 type; u32 tgid; u32 tid; u32 nr; s64 ret; s32 dirfd; u32 flags; u32 other; u32 len;
    u64 base; u64 serial; u64 agg;
    char buf[2 * {ARGV_MAX}];
}};
BPF_PERCPU_ARRAY(argv_scratch, struct argv_event, 1);
static __always_inline void send_argv(u64 id, u64 uargv) {{
    int zero = 0;
    struct argv_event *e = argv_scratch.lookup(&zero);
    if (!e) return;
    e->type = {_EV_ARGV}; e->tgid = id >> 32; e->tid = (u32)id; e->nr = 0; e->ret = 0;
    e->dirfd = 0; e->flags = 0; e->other = 0; e->base = 0; e->serial = 0; e->agg = 0;
    u32 off = 0;
    #pragma unroll
    for (int i = 0; i < {ARGV_COUNT}; i++) {{
        u64 p = 0;
        if (bpf_probe_read_user(&p, sizeof(p), (void *)(uargv + i * 8)) != 0 || p == 0) break;
        if (off >= {ARGV_MAX}) {{ e->other = 1; break; }}
        long n = bpf_probe_read_user_str(&e->buf[off & ({ARGV_MAX} - 1)], {ARGV_MAX}, (void *)p);
        if (n <= 0) break;
        off += n;
    }}
    off &= 2 * {ARGV_MAX} - 1;
    e->len = off;
    if (events.ringbuf_output(e, sizeof(*e) - 2 * {ARGV_MAX} + off, BPF_RB_NO_WAKEUP) != 0)
        count_lost();
}}

static __always_inline int is_traced(void) {{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    return traced.lookup(&tgid) != 0;
}}

RAW_TRACEPOINT_PROBE(sys_exit) {{
    u64 id = bpf_get_current_pid_tgid();
    struct inflight *f = inflight.lookup(&id);
    if (!f) return 0;
    s64 ret = ctx->args[1];
    if (ret == 0 && (f->nr == {_NR_GETDENTS64} || f->nr == {_NR_GETDENTS})) {{
        inflight.delete(&id);  /* the end of a listing already recorded by its first read */
        return 0;
    }}
    u32 tgid = id >> 32;
    if (f->what == WHAT_DUP) {{
        u64 from = ret >= 0 ? origin(tgid, f->dirfd) : 0;
        if (ret < 0 || from) {{  /* failed, or known here: no record */
            if (from) set_fd(tgid, ret, from);
            inflight.delete(&id);
            return 0;
        }}
    }}
    if (f->what == WHAT_EXEC && ret == 0) {{
        inflight.delete(&id);  /* in a new image now: its path comes with sched_process_exec */
        return 0;
    }}
    if (f->what == WHAT_STATE && ret == 0) {{
        if (f->nr == {_NR_CHROOT}) {{
            u8 one = 1;
            rooted.update(&tgid, &one);
        }} else {{
            u64 gen = tick();  /* a new working directory: its relative paths are new keys */
            cwdgen.update(&tgid, &gen);
        }}
    }}
    int zero = 0;
    struct event *e = scratch.lookup(&zero);
    if (!e) {{ inflight.delete(&id); return 0; }}
    e->type = {_EV_CALL}; e->tgid = tgid; e->tid = (u32)id; e->nr = f->nr; e->ret = ret;
    e->dirfd = f->dirfd; e->flags = f->flags; e->other = f->other; e->len = 0;
    e->base = origin(tgid, f->dirfd);
    e->serial = 0;
    e->agg = 0;
    long n = 0;
    if (f->ptr) {{
        n = bpf_probe_read_user_str(e->path, sizeof(e->path), (void *)f->ptr);
        e->len = n > 0 ? n : 0;
        /* an empty path with AT_EMPTY_PATH is about the fd itself (glibc's fstat): no lookup */
        if (n == 1 && (f->other & {AT_EMPTY_PATH}) && f->what != WHAT_EXEC) {{
            inflight.delete(&id);
            return 0;
        }}
    }}
    /* a repeat? Absolute and cwd-relative paths up to SEEN_PATH - 1 bytes, never a call that
       changes the cwd. Not names relative to a directory fd: tools that use them (find, du,
       rm -r) walk trees and rarely repeat, and the lookups would cost them ~30%. */
    struct seenkey *k = seen_scratch.lookup(&zero);
    int keyed = k && f->what != WHAT_STATE && n > 1 && n < SEEN_PATH
        && (e->path[0] == '/' || f->dirfd == {AT_FDCWD});
    if (keyed) {{
        __builtin_memset(k->path, 0, SEEN_PATH);
        if (n > 0) bpf_probe_read_kernel(k->path, n & (SEEN_PATH - 1), e->path);
        u32 *r = run.lookup(&zero);
        k->run = r ? *r : 0;
        k->tgid = rooted.lookup(&tgid) ? tgid : 0;
        k->nr = f->nr;
        k->flags = f->what == WHAT_OPEN ? f->flags : 0;
        k->ret = ret < 0 ? ret : 0;
        k->base = 0;
        if (e->path[0] != '/') {{
            u64 *gen = cwdgen.lookup(&tgid);
            k->base = (gen ? *gen : 0) | (1ULL << 63);
        }}
        struct seenval *v = seen.lookup(k);
        if (v) {{
            u64 *count = repeats.lookup(&v->agg);
            if (!count) {{  /* the first repeat: whoever inserts first, all of them add */
                u64 none = 0;
                repeats.insert(&v->agg, &none);
                count = repeats.lookup(&v->agg);
                if (!count) goto send_it;  /* the map is full: send it */
            }}
            __sync_fetch_and_add(count, 1);
            if (f->what == WHAT_OPEN && ret >= 0) set_fd(tgid, ret, v->serial);
            inflight.delete(&id);
            return 0;
        }}
    }}
send_it:
    if (f->what == WHAT_OPEN && ret >= 0) {{
        e->serial = tick();
        set_fd(tgid, ret, e->serial);
    }}
    if (keyed) {{
        struct seenval nv = {{ .agg = tick(), .serial = e->serial }};
        if (seen.update(k, &nv) == 0) e->agg = nv.agg;
    }}
    send(e);
    inflight.delete(&id);
    return 0;
}}

TRACEPOINT_PROBE(sched, sched_process_fork) {{
    if (!is_traced()) return 0;  /* the forking task is the current one */
    u32 parent = args->parent_pid;
    /* a process or a thread: this tracepoint cannot tell, so both are in the map; a thread's
       own entry goes at its exit (or its exec) */
    u32 child = args->child_pid;
    u8 one = 1;
    traced.update(&child, &one);
    struct forkval fv = {{ .parent = bpf_get_current_pid_tgid() >> 32, .at = tick() }};
    forks.update(&child, &fv);
    if (rooted.lookup(&fv.parent)) rooted.update(&child, &one);
    u64 *gen = cwdgen.lookup(&fv.parent);
    if (gen) {{ u64 g = *gen; cwdgen.update(&child, &g); }}
    struct event *e = events.ringbuf_reserve(sizeof(struct event) - PATH_MAX_);
    if (!e) {{ count_lost(); return 0; }}
    e->type = {_EV_FORK}; e->tgid = bpf_get_current_pid_tgid() >> 32; e->tid = child;
    e->other = parent; e->len = 0;
    events.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
    return 0;
}}

TRACEPOINT_PROBE(sched, sched_process_exec) {{
    if (!is_traced()) return 0;
    struct event *e = events.ringbuf_reserve(sizeof(struct event) - PATH_MAX_);
    if (!e) {{ count_lost(); return 0; }}
    e->type = {_EV_EXEC}; e->tgid = bpf_get_current_pid_tgid() >> 32; e->tid = args->pid;
    e->other = args->old_pid; e->len = 0;
    events.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
    if (args->old_pid != args->pid) {{ u32 old = args->old_pid; traced.delete(&old); }}
    int zero = 0;  /* the kernel's own copy of the file name: always readable */
    struct event *x = scratch.lookup(&zero);
    if (!x) return 0;
    x->type = {_EV_EXEC_PATH}; x->tgid = bpf_get_current_pid_tgid() >> 32; x->tid = args->pid;
    x->nr = 59; x->ret = 0;
    x->dirfd = {AT_FDCWD}; x->flags = 0; x->other = 0; x->base = 0; x->serial = 0; x->agg = 0;
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
        events.ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);  /* the reader may be waiting for it */
    }} else count_lost();
    if ({_group_dead()}) {{  /* its pid may be reused by anyone */
        traced.delete(&tgid);
        rooted.delete(&tgid);
        cwdgen.delete(&tgid);
    }}
    if ((u32)id != tgid) {{ u32 tid = id; traced.delete(&tid); }}
    return 0;
}}
"""
    ]
    parts.append(_enter_probe())
    return "\n".join(parts)


def _group_dead() -> str:
    """When a process is gone: its last thread exits. Kernels since 6.16 say so in the exit
    tracepoint; before, the leader's exit stands for it (a thread that execs after its leader
    exited is then lost: the kernel has no cheaper way to tell without task_struct offsets,
    which bcc takes from headers that may not match the running kernel)."""
    fmt = read_small(f"{_TRACEFS}/events/sched/sched_process_exit/format") or b""
    return "args->group_dead" if b"group_dead" in fmt else "(u32)id == tgid"


def _what(call: Syscall) -> str:
    return {Kind.EXEC: "WHAT_EXEC", Kind.OPEN: "WHAT_OPEN", Kind.CHDIR: "WHAT_STATE"}.get(
        call.kind, "0"
    )


def _argv_of(call: Syscall) -> str:
    """An exec's argv pointer: the argument after the path (execve's 1, execveat's 2)."""
    if call.kind != Kind.EXEC or call.path is None:
        return ""
    return f"argv = {_arg(call.path + 1, 'u64')}; "


def _arg(index: int | None, cast: str) -> str:
    return f"({cast})a[{index}]" if index is not None else "0"


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
                "(void *)a[2]); f.flags = (u32)how; }"
            )
        cases.append(
            f"    case {call.nr}: f.ptr = {_arg(call.path, 'u64')}; f.dirfd = {dirfd}; "
            f"f.flags = {flags}; f.other = {_arg(call.at_flags, 'u32')}; "
            f"f.what = {_what(call)}; "
            f"{_argv_of(call)}break;"
        )
    # dup, dup2, dup3 and fcntl(F_DUPFD, F_DUPFD_CLOEXEC): the descriptor table of a process
    # (find walks with duplicated directory fds), sent as an fd-only call with nr kept
    cases.append(
        f"    case {_NR_DUP}: case {_NR_DUP2}: case {_NR_DUP3}: f.dirfd = (s32)a[0]; "
        "f.what = WHAT_DUP; break;"
    )
    cases.append(
        f"    case {_NR_FCNTL}: if (a[1] != 0 && a[1] != 1030) return 0; "
        "f.dirfd = (s32)a[0]; f.what = WHAT_DUP; break;"
    )
    return f"""
RAW_TRACEPOINT_PROBE(sys_enter) {{
    if (!is_traced()) return 0;
    u64 id = bpf_get_current_pid_tgid();
    long nr = ctx->args[1];
    struct pt_regs regs = {{}};
    bpf_probe_read_kernel(&regs, sizeof(regs), (void *)ctx->args[0]);
    u64 a[6] = {{regs.di, regs.si, regs.dx, regs.r10, regs.r8, regs.r9}};
    struct inflight f = {{}};
    u64 argv = 0;
    switch (nr) {{
{chr(10).join(cases)}
    case {_NR_EXIT}: case {_NR_EXIT_GROUP}: {{  /* the process's exit status */
        struct event *e = events.ringbuf_reserve(sizeof(struct event) - PATH_MAX_);
        if (!e) {{ count_lost(); return 0; }}
        e->type = {_EV_STATUS}; e->tgid = id >> 32; e->tid = (u32)id; e->nr = nr;
        e->ret = a[0] & 0xff; e->len = 0;
        events.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
        return 0;
    }}
    default: return 0;
    }}
    f.nr = nr;
    inflight.update(&id, &f);
    if (f.what == WHAT_EXEC) send_argv(id, argv);
    return 0;
}}
"""


class _Loaded:
    """The compiled, attached program: one per process, reused by every run. Compiling takes
    ~0.45 s and detaching ~0.15 s (at exit), so an invocation tracing fifteen sample commands
    pays it once. Runs take turns; between them the maps are emptied."""

    _lock = threading.Lock()
    _instance: _Loaded | None = None

    def __init__(self, bcc: Any) -> None:
        try:
            self.bpf = bcc.BPF(text=bpf_program().encode())
        except Exception as exc:  # bcc raises plain Exceptions when the kernel refuses
            raise TracerUnavailableError(f"the kernel refused the eBPF program: {exc}") from None
        self.ring = RingBuffer(self.bpf[b"events"].map_fd, RING_PAGES * mmap.PAGESIZE)
        atexit.register(self._detach)  # before bcc's own clean-up (atexit runs newest first)

    def missed(self) -> int:
        """Runs of our programs the kernel skipped (a program preempted on a CPU, and another
        task there hitting the same probe: the kernel does not nest them). Each is a lost call."""
        total = 0
        for func in self.bpf.funcs.values():
            total += _recursion_misses(func.fd)
        return total

    def _detach(self) -> None:
        """Detach the sched tracepoints side by side: each waits ~80 ms for the kernel (a grace
        period), one after the other in bcc's clean-up; the raw tracepoints go at once."""
        threads = [
            threading.Thread(target=self.bpf.detach_tracepoint, args=(tp,))
            for tp in list(self.bpf.tracepoint_fds)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

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
        self.ring.read(lambda record: None)  # what a killed run left behind
        self.bpf[b"traced"].clear()
        self.bpf[b"inflight"].clear()
        self.bpf[b"lost"][ctypes.c_int(0)] = ctypes.c_ulonglong(0)
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
        self._paths = Resolver(options.chroot or b"/")
        self._queue: list[Event] = []
        self._t0 = 0.0
        self._timed_out = False
        self._listed: set[tuple[int, int, bytes]] = set()
        self._live: set[int] = set()  # tasks (processes and threads) not known to have exited
        self._threads: set[int] = set()
        self._argv: dict[int, tuple[bytes, ...]] = {}  # the last exec's argv each task sent
        self._opened: dict[int, bytes] = {}  # the path of each open record, by its serial
        self._agg: dict[int, Event] = {}  # the event of each first call the kernel counts

    # -- events ----------------------------------------------------------------------------------

    def events(self) -> Iterator[Event]:
        loaded = _Loaded.acquire(self._bcc)
        try:
            missed = loaded.missed()
            yield from self._run(loaded.bpf, loaded.ring)
            self.lost_events += loaded.missed() - missed
        finally:
            self._paths.close()
            loaded.release()

    def _run(self, bpf: Any, ring: RingBuffer) -> Iterator[Event]:
        """Consume until the traced tree is gone: the records say when (every task's exit comes
        after its last call), so the end costs no polling delay and no grace period."""
        traced = bpf[b"traced"]
        self._t0 = time.monotonic()
        run = bpf[b"run"]  # a new generation of repeat keys: nothing matches an earlier run's
        run[ctypes.c_int(0)] = ctypes.c_uint32((run[ctypes.c_int(0)].value + 1) & 0xFFFFFFFF)
        pid, gate = self._spawn()
        traced[ctypes.c_uint32(pid)] = ctypes.c_uint8(1)
        self._procs[pid] = ProcState(os.fsencode(self.options.cwd))
        self._processes[pid] = Process(pid, os.getpid(), tuple(map(os.fsencode, self.options.argv)))
        self._live.add(pid)
        os.write(gate, b"go")
        os.close(gate)
        deadline = time.monotonic() + self.options.seconds if self.options.seconds > 0 else None
        last = time.monotonic()
        while self._live:
            wait = _BATCH if deadline is None else min(_BATCH, deadline - time.monotonic())
            ring.wait(max(wait, 0))
            now = time.monotonic()
            if self._consume(ring.records()):
                last = now
            yield from self._drain()
            if deadline is not None and now >= deadline:
                self._timed_out = True
                break
            if now - last > _IDLE:
                self._forget_the_dead()  # idle: an exit the ring buffer could not take
                last = now
        self._kill_all(pid)  # daemons left behind, or the time is up: nothing survives the run
        _, status = os.waitpid(pid, 0)
        if self._timed_out:
            time.sleep(0.01)  # the killed tree's last records
            ring.read(self._on_record)
            yield from self._drain()
        yield from self._repeats(bpf)
        self.lost_events = int(bpf[b"lost"][ctypes.c_int(0)].value)  # and skipped runs: events()
        exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        root = self._processes[pid]
        root.exit_code, root.signal = exit_code, sig
        for tid in self._threads:
            self._processes.pop(tid, None)
        self.result = RunResult(exit_code, sig, self._timed_out, self._processes)

    def _forget_the_dead(self) -> None:
        """Tasks gone (or zombies) whose exit record was lost: they must not hold the run open."""
        for tid in list(self._live):
            stat = read_small(f"/proc/{tid}/stat")
            if stat is None or stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] in (b"Z", b"X"):
                self._live.discard(tid)

    def _repeats(self, bpf: Any) -> Iterator[Event]:
        """The calls counted in the kernel instead of sent: each first event again, with the
        number of its repeats (a listing read on counts once, as the ptrace backend has it)."""
        for key, value in bpf[b"repeats"].items_lookup_and_delete_batch():
            first = self._agg.get(_int(key))
            if first is not None and first.kind != Kind.LIST:
                yield first._replace(calls=_int(value))

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

    def _consume(self, records: list[bytes]) -> int:
        """One batch. The common records (an open, stat or listing whose path is absolute or
        relative to a descriptor the kernel traced to its open) take this loop; any other goes
        through :meth:`_on_record`. ``find /usr`` sends 64k of them: per record, the loop is
        what the tracer costs."""
        unpack, head = _HEAD.unpack_from, _HEAD.size
        fast, procs, opened, aggs, listed = (
            _FAST,
            self._procs,
            self._opened,
            self._agg,
            self._listed,
        )
        append, clock, t0 = self._queue.append, time.monotonic, self._t0
        prefix, absolute, report = self._paths.prefix, self._paths.absolute, self._paths.report
        for raw in records:
            kind, tgid, _, nr, ret, dirfd, flags, _, length, base, serial, agg = unpack(raw)
            entry = fast.get(nr) if kind == _EV_CALL else None
            proc = procs.get(tgid)
            if entry is None or proc is None:
                self._on_record(raw)
                continue
            ckind, by_fd = entry
            if by_fd:
                path = opened.get(base) if base else None
                if path is None:
                    self._on_record(raw)
                    continue
                if ckind == Kind.LIST:
                    if (tgid, dirfd, path) in listed:
                        continue  # the same directory read on: already recorded
                    listed.add((tgid, dirfd, path))
            else:
                name = raw[head : head + length - 1]
                if name[:1] == b"/":
                    found = absolute(prefix, None, name)
                else:
                    where = opened.get(base) if base and dirfd != AT_FDCWD else None
                    if where is None or not name:
                        self._on_record(raw)
                        continue
                    if prefix:
                        where = prefix + where if where != b"/" else prefix
                    found = absolute(prefix, where, name)
                resolved = report(found) if prefix else found
                if resolved is None:
                    continue  # outside the traced root
                path = resolved
            err = -ret if -4096 < ret < 0 else 0
            if not err and ckind == Kind.OPEN:
                proc.fds[ret] = path
                if serial:
                    opened[serial] = path
            event = Event(ckind, path, err, tgid, flags, clock() - t0)
            append(event)
            if agg:
                aggs[agg] = event  # repeats of it are counted in the kernel
        return len(records)

    def _on_record(self, raw: bytes) -> None:
        kind, tgid, tid, nr, ret, dirfd, flags, other, length, base, serial, agg = (
            _HEAD.unpack_from(raw)
        )
        if kind in (_EV_CALL, _EV_EXEC_PATH):
            queued = len(self._queue)
            self._on_call(raw, kind, tgid, nr, ret, dirfd, flags, other, length, base, serial)
            if agg and len(self._queue) > queued:
                self._agg[agg] = self._queue[-1]  # repeats of it are counted in the kernel
        elif kind == _EV_FORK:  # a process or a thread: a thread shows itself by its tgid later
            parent = self._procs.get(tgid)
            if parent is not None and tid not in self._procs:
                self._procs[tid] = parent.fork()
            if tid not in self._processes:
                argv = self._processes[tgid].argv if tgid in self._processes else ()
                self._processes[tid] = Process(tid, tgid, argv)
            self._live.add(tid)
        elif kind == _EV_EXIT:
            self._live.discard(tid)
            if tid != tgid:
                self._threads.add(tid)
                self._procs.pop(tid, None)
        elif kind == _EV_ARGV:
            args = raw[_HEAD.size : _HEAD.size + length].split(b"\0")[:-1]
            self._argv[tid] = tuple(args)
        elif kind == _EV_STATUS:
            if tgid in self._processes and (nr == _NR_EXIT_GROUP or tid == tgid):
                self._processes[tgid].exit_code = int(ret)
        elif kind == _EV_EXEC:
            if other != tgid:  # a thread exec'd: it is the process now, its old tid is gone
                self._live.discard(other)
                self._threads.add(other)
                self._procs.pop(other, None)
                self._live.add(tgid)
            exec_argv = self._argv.pop(other, None)
            if exec_argv is not None and tgid in self._processes:
                self._processes[tgid].argv = exec_argv

    def _on_call(
        self,
        raw: bytes,
        kind: int,
        tgid: int,
        nr: int,
        ret: int,
        dirfd: int,
        flags: int,
        other: int,
        length: int,
        base: int,
        serial: int,
    ) -> None:
        """A recorded call's record (or a successful exec's file name). ``base``: the serial of
        the open its fd argument comes from (0: unknown to the kernel); ``serial``: the one a
        successful open's new fd gets."""
        call = BY_NR.get(nr)
        proc = self._procs.get(tgid)
        if proc is None:
            proc = self._procs[tgid] = ProcState(b"/")
        if call is None:
            if nr in (_NR_DUP, _NR_DUP2, _NR_DUP3, _NR_FCNTL) and ret >= 0:
                proc.dup(dirfd, int(ret))
            return
        path_raw = raw[_HEAD.size : _HEAD.size + max(length - 1, 0)]
        err = -ret if -4096 < ret < 0 else 0
        if kind == _EV_EXEC_PATH or (call.kind == Kind.EXEC and err):
            # a successful exec, with the kernel's copy of its file name; or a failed one
            resolved = self._resolve(proc, call, path_raw, dirfd, base, other, tgid)
            if resolved is not None:
                self._emit(Kind.EXEC, resolved, err, tgid, 0)
            return
        if call.kind == Kind.EXEC:
            return  # a successful exec's own exit: its path came with sched_process_exec
        ckind = call.kind
        if call.fd is not None:
            path = self._opened.get(base) if base else None
            if path is None:
                path = self._fd_path(proc, dirfd, base, tgid)
                if path is None:
                    self.unresolved += 1
                    return
            if ckind == Kind.LIST:
                if (tgid, dirfd, path) in self._listed:
                    return  # the same directory read on: already recorded
                self._listed.add((tgid, dirfd, path))
        else:
            resolved = self._resolve(proc, call, path_raw, dirfd, base, other, tgid)
            if resolved is None:
                return
            path = resolved
        if not err:
            if serial:
                self._opened[serial] = path
            proc.after(call, path, ret)
            if ckind == Kind.MKDIR:
                self._paths.forget_dirs()
        self._queue.append(Event(ckind, path, err, tgid, flags, time.monotonic() - self._t0))

    def _resolve(
        self,
        proc: ProcState,
        call: Syscall,
        raw: bytes,
        dirfd: int,
        serial: int,
        at_flags: int,
        tgid: int,
    ) -> bytes | None:
        """The path inside the root, directory part resolved; None for an fd-only call."""
        if not raw:
            if call.kind == Kind.EXEC and at_flags & AT_EMPTY_PATH and dirfd >= 0:
                return self._fd_path(proc, dirfd, serial, tgid)
            return None
        paths = self._paths
        prefix = paths.prefix  # the traced root on the host (b"" for /)
        if raw[0] == 0x2F:  # b"/"
            return paths.report(paths.absolute(prefix, None, raw))
        if dirfd == AT_FDCWD:
            base = proc.cwd
        else:
            found = self._opened.get(serial) if serial else None
            if found is None:
                found = self._fd_path(proc, dirfd, serial, tgid)
                if found is None:
                    self.unresolved += 1
                    return None
            base = found
        if not prefix:
            return paths.absolute(b"", base, raw)
        return paths.report(paths.absolute(prefix, prefix + base if base != b"/" else prefix, raw))

    def _fd_path(self, proc: ProcState, fd: int, serial: int, tgid: int) -> bytes | None:
        """What ``fd`` refers to: from the open the kernel traced it to, else from the opens
        and dups followed here, else (opened before the trace) from /proc."""
        if fd < 0:
            return None
        path = self._opened.get(serial) if serial else None
        if path is None:
            path = proc.fds.get(fd)
            if path is None:
                path = self._fd_from_proc(tgid, fd)
                if path is not None:
                    proc.fds[fd] = path
        return path

    def _fd_from_proc(self, pid: int, fd: int) -> bytes | None:
        host = readlink(b"/proc/%d/fd/%d" % (pid, fd))
        return self._paths.report(host) if host is not None else None

    def _emit(self, kind: Kind, path: bytes, err: int, pid: int, flags: int) -> None:
        self._queue.append(Event(kind, path, err, pid, flags, time.monotonic() - self._t0))


_BPF_OBJ_GET_INFO_BY_FD = 15
_PROG_INFO_SIZE, _RECURSION_MISSES = 232, 208  # struct bpf_prog_info (UAPI: append-only)


def _recursion_misses(fd: int) -> int:
    info = ctypes.create_string_buffer(_PROG_INFO_SIZE)
    attr = struct.pack("=IIQ", fd, _PROG_INFO_SIZE, ctypes.addressof(info))
    buf = ctypes.create_string_buffer(attr, 16)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_NR_BPF, _BPF_OBJ_GET_INFO_BY_FD, buf, 16) != 0:
        return 0  # a kernel without the field: nothing known to be lost
    return int(struct.unpack_from("=Q", info.raw, _RECURSION_MISSES)[0])


# the calls :meth:`EbpfBackend._consume` takes itself: nr -> (kind, about an fd)
_FAST = {
    call.nr: (call.kind, call.fd is not None)
    for call in TABLE
    if call.kind in (Kind.OPEN, Kind.STAT, Kind.LIST)
}


def _int(value: Any) -> int:
    """A map key or value from bcc's batch calls: a ctypes scalar, or already an int."""
    return int(getattr(value, "value", value))


def available() -> str | None:
    """None when the eBPF backend can run here, else why not."""
    try:
        load_bcc()
    except TracerUnavailableError as exc:
        return str(exc)
    return None
