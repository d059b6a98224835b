"""The eBPF program the backend loads: C for bcc, generated from the syscall table.

Probes: ``sys_exit`` for the recorded calls (one switch on the syscall number; a BTF-typed raw
tracepoint where the kernel takes one, else a plain one, with a plain ``sys_enter`` only without
BTF), ``sched_process_fork``/``exec``/``exit`` for the traced process tree. The
records it sends start with :data:`HEAD`; :mod:`tracer.ebpf_backend` reads them. What is
aggregated here and why is said next to each map.
"""

from __future__ import annotations

import struct

from . import btf
from .events import Kind
from .paths import read_small
from .syscalls import AT_EMPTY_PATH, AT_FDCWD, TABLE, Syscall

PATH_MAX = 4096
RING_PAGES = 8192  # 32 MiB of ring buffer: ~300k records before one is lost
NR_DUP, NR_DUP2, NR_DUP3, NR_FCNTL = 32, 33, 292, 72
NR_GETDENTS64, NR_GETDENTS = 217, 78
TRACEFS = "/sys/kernel/tracing"
EV_CALL, EV_EXEC_PATH, EV_FORK, EV_EXEC, EV_EXIT, EV_STATUS, EV_ARGV = range(7)
ARGV_MAX, ARGV_COUNT = 4096, 64  # what the kernel copies of an exec's argv (bytes, strings)
NR_EXIT, NR_EXIT_GROUP, NR_CHROOT, NR_BPF = 60, 231, 161, 321
PID_WORDS = 65536  # 64-bit words for every pid up to PID_MAX_LIMIT (4M, whatever pid_max is)
FDTAB = 1024  # descriptors followed in the kernel per process (the usual RLIMIT_NOFILE)
PROCS = 16384  # traced processes alive at once with a table (more: their records say less)
NR_IA32_EXECVE = 11  # what a successful exec into a 32-bit image returns from (munmap in 64-bit)
DIRECT_PROBE = "minicon_sys_exit"  # the BTF-typed syscall probe's function (see bpf_program)
# type, tgid, tid, nr, ret, dirfd, flags, other, len, base, serial, agg, then (calls only) the
# repeats of an earlier call counted in a struct last: its agg and how many
HEAD = struct.Struct("=IIIIqiIIIQQQQQ")


