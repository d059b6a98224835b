"""The few bpf(2) commands bcc 0.26 does not make for us.

bcc compiles the program and creates its maps, but loads a function only as one of the types it
knows how to name, and it cannot name a BTF-typed raw tracepoint (``tp_btf``): it looks the
name up as a kernel function. Such a probe is what the syscall probe wants to be, because it may
read ``pt_regs`` and ``task_struct`` with plain loads, which the verifier turns into guarded
ones, where a plain raw tracepoint must call ``bpf_probe_read_kernel`` for every field: ~38 ns a
call, paid by every syscall on the machine (find /usr: ~240k calls a run). So the compiled
instructions, with bcc's map descriptors already in them, are loaded here with
``BPF_PROG_LOAD`` (type tracing, attach type raw tracepoint, the id of the kernel's
``btf_trace_<name>`` typedef) and attached with ``BPF_RAW_TRACEPOINT_OPEN``.

Layouts are the UAPI's ``union bpf_attr`` and ``struct bpf_prog_info``, which only grow.
"""

from __future__ import annotations

import ctypes
import os
import struct

NR_BPF = 321
_PROG_LOAD, _OBJ_GET_INFO_BY_FD, _RAW_TRACEPOINT_OPEN = 5, 15, 17
_PROG_TYPE_TRACING, _TRACE_RAW_TP = 26, 23
_LOAD_ATTR = 128  # through attach_btf_id (108) and attach_prog_fd (112), zero-padded
_PROG_INFO_SIZE, _RECURSION_MISSES = 232, 208
_LOG_SIZE = 1 << 20

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class BpfError(OSError):
    """The kernel refused a bpf(2) command (with the verifier's log for a load)."""


def _bpf(cmd: int, attr: bytes | bytearray) -> int:
    buf = ctypes.create_string_buffer(bytes(attr), len(attr))
    ret = int(_libc.syscall(NR_BPF, cmd, buf, len(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise BpfError(err, os.strerror(err))
    return ret


def load_btf_raw_tracepoint(insns: bytes, btf_id: int, name: bytes) -> int:
    """Load ``insns`` as a BTF-typed raw tracepoint program for the tracepoint whose
    ``btf_trace_*`` typedef has ``btf_id``; returns the program's descriptor."""
    code = ctypes.create_string_buffer(insns, len(insns))
    gpl = ctypes.create_string_buffer(b"GPL")  # the probe-read and ring-buffer helpers need it
    log = ctypes.create_string_buffer(_LOG_SIZE)
    attr = bytearray(_LOAD_ATTR)
    # prog_type, insn_cnt, insns, license, log_level, log_size, log_buf
    struct.pack_into(
        "=IIQQIIQ",
        attr,
        0,
        _PROG_TYPE_TRACING,
        len(insns) // 8,
        ctypes.addressof(code),
        ctypes.addressof(gpl),
        1,
        _LOG_SIZE,
        ctypes.addressof(log),
    )
    attr[48:64] = name[:15].ljust(16, b"\0")  # prog_name
    struct.pack_into("=I", attr, 68, _TRACE_RAW_TP)  # expected_attach_type
    struct.pack_into("=I", attr, 108, btf_id)  # attach_btf_id
    try:
        return _bpf(_PROG_LOAD, attr)
    except BpfError as exc:
        tail = log.value.decode(errors="replace").strip().splitlines()[-12:]
        raise BpfError(exc.errno, f"{exc.strerror}: {' / '.join(tail)}") from None


def attach_raw_tracepoint(prog_fd: int) -> int:
    """Attach a loaded BTF-typed raw tracepoint program (the tracepoint is the one it was
    loaded for: no name); returns the link's descriptor, whose close detaches it."""
    return _bpf(_RAW_TRACEPOINT_OPEN, struct.pack("=QII", 0, prog_fd, 0))


def recursion_misses(prog_fd: int) -> int:
    """How often the kernel skipped the program because it was already running on that CPU
    (0 on a kernel that does not count them)."""
    info = ctypes.create_string_buffer(_PROG_INFO_SIZE)
    try:
        _bpf(
            _OBJ_GET_INFO_BY_FD,
            struct.pack("=IIQ", prog_fd, _PROG_INFO_SIZE, ctypes.addressof(info)),
        )
    except BpfError:
        return 0
    return int(struct.unpack_from("=Q", info.raw, _RECURSION_MISSES)[0])
