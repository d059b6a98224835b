"""Member offsets and type ids of the running kernel, from its BTF (``/sys/kernel/btf/vmlinux``).

bcc compiles the eBPF program against kernel headers, and on a kernel without its own headers
package those are another kernel's (``scripts/ebpf.sh`` links the nearest Debian ones): their
``task_struct`` layout is not the running one's. The kernel describes its own types in BTF, so
an offset the program needs is read from there and compiled in as a number.

Only what that needs is read: the type section is walked (records have a kind-dependent size)
until the struct is found, and anonymous struct or union members are followed. ``task_struct``
is among the first types of vmlinux, so a lookup reads 5 MB and parses a few hundred records.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

VMLINUX = "/sys/kernel/btf/vmlinux"
_MAGIC = 0xEB9F
_HEADER = struct.Struct("<HBBIIIII")  # magic, version, flags, hdr_len, type/str offsets, lengths
_TYPE = struct.Struct("<III")  # name_off, info (vlen, kind, kind_flag), size or type
_MEMBER = struct.Struct("<III")  # name_off, type, offset (bits; with kind_flag: low 24 bits)
_STRUCT, _UNION, _TYPEDEF = 4, 5, 8
_EXTRA = {1: 4, 3: 12, 14: 4, 17: 4}  # int, array, var, decl_tag: one fixed record after
# struct/union, enum, func_proto, datasec, enum64: one record per member, value or parameter
_PER_ITEM = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}


class BtfError(Exception):
    """No BTF, or not in the format this reader knows."""


def load(path: str = VMLINUX) -> Types:
    """The kernel's types, read once for any number of lookups."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        msg = f"{path}: {exc.strerror} (a kernel built without CONFIG_DEBUG_INFO_BTF)"
        raise BtfError(msg) from None
    return Types(data)


def member_offset(struct_name: str, member: str, path: str = VMLINUX) -> int:
    """The byte offset of ``struct_name.member`` in the running kernel (one lookup)."""
    return load(path).member_offset(struct_name, member)


class Types:
    def __init__(self, data: bytes) -> None:
        if len(data) < _HEADER.size:
            raise BtfError("BTF data too short")
        magic, _, _, hdr_len, type_off, type_len, str_off, str_len = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise BtfError("not BTF data (or of another byte order)")
        self.data = data
        self.pos = hdr_len + type_off  # the next record not read yet
        self.end = self.pos + type_len
        self.strings = data[hdr_len + str_off : hdr_len + str_off + str_len]
        self.at = [0]  # type id -> offset of its record; ids start at 1

    def _name(self, name: bytes) -> int:
        """The string-section offset of a name (0 is the empty name)."""
        i = self.strings.find(b"\0" + name + b"\0")
        if i < 0:
            raise BtfError(f"{name.decode()}: not in the kernel's BTF")
        return i + 1

    def _read_to(self, type_id: int) -> None:
        """Index records up to ``type_id``."""
        while len(self.at) <= type_id:
            if self.pos + _TYPE.size > self.end:
                raise BtfError(f"type {type_id} is past the end of the BTF data")
            _, info, _ = _TYPE.unpack_from(self.data, self.pos)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            self.at.append(self.pos)
            self.pos += _TYPE.size + _EXTRA.get(kind, 0) + _PER_ITEM.get(kind, 0) * vlen

    def member_offset(self, struct_name: str, member: str) -> int:
        """The byte offset of ``struct_name.member``; records read for one lookup serve the
        next."""
        want_member = self._name(member.encode())
        for type_id in self._named(struct_name, _STRUCT):
            found = self._find(type_id, want_member)
            if found is not None:
                return found
        raise BtfError(f"struct {struct_name} has no {member} in the BTF")

    def typedef_id(self, name: str) -> int:
        """The type id of typedef ``name`` (a BTF-typed tracepoint is named by the id of its
        ``btf_trace_<name>`` typedef)."""
        for type_id in self._named(name, _TYPEDEF):
            return type_id
        raise BtfError(f"typedef {name}: not in the kernel's BTF")

    def _named(self, name: str, kind: int) -> Iterator[int]:
        """The ids of the types of this kind and name, in id order."""
        want = self._name(name.encode())
        type_id = 1
        while type_id < len(self.at) or self.pos < self.end:
            self._read_to(type_id)
            name_off, info, _ = _TYPE.unpack_from(self.data, self.at[type_id])
            if (info >> 24) & 0x1F == kind and name_off == want:
                yield type_id
            type_id += 1

    def _find(self, type_id: int, want: int, depth: int = 0) -> int | None:
        """The byte offset of member ``want`` in struct/union ``type_id``, looking into its
        anonymous members; None when it has none."""
        at = self.at[type_id]
        _, info, _ = _TYPE.unpack_from(self.data, at)
        bitfields = bool(info >> 31)
        for i in range(info & 0xFFFF):
            name, member_type, offset = _MEMBER.unpack_from(self.data, at + _TYPE.size + 12 * i)
            name, member_type, offset = int(name), int(member_type), int(offset)
            bits = offset & 0xFFFFFF if bitfields else offset
            if name == want:
                return bits // 8
            if name == 0 and depth < 8:  # an anonymous struct or union: its members are ours
                self._read_to(member_type)
                _, member_info, _ = _TYPE.unpack_from(self.data, self.at[member_type])
                if (member_info >> 24) & 0x1F in (_STRUCT, _UNION):
                    inner = self._find(member_type, want, depth + 1)
                    if inner is not None:
                        return bits // 8 + inner
        return None