def bpf_program(use_btf: bool = True, direct: bool | None = None) -> str:
    """The C source bcc compiles: probes for every syscall of the table, and the sched ones.

    A process's exit status is read from its ``task_struct`` when it exits, at the offset the
    kernel's BTF gives (``use_btf``); without BTF, from its exit or exit_group call at entry,
    which costs every syscall on the machine a second probe (find /usr: ~4%).

    ``direct`` (the default with BTF): the syscall probe is the BTF-typed function
    :data:`DIRECT_PROBE`, which reads ``pt_regs`` and ``task_struct`` with plain loads and
    which :mod:`tracer.bpfsys` loads; else a plain raw tracepoint that reads them with
    ``bpf_probe_read_kernel`` (~38 ns a field, on every syscall of the machine)."""
    types = _kernel_types() if use_btf else None
    exit_code_at = exit_code_offset(types)
    compat_at = compat_status_offset(types)
    if direct is None:
        direct = types is not None
    parts = [
        f"""
#include <uapi/linux/ptrace.h>
#define PATH_MAX_ {PATH_MAX}
#define WHAT_EXEC 1
#define WHAT_OPEN 2
#define WHAT_DUP 3
#define WHAT_STATE 4  /* chdir, fchdir, chroot: what later paths resolve against */
/* a recorded call's arguments, read at its exit from the registers it was made with (x86-64
   leaves them in pt_regs; only the return value changes): no map between entry and exit */
struct call {{ u64 ptr; s32 dirfd; u32 flags; u32 nr; u32 other; u32 what; u64 sp; }};
#define USER_CS 0x33  /* the code segments of 64-bit and of 32-bit user code */
#define USER32_CS 0x23
#define TS_COMPAT 0x0002  /* thread_info.status: the current syscall is a 32-bit one */
/* base: the open record the call's fd comes from; serial: the one an open's new fd gets */
struct event {{
    u32 type; u32 tgid; u32 tid; u32 nr; s64 ret; s32 dirfd; u32 flags; u32 other; u32 len;
    u64 base; u64 serial; u64 agg; u64 flush_agg; u64 flush_count;
    char path[PATH_MAX_];
}};
/* The traced tree: a bit per pid (tgids and tids), so that every other process on the machine
   pays an array lookup, which the verifier inlines, not a hash lookup: find /usr, untraced
   while a trace ran, took 1.06-1.11x its time instead of 1.11-1.19x */
BPF_ARRAY(traced, u64, {PID_WORDS});
static __always_inline u64 *traced_word(u32 pid) {{
    u32 w = pid >> 6;
    return traced.lookup(&w);
}}
static __always_inline int pid_traced(u32 pid) {{
    u64 *word = traced_word(pid);
    return word && ((*word >> (pid & 63)) & 1);
}}
static __always_inline void set_traced(u32 pid) {{
    u64 *word = traced_word(pid);
    if (word) __sync_fetch_and_or(word, 1ULL << (pid & 63));
}}
static __always_inline void clear_traced(u32 pid) {{
    u64 *word = traced_word(pid);
    if (word) __sync_fetch_and_and(word, ~(1ULL << (pid & 63)));
}}
BPF_ARRAY(lost, u64, 1);
static __always_inline void count_lost(void) {{
    int zero = 0;
    u64 *n = lost.lookup(&zero);
    if (n) __sync_fetch_and_add(n, 1);
}}

/* Each traced process's state, copied to a child when it forks (the kernel has just copied the
   descriptor table too), so that nothing needs a walk up the tree:
   fd[n]: the serial of the open record descriptor n comes from (0: unknown here), so that a
   dup costs no record (find duplicates every directory it opens: 43% of its records were
   dups) and a dirfd-relative call names its directory by that serial;
   cwdgen: which working directory it has (a tick at each chdir), for the repeat keys of its
   relative paths; rooted: it chrooted (its absolute paths are other files).
   A table is 8 KB, allocated at fork (no preallocation) and freed at exit. */
struct proc {{ u64 cwdgen; u64 rooted; u64 fd[{FDTAB}]; }};
BPF_F_TABLE("hash", u32, struct proc, procs, {PROCS}, BPF_F_NO_PREALLOC);
BPF_ARRAY(clock, u64, 1);
static __always_inline u64 tick(void) {{
    int zero = 0;
    u64 *c = clock.lookup(&zero);
    return c ? __sync_fetch_and_add(c, 1) + 1 : 0;
}}
/* a descriptor's slot: unsigned (a negative fd is out of range too), and masked after an
   empty asm so that the compiler keeps the mask the verifier needs to see */
static __always_inline u32 slot(u64 fd) {{
    asm volatile("" : "+r"(fd));
    return fd & ({FDTAB} - 1);
}}
static __always_inline u64 origin(struct proc *p, s32 fd) {{
    u32 i = (u32)fd;
    return p && i < {FDTAB} ? p->fd[slot(i)] : 0;
}}
static __always_inline int set_fd(struct proc *p, s64 fd, u64 serial) {{  /* 0: no room */
    if (!p || (u64)fd >= {FDTAB}) return 0;
    p->fd[slot(fd)] = serial;
    return 1;
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
/* Most repeats come right away (find stats each directory twice, around its open; a loop
   stats one path again and again), so the last path call of each of four kinds (nr % 4) on
   each CPU is kept, with the task that made it, and looked at before the map (whose key costs
   a copy and a hash; names relative to a directory fd get no key there at all: ~30% more time
   for tree walks, for keys that rarely repeat): a call the same as the one kept is a repeat of
   it, counted there. The count goes out with the record that takes the place (flush_agg,
   flush_count); the reader collects what is left in the places when the run ends. */
#define LAST_PATH 64
#define LAST_WORDS (LAST_PATH / 8)
struct last {{
    u32 run; u32 tid; u32 nr; u32 flags; s64 ret; u64 base; u64 agg; u64 serial; u64 count;
    u64 path[LAST_WORDS];
}};
BPF_PERCPU_ARRAY(lasts, struct last, 4);
static __always_inline int same_last(struct last *l, struct event *e, u32 run, u32 flags,
                                     u64 base) {{
    if (l->run != run || l->tid != e->tid || l->nr != e->nr || l->flags != flags
        || l->ret != (e->ret < 0 ? e->ret : 0) || l->base != base)
        return 0;
    u64 *words = (u64 *)e->path;
    #pragma unroll
    for (int i = 0; i < LAST_WORDS; i++)
        if (l->path[i] != words[i]) return 0;
    return 1;
}}
static __always_inline int count_repeat(u64 agg, u64 times) {{  /* 0: the map is full */
    u64 *count = repeats.lookup(&agg);
    if (!count) {{  /* the first repeat: whoever inserts first, all of them add */
        u64 none = 0;
        repeats.insert(&agg, &none);
        count = repeats.lookup(&agg);
        if (!count) return 0;
    }}
    __sync_fetch_and_add(count, times);
    return 1;
}}
/* e's call takes the place (the caller has seen to the count of the one there) */
static __always_inline void keep_last(struct last *l, struct event *e, u32 run, u32 flags,
                                      u64 base) {{
    l->count = 0;
    l->run = run; l->tid = e->tid; l->nr = e->nr; l->flags = flags;
    l->ret = e->ret < 0 ? e->ret : 0; l->base = base; l->agg = e->agg;
    l->serial = e->serial;
    u64 *words = (u64 *)e->path;
    #pragma unroll
    for (int i = 0; i < LAST_WORDS; i++) l->path[i] = words[i];
}}
BPF_RINGBUF_OUTPUT(events, {RING_PAGES});
/* A reservation can fail for a moment with room to spare (EAGAIN): on a 6.18 kernel about one
   record in 30,000 did, while the next try, or at most some twenty, succeeded within a few
   microseconds. Each record gets TRIES before it counts as lost (a full buffer then costs a few
   microseconds per record it loses). */
#define TRIES 64
static __always_inline int output(void *p, u32 size) {{
    for (int i = 0; i < TRIES; i++)
        if (events.ringbuf_output(p, size, BPF_RB_NO_WAKEUP) == 0) return 1;
    return 0;
}}
static __always_inline struct event *reserve_head(void) {{  /* a record with no path */
    for (int i = 0; i < TRIES; i++) {{
        struct event *e = events.ringbuf_reserve(sizeof(struct event) - PATH_MAX_);
        if (e) return e;
    }}
    return 0;
}}
BPF_PERCPU_ARRAY(scratch, struct event, 1);  /* built here, sent with only its path's length */

static __always_inline void send(struct event *e) {{
    /* a mask the verifier can follow (a 4095-byte path loses its tail: counted as lost) */
    u32 len = e->len & (PATH_MAX_ - 1);
    if (len != e->len) count_lost();
    if (!output(e, sizeof(struct event) - PATH_MAX_ + len)) count_lost();
}}

/* a successful exec's argv, read at its exit from the new image's stack (the kernel's argv:
   a script's interpreter first, as ptrace shows it) */
struct argv_event {{
    u32 type; u32 tgid; u32 tid; u32 nr; s64 ret; s32 dirfd; u32 flags; u32 other; u32 len;
    u64 base; u64 serial; u64 agg; u64 flush_agg; u64 flush_count;
    char buf[2 * {ARGV_MAX}];
}};
BPF_PERCPU_ARRAY(argv_scratch, struct argv_event, 1);
static __always_inline void send_argv(u64 id, u64 uargv, u32 step) {{  /* step: pointer size */
    int zero = 0;
    struct argv_event *e = argv_scratch.lookup(&zero);
    if (!e) return;
    e->type = {EV_ARGV}; e->tgid = id >> 32; e->tid = (u32)id; e->nr = 0; e->ret = 0;
    e->dirfd = 0; e->flags = 0; e->other = 0; e->base = 0; e->serial = 0; e->agg = 0;
    e->flush_agg = 0; e->flush_count = 0;
    u32 off = 0;
    #pragma unroll
    for (int i = 0; i < {ARGV_COUNT}; i++) {{
        u64 p = 0;
        if (bpf_probe_read_user(&p, sizeof(p), (void *)(uargv + i * step)) != 0) break;
        if (step == 4) p &= 0xffffffff;
        if (p == 0) break;
        if (off >= {ARGV_MAX}) {{ e->other = 1; break; }}
        long n = bpf_probe_read_user_str(&e->buf[off & ({ARGV_MAX} - 1)], {ARGV_MAX}, (void *)p);
        if (n <= 0) break;
        off += n;
    }}
    off &= 2 * {ARGV_MAX} - 1;
    e->len = off;
    if (!output(e, sizeof(*e) - 2 * {ARGV_MAX} + off)) count_lost();
}}

static __always_inline int is_traced(void) {{
    return pid_traced(bpf_get_current_pid_tgid() >> 32);
}}

static __always_inline int on_exit(struct call *f, s64 ret) {{
    u64 id = bpf_get_current_pid_tgid();
    if (ret == 0 && (f->nr == {NR_GETDENTS64} || f->nr == {NR_GETDENTS}))
        return 0;  /* the end of a listing already recorded by its first read */
    u32 tgid = id >> 32;
    struct proc *p = procs.lookup(&tgid);  /* none: its table could not be made (counted) */
    u64 from = 0;
    if (f->what == WHAT_DUP) {{
        if (ret < 0) return 0;
        from = origin(p, f->dirfd);
        if (set_fd(p, ret, from) && from) return 0;  /* known here: no record */
        /* else sent, with the origin when known (the new fd is out of the table's range) */
    }}
    if (f->what == WHAT_EXEC && ret == 0) {{
        /* in a new (64-bit) image now, its path came with sched_process_exec: the stack
           pointer is the new one, at argc with argv after it */
        send_argv(id, f->sp + 8, 8);
        return 0;
    }}
    if (f->what == WHAT_STATE && ret == 0 && p) {{
        if (f->nr == {NR_CHROOT}) p->rooted = 1;
        p->cwdgen = tick();  /* a new working directory or root: its paths are new keys */
    }}
    int zero = 0;
    struct event *e = scratch.lookup(&zero);
    if (!e) return 0;
    e->type = {EV_CALL}; e->tgid = tgid; e->tid = (u32)id; e->nr = f->nr; e->ret = ret;
    e->dirfd = f->dirfd; e->flags = f->flags; e->other = f->other; e->len = 0;
    e->serial = 0;
    e->agg = 0;
    e->flush_agg = 0;
    e->flush_count = 0;
    e->base = f->what == WHAT_DUP ? from : origin(p, f->dirfd);
    long n = 0;
    if (f->ptr && p) {{  /* the words past the path are zero, to compare whole words */
        u64 *words = (u64 *)e->path;
        #pragma unroll
        for (int i = 0; i < LAST_WORDS; i++) words[i] = 0;
    }}
    if (f->ptr) {{
        n = bpf_probe_read_user_str(e->path, sizeof(e->path), (void *)f->ptr);
        e->len = n > 0 ? n : 0;
        /* an empty path with AT_EMPTY_PATH is about the fd itself (glibc's fstat): no lookup */
        if (n == 1 && (f->other & {AT_EMPTY_PATH}) && f->what != WHAT_EXEC)
            return 0;
    }}
    /* A repeat? Never a call that changes the cwd or root, nor one of a process without a
       table (its cwd and root are unknown here). First the last call of its kind (struct
       last): a name relative to a directory traced to its open is keyed by that open, any
       other path by the process's working directory and root (cwdgen). Then the map, for
       absolute and cwd-relative paths up to SEEN_PATH - 1 bytes. */
    int relative = n > 1 && e->path[0] != '/';
    int by_dir = relative && e->base && f->dirfd != {AT_FDCWD};
    u32 *r = run.lookup(&zero);
    u32 this_run = r ? *r : 0;
    u32 kflags = f->what == WHAT_OPEN ? f->flags : 0;
    u64 lbase = by_dir ? e->base : (p ? p->cwdgen | (1ULL << 63) : 0);
    struct last *l = 0;
    if (p && f->what != WHAT_STATE && n > 1 && n <= LAST_PATH
        && (by_dir || !relative || f->dirfd == {AT_FDCWD})) {{
        u32 kind = f->nr & 3;
        l = lasts.lookup(&kind);
        if (l && same_last(l, e, this_run, kflags, lbase)) {{
            l->count++;  /* this CPU's own: no other program runs it meanwhile */
            if (f->what == WHAT_OPEN && ret >= 0) set_fd(p, ret, l->serial);
            return 0;
        }}
    }}
    struct seenkey *k = seen_scratch.lookup(&zero);
    int keyed = k && p && f->what != WHAT_STATE && n > 1 && n < SEEN_PATH
        && (!relative || f->dirfd == {AT_FDCWD});
    if (keyed) {{
        __builtin_memset(k->path, 0, SEEN_PATH);
        if (n > 0) bpf_probe_read_kernel(k->path, n & (SEEN_PATH - 1), e->path);
        k->run = this_run;
        k->tgid = p->rooted ? tgid : 0;
        k->nr = f->nr;
        k->flags = kflags;
        k->ret = ret < 0 ? ret : 0;
        k->base = relative ? p->cwdgen | (1ULL << 63) : 0;
        struct seenval *v = seen.lookup(k);
        if (v && count_repeat(v->agg, 1)) {{
            if (f->what == WHAT_OPEN && ret >= 0) set_fd(p, ret, v->serial);
            if (l) {{  /* its repeats right after it count in the last place */
                if (l->count && l->run == this_run && !count_repeat(l->agg, l->count))
                    count_lost();
                e->agg = v->agg;
                e->serial = v->serial;
                keep_last(l, e, this_run, kflags, lbase);
            }}
            return 0;
        }}
    }}
    if (f->what == WHAT_OPEN && ret >= 0) {{
        e->serial = tick();
        set_fd(p, ret, e->serial);
    }}
    if (keyed) {{
        struct seenval nv = {{ .agg = tick(), .serial = e->serial }};
        if (seen.update(k, &nv) == 0) e->agg = nv.agg;
    }}
    if (l) {{
        if (l->count && l->run == this_run) {{  /* the count there goes out with e */
            e->flush_agg = l->agg;
            e->flush_count = l->count;
        }}
        if (!e->agg) e->agg = tick();
        keep_last(l, e, this_run, kflags, lbase);
    }}
    send(e);
    return 0;
}}

/* The command itself: the thread that starts it names itself (spawner), the process it forks
   next is noted (child) and traced from its exec on, put in the traced tree here in the
   kernel. So the command starts with no handshake, from a vfork (a fork and exec of minicon's
   own big process cost ~7 ms a run), and nothing it does to set itself up is recorded. */
struct spawn {{ u32 spawner; u32 child; }};
BPF_ARRAY(spawning, struct spawn, 1);
BPF_ARRAY(blank, struct proc, 1);  /* never written: an empty table for the command */
static __always_inline int spawned(u32 old_pid, u32 pid) {{
    int zero = 0;
    struct spawn *s = spawning.lookup(&zero);
    if (!s || !s->child || s->child != old_pid) return 0;
    s->child = 0;
    struct proc *b = blank.lookup(&zero);
    if (!b || procs.update(&pid, b) != 0) count_lost();
    set_traced(pid);
    return 1;
}}

TRACEPOINT_PROBE(sched, sched_process_fork) {{
    if (!is_traced()) {{  /* the forking task is the current one */
        int zero = 0;
        struct spawn *s = spawning.lookup(&zero);
        if (s && s->spawner && s->spawner == (u32)bpf_get_current_pid_tgid()) {{
            s->child = args->child_pid;
            s->spawner = 0;
        }}
        return 0;
    }}
    u32 parent = args->parent_pid;
    /* a process or a thread: this tracepoint cannot tell, so both are in the map; a thread's
       own entry goes at its exit (or its exec) */
    u32 child = args->child_pid;
    set_traced(child);
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct proc *p = procs.lookup(&tgid);  /* the child's descriptors are a copy of these */
    if (!p || procs.update(&child, p) != 0) count_lost();
    struct event *e = reserve_head();
    if (!e) {{ count_lost(); return 0; }}
    e->type = {EV_FORK}; e->tgid = bpf_get_current_pid_tgid() >> 32; e->tid = child;
    e->other = parent; e->len = 0;
    events.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
    return 0;
}}

TRACEPOINT_PROBE(sched, sched_process_exec) {{
    if (!is_traced() && !spawned(args->old_pid, args->pid)) return 0;
    struct event *e = reserve_head();
    if (!e) {{ count_lost(); return 0; }}
    e->type = {EV_EXEC}; e->tgid = bpf_get_current_pid_tgid() >> 32; e->tid = args->pid;
    e->other = args->old_pid; e->len = 0;
    events.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
    if (args->old_pid != args->pid) {{  /* a thread exec'd: it is the process now */
        u32 old = args->old_pid;
        clear_traced(old);
        procs.delete(&old);
    }}
    int zero = 0;  /* the kernel's own copy of the file name: always readable */
    struct event *x = scratch.lookup(&zero);
    if (!x) return 0;
    x->type = {EV_EXEC_PATH}; x->tgid = bpf_get_current_pid_tgid() >> 32; x->tid = args->pid;
    x->nr = 59; x->ret = 0;
    x->dirfd = {AT_FDCWD}; x->flags = 0; x->other = 0; x->base = 0; x->serial = 0; x->agg = 0;
    x->flush_agg = 0; x->flush_count = 0;
    unsigned short loc = args->data_loc_filename & 0xFFFF;
    long n = bpf_probe_read_kernel_str(x->path, sizeof(x->path), (char *)args + loc);
    x->len = n > 0 ? n : 0;
    send(x);
    return 0;
}}

TRACEPOINT_PROBE(sched, sched_process_exit) {{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    if (!pid_traced(tgid)) return 0;
    struct event *e = reserve_head();
    u32 group_dead = {_group_dead()};
    if (e) {{
        e->type = {EV_EXIT}; e->tgid = tgid; e->tid = (u32)id; e->len = 0; e->nr = 0;
        e->flags = group_dead; e->other = 0; e->ret = 0;
        {_exit_code(exit_code_at)}
        events.ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);  /* the reader may be waiting for it */
    }} else count_lost();
    if (group_dead) {{  /* its pid may be reused by anyone */
        clear_traced(tgid);
        procs.delete(&tgid);
    }}
    if ((u32)id != tgid) {{  /* a thread: the fork probe made it a table too */
        u32 tid = (u32)id;
        clear_traced(tid);
        procs.delete(&tid);
    }}
    return 0;
}}
"""
    ]
    parts.append(_probes(exit_code_at is None, compat_at, direct))
    return "\n".join(parts)


