"""glibc's ``/etc/ld.so.cache`` (read and written) and ``/etc/ld.so.conf`` (read).

Only the "new" format (``glibc-ld.so.cache1.1``, the only one glibc writes since 2.32) is written;
both it and the old libc5-compatible prefix are read. The loader binary-searches the entries with
``_dl_cache_libcmp`` (digit runs compare as numbers), so a written cache must keep that order:
:func:`libcmp` reproduces it and tests check it against the host's own cache.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from .fsview import RootFS, join, normalize, parent

OLD_MAGIC = b"ld.so-1.7.0"
NEW_MAGIC = b"glibc-ld.so.cache1.1"
_NEW_HEADER = struct.Struct("<20sIIB3sI12s")  # magic+version, nlibs, len_strings, flags, pad, ext
_NEW_ENTRY = struct.Struct("<iIIIQ")  # flags, key, value, osversion, hwcap
_OLD_ENTRY = struct.Struct("<iII")
ENDIAN_LITTLE = 2
ENDIAN_BIG = 3
FLAG_ELF_LIBC6 = 0x0003
HWCAP_EXTENSION_BIT = 1 << 62

# The architecture bits ldconfig puts next to FLAG_ELF_LIBC6 (sysdeps/generic/ldconfig.h).
_ARCH_FLAGS: dict[tuple[str, int], int] = {
    ("EM_X86_64", 64): 0x0300,
    ("EM_X86_64", 32): 0x0800,  # x32
    ("EM_386", 32): 0x0000,
    ("EM_AARCH64", 64): 0x0A00,
    ("EM_PPC64", 64): 0x0500,
    ("EM_S390", 64): 0x0400,
    ("EM_IA_64", 64): 0x0200,
    ("EM_RISCV", 64): 0x1000,  # double-float ABI, the common one
    ("EM_LOONGARCH", 64): 0x1300,
}


def cache_flags(machine: str, elfclass: int) -> int:
    return FLAG_ELF_LIBC6 | _ARCH_FLAGS.get((machine, elfclass), 0)


@dataclass(frozen=True)
class CacheEntry:
    key: bytes  # the SONAME
    value: bytes  # the path the loader opens
    flags: int
    hwcap: int = 0


def libcmp(a: bytes, b: bytes) -> int:
    """glibc's ``_dl_cache_libcmp``: like strcmp, but runs of digits compare as numbers."""
    i = j = 0
    la, lb = len(a), len(b)
    while i < la:
        ca = a[i]
        cb = b[j] if j < lb else 0
        if 48 <= ca <= 57:
            if 48 <= cb <= 57:
                va = vb = 0
                while i < la and 48 <= a[i] <= 57:
                    va = va * 10 + a[i] - 48
                    i += 1
                while j < lb and 48 <= b[j] <= 57:
                    vb = vb * 10 + b[j] - 48
                    j += 1
                if va != vb:
                    return va - vb
            else:
                return 1
        elif 48 <= cb <= 57:
            return -1
        elif ca != cb:
            return ca - cb
        else:
            i += 1
            j += 1
    return -(b[j] if j < lb else 0)


def _entry_order(e1: CacheEntry, e2: CacheEntry) -> int:
    """ldconfig's sort: keys descending by libcmp, then flags descending, hwcap entries first."""
    res = libcmp(e2.key, e1.key)
    if res:
        return res
    if e1.flags != e2.flags:
        return -1 if e1.flags > e2.flags else 1
    ext1, ext2 = bool(e1.hwcap & HWCAP_EXTENSION_BIT), bool(e2.hwcap & HWCAP_EXTENSION_BIT)
    if ext1 != ext2:
        return -1 if ext1 else 1
    return (e1.hwcap > e2.hwcap) - (e1.hwcap < e2.hwcap)


def sort_entries(entries: Iterable[CacheEntry]) -> list[CacheEntry]:
    return sorted(entries, key=functools.cmp_to_key(_entry_order))


