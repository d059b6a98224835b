"""What the dynamic loader reads from an ELF file: class, machine, interpreter, dependencies.

The binary structures are parsed with pyelftools' struct definitions (``ELFStructs``). We read only
the ELF header, the program headers and the dynamic segment, the way ``ld.so`` does, instead of
building a full ``ELFFile``: that parses every section header to find ``.dynstr`` and costs ~3 ms
per file, which is too slow for whole-``/usr`` closures. Strings are found through ``DT_STRTAB``
mapped by the ``PT_LOAD`` segments, so stripped files without section headers work too.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from functools import lru_cache

from elftools.common.exceptions import ELFError
from elftools.construct import ConstructError
from elftools.elf.structs import ELFStructs

ELF_MAGIC = b"\x7fELF"
DF_1_NODEFLIB = 0x800
_IDENT = struct.Struct("4sBBBB")  # magic, class, data, version, osabi


@dataclass(frozen=True)
class ElfKind:
    """The identity that decides whether the loader may use a file for another one."""

    elfclass: int  # 32 or 64
    little_endian: bool
    machine: str  # e.g. "EM_X86_64"


@dataclass(frozen=True)
class ElfInfo:
    kind: ElfKind
    etype: str  # "ET_EXEC", "ET_DYN", ...
    interp: bytes | None
    needed: tuple[bytes, ...]
    rpath: tuple[bytes, ...]
    runpath: tuple[bytes, ...]
    soname: bytes | None
    nodeflib: bool

    @property
    def is_dynamic(self) -> bool:
        return self.interp is not None or bool(self.needed) or self.soname is not None


@lru_cache(maxsize=32)
def _structs(
    little_endian: bool, elfclass: int, machine: str | None, osabi: str | None
) -> ELFStructs:
    s = ELFStructs(little_endian=little_endian, elfclass=elfclass)
    s.create_basic_structs()
    s.create_advanced_structs(None, machine, osabi)
    return s


def read_kind(head: bytes) -> ElfKind | None:
    """The class/endianness/machine from the first 64 bytes of a file, or None if not ELF."""
    if len(head) < 20 or not head.startswith(ELF_MAGIC):
        return None
    _, cls, data, _, _ = _IDENT.unpack_from(head)
    if cls not in (1, 2) or data not in (1, 2):
        return None
    little = data == 1
    try:
        ehdr = _structs(little, 32 * cls, None, None).Elf_Ehdr.parse(head)
    except (ConstructError, ELFError):
        return None
    return ElfKind(32 * cls, little, str(ehdr["e_machine"]))


class ElfParseError(Exception):
    """The file starts like ELF but its headers cannot be read."""


def parse(path: bytes) -> ElfInfo:
    """Parse the loader-relevant parts of the ELF file at host path ``path``."""
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _parse(data)
    except (OSError, ConstructError, ELFError, struct.error, IndexError, ValueError) as exc:
        raise ElfParseError(f"{os.fsdecode(path)}: {exc}") from exc


def _parse(data: mmap.mmap) -> ElfInfo:
    if data[:4] != ELF_MAGIC or len(data) < 52:
        raise ElfParseError("not an ELF file")
    _, cls, enc, _, _ = _IDENT.unpack_from(data)
    little = enc == 1
    basic = _structs(little, 32 * cls, None, None)
    ehdr = basic.Elf_Ehdr.parse(data[:64])
    machine = str(ehdr["e_machine"])
    osabi = str(ehdr["e_ident"]["EI_OSABI"])
    st = _structs(little, 32 * cls, machine, osabi)
    kind = ElfKind(32 * cls, little, machine)

    phoff, phnum, phsize = ehdr["e_phoff"], ehdr["e_phnum"], ehdr["e_phentsize"]
    interp: bytes | None = None
    dynamic: tuple[int, int] | None = None
    loads: list[tuple[int, int, int]] = []  # vaddr, filesz, offset
    for i in range(phnum):
        ph = st.Elf_Phdr.parse(data[phoff + i * phsize : phoff + (i + 1) * phsize])
        ptype = ph["p_type"]
        if ptype == "PT_INTERP":
            raw = data[ph["p_offset"] : ph["p_offset"] + ph["p_filesz"]]
            interp = raw.split(b"\0", 1)[0]
        elif ptype == "PT_DYNAMIC":
            dynamic = (ph["p_offset"], ph["p_filesz"])
        elif ptype == "PT_LOAD":
            loads.append((ph["p_vaddr"], ph["p_filesz"], ph["p_offset"]))

    needed: list[int] = []
    rpath: list[int] = []
    runpath: list[int] = []
    soname: int | None = None
    strtab: int | None = None
    flags_1 = 0
    if dynamic is not None:
        off, size = dynamic
        dsize = st.Elf_Dyn.sizeof()
        for pos in range(off, off + size - dsize + 1, dsize):
            ent = st.Elf_Dyn.parse(data[pos : pos + dsize])
            tag, val = ent["d_tag"], ent["d_val"]
            if tag == "DT_NULL":
                break
            if tag == "DT_NEEDED":
                needed.append(val)
            elif tag == "DT_RPATH":
                rpath.append(val)
            elif tag == "DT_RUNPATH":
                runpath.append(val)
            elif tag == "DT_SONAME":
                soname = val
            elif tag == "DT_STRTAB":
                strtab = val
            elif tag == "DT_FLAGS_1":
                flags_1 = val

    def string(offset: int) -> bytes:
        if strtab is None:
            raise ElfParseError("dynamic segment without DT_STRTAB")
        base = _vaddr_to_offset(loads, strtab)
        start = base + offset
        end = data.find(b"\0", start)
        if end < 0:
            raise ElfParseError("unterminated string in the dynamic string table")
        return data[start:end]

    def paths(offsets: list[int]) -> tuple[bytes, ...]:
        out: list[bytes] = []
        for o in offsets:
            out.extend(p for p in string(o).split(b":") if p)
        return tuple(out)

    return ElfInfo(
        kind=kind,
        etype=str(ehdr["e_type"]),
        interp=interp,
        needed=tuple(string(o) for o in needed),
        rpath=paths(rpath),
        runpath=paths(runpath),
        soname=string(soname) if soname is not None else None,
        nodeflib=bool(flags_1 & DF_1_NODEFLIB),
    )


def _vaddr_to_offset(loads: list[tuple[int, int, int]], vaddr: int) -> int:
    for start, size, offset in loads:
        if start <= vaddr < start + size:
            return vaddr - start + offset
    # Some linkers emit file offsets rather than addresses in objects loaded at 0.
    return vaddr