def _kernel_types() -> btf.Types | None:
    try:
        return btf.load()
    except btf.BtfError:
        return None


def exit_code_offset(types: btf.Types | None) -> int | None:
    """Where ``task_struct.exit_code`` is in the running kernel; None without BTF."""
    try:
        return types.member_offset("task_struct", "exit_code") if types else None
    except btf.BtfError:
        return None


def _exit_code(offset: int | None) -> str:
    """The exiting task's wait status (``exit_code``: the code << 8, or the signal that killed
    it), in ``ret``, with ``other`` = 1 to say it is there."""
    if offset is None:
        return "/* no BTF: the status comes from exit/exit_group at their entry */"
    return (
        "int code = 0; if (bpf_probe_read_kernel(&code, sizeof(code), "
        f"(char *)bpf_get_current_task() + {offset}) == 0) {{ e->ret = code; e->other = 1; }}"
    )


def _group_dead() -> str:
    """When a process is gone: its last thread exits. Kernels since 6.16 say so in the exit
    tracepoint; before, the leader's exit stands for it (a thread that execs after its leader
    exited is then lost: the kernel has no cheaper way to tell without task_struct offsets,
    which bcc takes from headers that may not match the running kernel)."""
    fmt = read_small(f"{TRACEFS}/events/sched/sched_process_exit/format") or b""
    return "args->group_dead" if b"group_dead" in fmt else "(u32)id == tgid"


