"""A classic-BPF seccomp filter that hands the recorded syscalls to the tracer.

Every syscall in :data:`tracer.syscalls.TABLE` returns ``SECCOMP_RET_TRACE`` (a ptrace stop with
``PTRACE_EVENT_SECCOMP``); everything else runs without stopping. A rule may exempt calls by a
flag in one argument: ``fstat`` is ``newfstatat(fd, "", AT_EMPTY_PATH)`` in today's glibc, a
quarter of all stat-family calls, and names no path. Only native x86_64 calls are filtered;
other ABIs (``int 0x80``) are allowed through untraced.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Iterable
from dataclasses import dataclass

AUDIT_ARCH_X86_64 = 0xC000003E
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_TRACE = 0x7FF00000
SECCOMP_SET_MODE_FILTER = 1
PR_SET_NO_NEW_PRIVS = 38
SYS_SECCOMP = 317

_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_JSET_K = 0x45
_BPF_RET_K = 0x06
_INSN = struct.Struct("=HBBI")
_ARGS_OFFSET = 16  # struct seccomp_data: nr, arch, instruction_pointer, args[6]
_ALLOW, _TRACE = "allow", "trace"


@dataclass(frozen=True)
class Rule:
    """Stop on syscall ``nr``, unless ``mask`` is set in the low word of argument ``arg``."""

    nr: int
    arg: int | None = None
    mask: int = 0


def build_filter(rules: Iterable[Rule]) -> bytes:
    """The filter program as an array of ``struct sock_filter``.

    Layout: check the arch, compare the syscall number with each rule (a hit jumps to its
    block), allow; the shared ``trace`` return; then one block per conditional rule with its
    own returns (classic BPF jumps only forward).
    """
    by_nr = {r.nr: r for r in rules}
    plain = sorted(nr for nr, r in by_nr.items() if r.arg is None)
    conditional = sorted(nr for nr, r in by_nr.items() if r.arg is not None)
    # symbolic program: (code, k, jump-if-true label, jump-if-false label); labels resolved after
    prog: list[tuple[int, int, str | None, str | None]] = [
        (_BPF_LD_W_ABS, 4, None, None),  # seccomp_data.arch
        (_BPF_JEQ_K, AUDIT_ARCH_X86_64, None, _ALLOW),  # another ABI: allowed, untraced
        (_BPF_LD_W_ABS, 0, None, None),  # seccomp_data.nr
    ]
    prog += [(_BPF_JEQ_K, nr, _TRACE, None) for nr in plain]
    prog += [(_BPF_JEQ_K, nr, f"cond{nr}", None) for nr in conditional]
    labels = {_ALLOW: len(prog)}
    prog.append((_BPF_RET_K, SECCOMP_RET_ALLOW, None, None))
    labels[_TRACE] = len(prog)
    prog.append((_BPF_RET_K, SECCOMP_RET_TRACE, None, None))
    for nr in conditional:
        rule = by_nr[nr]
        assert rule.arg is not None
        labels[f"cond{nr}"] = len(prog)
        prog.append((_BPF_LD_W_ABS, _ARGS_OFFSET + 8 * rule.arg, None, None))
        prog.append((_BPF_JSET_K, rule.mask, None, f"trace{nr}"))  # BPF jumps only forward
        prog.append((_BPF_RET_K, SECCOMP_RET_ALLOW, None, None))
        labels[f"trace{nr}"] = len(prog)
        prog.append((_BPF_RET_K, SECCOMP_RET_TRACE, None, None))
    out = []
    for pc, (code, k, jt, jf) in enumerate(prog):
        t = labels[jt] - pc - 1 if jt else 0
        f = labels[jf] - pc - 1 if jf else 0
        if not (0 <= t < 256 and 0 <= f < 256):
            raise ValueError("seccomp filter too long for 8-bit jumps")
        out.append(_INSN.pack(code, t, f, k))
    return b"".join(out)


_libc = ctypes.CDLL(None, use_errno=True)  # the process's own libc: no lookup after fork


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(program: bytes) -> int:
    """Install ``program`` for the calling process; 0 or an errno. Safe to call after fork."""
    libc = _libc
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return ctypes.get_errno()
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // _INSN.size, ctypes.addressof(buf))
    res = libc.syscall(SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, 0, ctypes.byref(fprog))
    return ctypes.get_errno() if res != 0 else 0
