"""A classic-BPF seccomp filter that hands the recorded syscalls to the tracer.

Every syscall in :data:`tracer.syscalls.TABLE` returns ``SECCOMP_RET_TRACE`` (a ptrace stop with
``PTRACE_EVENT_SECCOMP``); everything else runs without stopping. Only native x86_64 calls are
filtered; other ABIs (``int 0x80``) are allowed through untraced.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Iterable

AUDIT_ARCH_X86_64 = 0xC000003E
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_TRACE = 0x7FF00000
SECCOMP_SET_MODE_FILTER = 1
PR_SET_NO_NEW_PRIVS = 38
SYS_SECCOMP = 317

_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_RET_K = 0x06
_INSN = struct.Struct("=HBBI")


def build_filter(numbers: Iterable[int]) -> bytes:
    """The filter program as an array of ``struct sock_filter``."""
    nrs = sorted(set(numbers))
    n = len(nrs)
    prog = [
        _INSN.pack(_BPF_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        _INSN.pack(_BPF_JEQ_K, 0, n + 1, AUDIT_ARCH_X86_64),  # other ABI -> allow
        _INSN.pack(_BPF_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
    ]
    for i, nr in enumerate(nrs):
        prog.append(_INSN.pack(_BPF_JEQ_K, n - i, 0, nr))  # match -> trace
    prog.append(_INSN.pack(_BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    prog.append(_INSN.pack(_BPF_RET_K, 0, 0, SECCOMP_RET_TRACE))
    return b"".join(prog)


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