def _what(call: Syscall) -> str:
    return {Kind.EXEC: "WHAT_EXEC", Kind.OPEN: "WHAT_OPEN", Kind.CHDIR: "WHAT_STATE"}.get(
        call.kind, "0"
    )


def _arg(index: int | None, cast: str) -> str:
    return f"({cast})a[{index}]" if index is not None else "0"


def compat_status_offset(types: btf.Types | None) -> int | None:
    """Where ``task_struct.thread_info.status`` is in the running kernel; None without BTF."""
    if types is None:
        return None
    try:
        info = types.member_offset("task_struct", "thread_info")
        return info + types.member_offset("thread_info", "status")
    except btf.BtfError:
        return None


def _compat_check(offset: int | None, direct: bool) -> str:
    """A 32-bit syscall (a 32-bit program, or ``int 0x80``) has other numbers and arguments:
    it is not recorded, as the ptrace backend's seccomp filter lets it through. Without BTF
    only a 32-bit program's calls are told apart, by their code segment."""
    if offset is None:
        return "if (a[7] != USER_CS) return 0;"
    if direct:
        return f"if (*(u32 *)((char *)bpf_get_current_task_btf() + {offset}) & TS_COMPAT) return 0;"
    return (
        "u32 ts = 0; bpf_probe_read_kernel(&ts, sizeof(ts), "
        f"(char *)bpf_get_current_task() + {offset}); if (ts & TS_COMPAT) return 0;"
    )


