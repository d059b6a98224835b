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

The map of repeats is emptied at the end of every run with ``BPF_MAP_LOOKUP_AND_DELETE_BATCH``
into buffers kept between runs (:class:`U64Batches`).

Layouts are the UAPI's ``union bpf_attr`` and ``struct bpf_prog_info``, which only grow.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

NR_BPF = 321
_PROG_LOAD, _OBJ_GET_INFO_BY_FD, _RAW_TRACEPOINT_OPEN, _LOOKUP_AND_DELETE_BATCH = 5, 15, 17, 25
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


class U64Batches:
    """Empties a hash map of u64 keys and values, a batch at a time, into room kept between
    calls (bcc's batch call makes room for the whole map each time: ~1 ms, every run, for a map
    of 131072 entries that usually holds a few hundred)."""

    def __init__(self, batch: int = 4096) -> None:
        self._keys = (ctypes.c_uint64 * batch)()
        self._values = (ctypes.c_uint64 * batch)()
        self._tokens = (ctypes.c_uint64 * 2)()  # where the last batch ended, and the next ends

    def pop_all(self, map_fd: int) -> list[tuple[int, int]]:
        """Every (key, value) of the map, deleted from it."""
        got: list[tuple[int, int]] = []
        keys, values, tokens = self._keys, self._values, self._tokens
        at = ctypes.addressof(tokens)
        first = True
        while True:
            # in_batch, out_batch, keys, values, count, map_fd, elem_flags, flags
            attr = ctypes.create_string_buffer(
                struct.pack(
                    "=QQQQIIQQ",
                    0 if first else at,
                    at + 8,
                    ctypes.addressof(keys),
                    ctypes.addressof(values),
                    len(keys),
                    map_fd,
                    0,
                    0,
                ),
                56,
            )
            ret = int(_libc.syscall(NR_BPF, _LOOKUP_AND_DELETE_BATCH, attr, 56))
            count = struct.unpack_from("=I", attr.raw, 32)[0]
            got.extend(zip(keys[:count], values[:count], strict=True))
            if ret < 0:
                err = ctypes.get_errno()
                if err == errno.ENOENT:  # the end of the map
                    return got
                raise BpfError(err, os.strerror(err))
            tokens[0] = tokens[1]
            first = False
