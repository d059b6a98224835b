"""The BTF reader (member offsets for the eBPF program) and the program it goes into."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from minicon.cli import main
from tracer import btf
from tracer.ebpf_program import DIRECT_PROBE, bpf_program, exit_code_offset


def blob(types: list[bytes], names: list[bytes]) -> bytes:
    """A BTF blob with these type records and a string section of these names."""
    strings = b"\0" + b"".join(n + b"\0" for n in names)
    body = b"".join(types)
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(body), len(body), len(strings))
    return header + body + strings


def name_at(names: list[bytes], name: bytes) -> int:
    return 1 + sum(len(n) + 1 for n in names[: names.index(name)])


def test_member_offsets_through_anonymous_members(tmp_path: Path) -> None:
    names = [b"int", b"task_struct", b"pid", b"exit_code", b"flags", b"btf_trace_x"]
    n = lambda name: name_at(names, name)  # noqa: E731
    info = lambda kind, vlen, kflag=0: (kflag << 31) | (kind << 24) | vlen  # noqa: E731
    types = [
        # 1: int (4 bytes, one extra word)
        struct.pack("<III", n(b"int"), info(1, 0), 4) + struct.pack("<I", 32),
        # 2: an enum with two values, to be skipped over
        struct.pack("<III", 0, info(6, 2), 4) + struct.pack("<iIiI", 0, 0, 0, 1),
        # 3: struct task_struct { int pid; union { int exit_code; int flags; }; } with bitfield
        #    encoding (kind_flag): offsets in the low 24 bits
        struct.pack("<III", n(b"task_struct"), info(4, 2, 1), 16)
        + struct.pack("<III", n(b"pid"), 1, 32)
        + struct.pack("<III", 0, 4, (5 << 24) | 64),
        # 4: the anonymous union, after its user
        struct.pack("<III", 0, info(5, 2), 4)
        + struct.pack("<III", n(b"exit_code"), 1, 0)
        + struct.pack("<III", n(b"flags"), 1, 0),
        # 5: typedef int btf_trace_x
        struct.pack("<III", n(b"btf_trace_x"), info(8, 0), 1),
    ]
    path = tmp_path / "vmlinux"
    path.write_bytes(blob(types, names))
    assert btf.member_offset("task_struct", "pid", str(path)) == 4
    assert btf.load(str(path)).typedef_id("btf_trace_x") == 5
    with pytest.raises(btf.BtfError, match="typedef task_struct"):
        btf.load(str(path)).typedef_id("task_struct")  # a struct, not a typedef
    assert btf.member_offset("task_struct", "exit_code", str(path)) == 8
    with pytest.raises(btf.BtfError, match="no int"):
        btf.member_offset("task_struct", "int", str(path))
    with pytest.raises(btf.BtfError, match="nosuch"):
        btf.member_offset("task_struct", "nosuch", str(path))


def test_bad_btf(tmp_path: Path) -> None:
    with pytest.raises(btf.BtfError, match="CONFIG_DEBUG_INFO_BTF"):
        btf.member_offset("task_struct", "pid", str(tmp_path / "missing"))
    (tmp_path / "junk").write_bytes(b"\0" * 64)
    with pytest.raises(btf.BtfError, match="not BTF"):
        btf.member_offset("task_struct", "pid", str(tmp_path / "junk"))


@pytest.mark.skipif(not os.path.exists(btf.VMLINUX), reason="this kernel has no BTF")
def test_the_running_kernels_task_struct() -> None:
    types = btf.load()
    offset = exit_code_offset(types)
    assert offset is not None and 0 < offset < 16384
    assert types.member_offset("task_struct", "pid") != offset  # one read serves both lookups
    assert offset == btf.member_offset("task_struct", "exit_code")
    assert types.typedef_id("btf_trace_sys_exit") > 0  # what the BTF-typed probe attaches to


def test_dump_bpf() -> None:
    """The hidden --dump-bpf prints the program: one syscall probe, at exit (BTF-typed, with
    plain loads of the kernel's fields, where the kernel has BTF), unless there is no BTF to
    read exit statuses with."""
    out = CliRunner().invoke(main, ["trace", "--dump-bpf"])
    assert out.exit_code == 0, out.output
    assert "TRACEPOINT_PROBE(sched, sched_process_fork)" in out.output
    offset = exit_code_offset(btf.load()) if os.path.exists(btf.VMLINUX) else None
    if offset is not None:
        assert f"int {DIRECT_PROBE}(u64 *ctx)" in out.output
        assert "RAW_TRACEPOINT_PROBE(sys_exit)" not in out.output
        assert "RAW_TRACEPOINT_PROBE(sys_enter)" not in out.output
        assert f"bpf_get_current_task() + {offset}" in out.output
        assert "bpf_get_current_task_btf()" in out.output  # the 32-bit check, a plain load
    plain = bpf_program(direct=False)
    assert "RAW_TRACEPOINT_PROBE(sys_exit)" in plain and DIRECT_PROBE not in plain
    assert "bpf_probe_read_kernel(&dst, sizeof(dst), src)" in plain
    without = bpf_program(use_btf=False)
    assert "RAW_TRACEPOINT_PROBE(sys_enter)" in without and DIRECT_PROBE not in without