def _probes(status_at_entry: bool, compat_at: int | None, direct: bool) -> str:
    """The raw tracepoint ``sys_exit``: one switch on the syscall number with constant argument
    offsets for the verifier (one probe attaches and detaches in milliseconds, where one pair
    per syscall took seconds to detach).

    Every call is recorded at its exit from the registers it was made with (an exec's argv from
    the new image's stack), so nothing is kept from entry to exit. Only without BTF is there a
    ``sys_enter`` probe, for the status of exit and exit_group (they never return)."""
    cases = []
    for call in TABLE:
        # AT_EMPTY_PATH stats are about the fd: never recorded, as the seccomp filter does not
        # stop them (fstat: a sixth of find's stats), and no path read to find that out
        skip = (
            f"if (a[{call.at_flags}] & {call.unstopped_if}) return 0; "
            if call.unstopped_if and call.at_flags is not None
            else ""
        )
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
            f"    case {call.nr}: {skip}f.ptr = {_arg(call.path, 'u64')}; f.dirfd = {dirfd}; "
            f"f.flags = {flags}; f.other = {_arg(call.at_flags, 'u32')}; "
            f"f.what = {_what(call)}; break;"
        )
    # dup, dup2, dup3 and fcntl(F_DUPFD, F_DUPFD_CLOEXEC): the descriptor table of a process
    # (find walks with duplicated directory fds), sent as an fd-only call with nr kept
    cases.append(
        f"    case {NR_DUP}: case {NR_DUP2}: case {NR_DUP3}: f.dirfd = (s32)a[0]; "
        "f.what = WHAT_DUP; break;"
    )
    cases.append(
        f"    case {NR_FCNTL}: if (a[1] != 0 && a[1] != 1030) return 0; "
        "f.dirfd = (s32)a[0]; f.what = WHAT_DUP; break;"
    )
    nrs = [call.nr for call in TABLE] + [NR_DUP, NR_DUP2, NR_DUP3, NR_FCNTL]
    recorded = " ".join(f"case {nr}:" for nr in nrs if nr not in (NR_GETDENTS64, NR_GETDENTS))
    if direct:  # BTF-typed: the verifier knows ctx[0] is a struct pt_regs *
        head = f"int {DIRECT_PROBE}(u64 *ctx) {{\n    long ret = (long)ctx[1];"
        regs = "struct pt_regs *uregs = (struct pt_regs *)ctx[0];"
        read_args = """/* the arguments, the stack pointer and the code segment */
static __always_inline void read_args(struct pt_regs *regs, u64 *a) {
    a[0] = regs->di; a[1] = regs->si; a[2] = regs->dx; a[3] = regs->r10; a[4] = regs->r8;
    a[5] = regs->r9; a[6] = regs->sp; a[7] = regs->cs;
}"""
    else:
        head = "RAW_TRACEPOINT_PROBE(sys_exit) {\n    long ret = (long)ctx->args[1];"
        regs = "struct pt_regs *uregs = (struct pt_regs *)ctx->args[0];"
        read_args = """/* the arguments, the stack pointer and the code segment */
static __always_inline void read_args(void *uregs, u64 *a) {
    struct pt_regs regs = {};
    bpf_probe_read_kernel(&regs, sizeof(regs), uregs);
    a[0] = regs.di; a[1] = regs.si; a[2] = regs.dx; a[3] = regs.r10; a[4] = regs.r8;
    a[5] = regs.r9; a[6] = regs.sp; a[7] = regs.cs;
}"""
    kload = "dst = *(src)" if direct else "bpf_probe_read_kernel(&dst, sizeof(dst), src)"
    return f"""
/* a kernel field: a plain load in the BTF-typed probe, a probe read in the other */
#define KLOAD(dst, src) {kload}
{read_args}

{_status_probe() if status_at_entry else ""}
{head}
    {regs}
    long nr = 0;
    KLOAD(nr, &uregs->orig_ax);
    switch (nr) {{
    case {NR_GETDENTS64}: case {NR_GETDENTS}:
        if (ret == 0) return 0;  /* the end of a listing recorded by its first read */
        break;
    case {NR_IA32_EXECVE}: {{  /* a successful exec into a 32-bit image (the kernel makes every
        such exec this call), or a 64-bit munmap: the code segment tells */
        if (ret != 0) return 0;
        u64 cs = 0, sp = 0;
        KLOAD(cs, &uregs->cs);
        if (cs != USER32_CS || !is_traced()) return 0;
        KLOAD(sp, &uregs->sp);
        send_argv(bpf_get_current_pid_tgid(), sp + 4, 4);
        return 0;
    }}
    {recorded} break;
    default: return 0;
    }}
    if (!is_traced()) return 0;
    u64 a[8];
    read_args(uregs, a);
    {_compat_check(compat_at, direct)}
    struct call f = {{}};
    f.sp = a[6];
    switch (nr) {{
{chr(10).join(cases)}
    default: return 0;
    }}
    f.nr = nr;
    return on_exit(&f, ret);
}}
"""


def _status_probe() -> str:
    """Without BTF: exit and exit_group send their status at entry (they never return)."""
    return f"""
RAW_TRACEPOINT_PROBE(sys_enter) {{
    long nr = ctx->args[1];
    if (nr != {NR_EXIT} && nr != {NR_EXIT_GROUP}) return 0;
    if (!is_traced()) return 0;
    u64 id = bpf_get_current_pid_tgid();
    struct pt_regs regs = {{}};
    bpf_probe_read_kernel(&regs, sizeof(regs), (void *)ctx->args[0]);
    struct event *e = reserve_head();
    if (!e) {{ count_lost(); return 0; }}
    e->type = {EV_STATUS}; e->tgid = id >> 32; e->tid = (u32)id; e->nr = nr;
    e->ret = regs.di & 0xff; e->len = 0;
    events.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
    return 0;
}}
"""