def parse_cache(data: bytes) -> list[CacheEntry]:
    """Entries of an ld.so.cache file, in file order. Unknown formats give an empty list."""
    start = 0
    if data.startswith(OLD_MAGIC):
        (nlibs,) = struct.unpack_from("<I", data, len(OLD_MAGIC))
        start = len(OLD_MAGIC) + 4 + nlibs * _OLD_ENTRY.size
        start = (start + 7) & ~7  # the new table follows, aligned
        if not data.startswith(NEW_MAGIC, start):
            return _parse_old(data, nlibs)
    if not data.startswith(NEW_MAGIC, start) or len(data) < start + _NEW_HEADER.size:
        return []
    _, nlibs, _, _, _, _, _ = _NEW_HEADER.unpack_from(data, start)
    base = start  # string offsets count from the new header
    entries = []
    pos = start + _NEW_HEADER.size
    for _ in range(nlibs):
        flags, key, value, _, hwcap = _NEW_ENTRY.unpack_from(data, pos)
        pos += _NEW_ENTRY.size
        entries.append(CacheEntry(_cstr(data, base + key), _cstr(data, base + value), flags, hwcap))
    return entries


def _parse_old(data: bytes, nlibs: int) -> list[CacheEntry]:
    strings = len(OLD_MAGIC) + 4 + nlibs * _OLD_ENTRY.size
    out = []
    for i in range(nlibs):
        flags, key, value = _OLD_ENTRY.unpack_from(data, len(OLD_MAGIC) + 4 + i * _OLD_ENTRY.size)
        out.append(CacheEntry(_cstr(data, strings + key), _cstr(data, strings + value), flags))
    return out


def _cstr(data: bytes, offset: int) -> bytes:
    end = data.find(b"\0", offset)
    return data[offset:end] if end >= 0 else b""


def build_cache(entries: Iterable[CacheEntry]) -> bytes:
    """A new-format, little-endian ld.so.cache holding ``entries`` in the loader's order."""
    ordered = sort_entries(entries)
    strings = bytearray()
    offsets: dict[bytes, int] = {}
    table_start = _NEW_HEADER.size + _NEW_ENTRY.size * len(ordered)

    def intern(s: bytes) -> int:
        if s not in offsets:
            offsets[s] = table_start + len(strings)
            strings.extend(s + b"\0")
        return offsets[s]

    body = bytearray()
    for e in ordered:
        body += _NEW_ENTRY.pack(e.flags, intern(e.key), intern(e.value), 0, e.hwcap)
    header = _NEW_HEADER.pack(
        NEW_MAGIC, len(ordered), len(strings), ENDIAN_LITTLE, b"\0" * 3, 0, b"\0" * 12
    )
    return bytes(header + body + strings)


def parse_conf(fs: RootFS, path: bytes = b"/etc/ld.so.conf") -> list[bytes]:
    """Library directories named by the root's ld.so.conf (``include`` globs expanded)."""
    dirs: list[bytes] = []
    _read_conf(fs, path, dirs, set())
    return dirs


def _read_conf(fs: RootFS, path: bytes, dirs: list[bytes], seen: set[bytes]) -> None:
    if path in seen:
        return
    seen.add(path)
    data = fs.read_file(path)
    if data is None:
        return
    for raw in data.splitlines():
        line = raw.split(b"#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(b"include") and line[7:8] in (b" ", b"\t"):
            for pattern in line[8:].split():
                if not pattern.startswith(b"/"):
                    pattern = join(parent(path), pattern)
                for match in fs.glob(normalize(pattern)):
                    _read_conf(fs, match, dirs, seen)
        elif line.startswith(b"hwcap"):
            continue  # obsolete, ignored by ldconfig since 2.37 and harmless to skip
        else:
            for item in line.replace(b",", b" ").replace(b":", b" ").split():
                if item.startswith(b"/"):
                    d = normalize(item.split(b"=", 1)[0])
                    if d not in dirs:
                        dirs.append(d)
