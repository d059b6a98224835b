"""Where glibc's loader finds a DT_NEEDED library, decided inside a root filesystem.

The order is ld.so's (``elf/dl-load.c``, ``_dl_map_object``):

1. a name with a slash is a path;
2. if the requesting object has no DT_RUNPATH: the DT_RPATH of the requester, then of the object
   that loaded it, and so on up to the executable (objects that have a DT_RUNPATH contribute none);
3. the requester's DT_RUNPATH;
4. the root's ``/etc/ld.so.cache`` (skipped with ``DF_1_NODEFLIB``);
5. the default directories (multiarch, ``lib64``, ``lib``; skipped with ``DF_1_NODEFLIB``).

A candidate counts only if it is an ELF file of the requester's class, byte order and machine, as
the loader skips others. As a last resort the directories of the root's ``ld.so.conf`` are tried:
the loader does not read it, but ``ldconfig`` would put them in the cache, and the cache we write
(``--ldconfig``) does. ``glibc-hwcaps`` subdirectories hold optional CPU-specific builds: every
variant that exists is kept, since the CPU that will run the result is not known.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field

from . import elf, ldcache
from .errors import SymlinkLoopError
from .fsview import RootFS, join, normalize

# (machine, class) -> multiarch triplet, $PLATFORM
_MULTIARCH: dict[tuple[str, int], tuple[bytes, bytes]] = {
    ("EM_X86_64", 64): (b"x86_64-linux-gnu", b"x86_64"),
    ("EM_X86_64", 32): (b"x86_64-linux-gnux32", b"x86_64"),
    ("EM_386", 32): (b"i386-linux-gnu", b"i686"),
    ("EM_AARCH64", 64): (b"aarch64-linux-gnu", b"aarch64"),
    ("EM_ARM", 32): (b"arm-linux-gnueabihf", b"v7l"),
    ("EM_PPC64", 64): (b"powerpc64le-linux-gnu", b"power8"),
    ("EM_S390", 64): (b"s390x-linux-gnu", b"z196"),
    ("EM_RISCV", 64): (b"riscv64-linux-gnu", b"riscv64"),
    ("EM_MIPS", 32): (b"mipsel-linux-gnu", b"mips"),
    ("EM_MIPS", 64): (b"mips64el-linux-gnuabi64", b"mips64"),
    ("EM_LOONGARCH", 64): (b"loongarch64-linux-gnu", b"loongarch64"),
}


@dataclass(frozen=True)
class LoadedObject:
    """An object in a process's load chain: the path it was opened by, and who loaded it."""

    path: bytes  # as the loader named it
    info: elf.ElfInfo
    loader: LoadedObject | None = None
    origin: bytes = b""  # directory for $ORIGIN


@dataclass(frozen=True)
class Found:
    path: bytes  # the path the loader opens
    how: str  # "RUNPATH", "ld.so.cache", ...
    system: bool  # found through the cache, ld.so.conf or a default dir (belongs in ld.so.cache)
    variants: tuple[bytes, ...] = ()  # glibc-hwcaps builds of the same library


@dataclass
class LibrarySearch:
    fs: RootFS
    _cache: dict[bytes, list[ldcache.CacheEntry]] | None = None
    _conf: list[bytes] | None = None
    _kinds: dict[bytes, elf.ElfKind | None] = field(default_factory=dict)
    _infos: dict[bytes, elf.ElfInfo | None] = field(default_factory=dict)
    _memo: dict[tuple[object, ...], Found | None] = field(default_factory=dict)

    # -- facts about the root --

    def cache_entries(self) -> dict[bytes, list[ldcache.CacheEntry]]:
        if self._cache is None:
            data = self.fs.read_file(b"/etc/ld.so.cache") or b""
            table: dict[bytes, list[ldcache.CacheEntry]] = {}
            for entry in ldcache.parse_cache(data):
                table.setdefault(entry.key, []).append(entry)
            self._cache = table
        return self._cache

    def conf_dirs(self) -> list[bytes]:
        if self._conf is None:
            self._conf = ldcache.parse_conf(self.fs)
        return self._conf

    def triplet(self, kind: elf.ElfKind) -> bytes | None:
        entry = _MULTIARCH.get((kind.machine, kind.elfclass))
        return entry[0] if entry else None

    def default_dirs(self, kind: elf.ElfKind) -> list[bytes]:
        dirs: list[bytes] = []
        triplet = self.triplet(kind)
        if triplet:
            dirs += [b"/lib/" + triplet, b"/usr/lib/" + triplet]
        dirs += [b"/lib64", b"/usr/lib64"] if kind.elfclass == 64 else [b"/lib32", b"/usr/lib32"]
        dirs += [b"/lib", b"/usr/lib"]
        return dirs

    def lib_token(self, kind: elf.ElfKind) -> bytes:
        """The value of ``$LIB``: Debian's multiarch dir when the root has it."""
        triplet = self.triplet(kind)
        if triplet and self.fs.is_dir(b"/usr/lib/" + triplet):
            return b"lib/" + triplet
        return b"lib64" if kind.elfclass == 64 else b"lib"

    def platform_token(self, kind: elf.ElfKind) -> bytes:
        entry = _MULTIARCH.get((kind.machine, kind.elfclass))
        return entry[1] if entry else b""

    # -- files --

    def kind_of(self, path: bytes) -> elf.ElfKind | None:
        """ELF identity of the regular file ``path`` leads to (None: missing, not ELF, ...)."""
        try:
            res = self.fs.resolve(path)
        except SymlinkLoopError:
            return None
        real = res.real
        if real not in self._kinds:
            st = self.fs.lstat(real) if res.exists else None
            ok = st is not None and stat.S_ISREG(st.st_mode)
            self._kinds[real] = elf.read_kind(self.fs.read_head(real, 64)) if ok else None
        return self._kinds[real]

    def info_of(self, real: bytes) -> elf.ElfInfo | None:
        """Parsed dynamic information of the ELF file at real path ``real`` (cached)."""
        if real not in self._infos:
            try:
                self._infos[real] = elf.parse(self.fs.host(real))
            except elf.ElfParseError:
                self._infos[real] = None
        return self._infos[real]

    # -- the search --

    def expand(self, entry: bytes, obj: LoadedObject) -> bytes | None:
        """Expand $ORIGIN, $LIB and $PLATFORM in one RPATH/RUNPATH entry (None: unusable)."""
        kind = obj.info.kind
        for token, value in (
            (b"ORIGIN", obj.origin),
            (b"LIB", self.lib_token(kind)),
            (b"PLATFORM", self.platform_token(kind)),
        ):
            entry = entry.replace(b"${" + token + b"}", value).replace(b"$" + token, value)
        if not entry.startswith(b"/"):
            return None  # relative to the process's cwd: nothing static can say
        return normalize(entry)

    def find(self, name: bytes, obj: LoadedObject) -> Found | None:
        kind = obj.info.kind
        if b"/" in name:
            return Found(name, "path in DT_NEEDED", False) if self._usable(name, kind) else None

        searches: list[tuple[str, list[bytes]]] = []
        if not obj.info.runpath:
            chain: LoadedObject | None = obj
            while chain is not None:
                if chain.info.rpath and not chain.info.runpath:
                    dirs = [d for d in (self.expand(e, chain) for e in chain.info.rpath) if d]
                    searches.append((f"RPATH of {chain.path.decode(errors='replace')}", dirs))
                chain = chain.loader
        if obj.info.runpath:
            dirs = [d for d in (self.expand(e, obj) for e in obj.info.runpath) if d]
            searches.append(("RUNPATH", dirs))

        key = (name, kind, obj.info.nodeflib, tuple((h, tuple(d)) for h, d in searches))
        if key in self._memo:
            return self._memo[key]
        found = self._search(name, kind, obj.info.nodeflib, searches)
        self._memo[key] = found
        return found

    def _search(
        self,
        name: bytes,
        kind: elf.ElfKind,
        nodeflib: bool,
        searches: list[tuple[str, list[bytes]]],
    ) -> Found | None:
        for how, dirs in searches:
            for d in dirs:
                hit = self._in_dir(d, name, kind, how, system=False)
                if hit:
                    return hit
        if not nodeflib:
            variants: list[bytes] = []
            for entry in self.cache_entries().get(name, []):
                if self._usable(entry.value, kind):
                    if entry.hwcap & ldcache.HWCAP_EXTENSION_BIT:
                        variants.append(entry.value)
                    else:
                        return Found(entry.value, "ld.so.cache", True, tuple(variants))
            for d in self.default_dirs(kind):
                hit = self._in_dir(d, name, kind, "default directory", system=True)
                if hit:
                    return hit
        for d in self.conf_dirs():
            hit = self._in_dir(d, name, kind, "ld.so.conf (not in the root's ld.so.cache)", True)
            if hit:
                return hit
        return None

    def _in_dir(
        self, directory: bytes, name: bytes, kind: elf.ElfKind, how: str, system: bool
    ) -> Found | None:
        candidate = join(directory, name)
        if not self._usable(candidate, kind):
            return None
        return Found(candidate, how, system, tuple(self._hwcaps_variants(directory, name, kind)))

    def _hwcaps_variants(self, directory: bytes, name: bytes, kind: elf.ElfKind) -> list[bytes]:
        hw = join(directory, b"glibc-hwcaps")
        res = self.fs.resolve(hw)
        if not res.exists:
            return []
        out = []
        for sub in self.fs.listdir(res.real):
            candidate = join(join(hw, sub), name)
            if self._usable(candidate, kind):
                out.append(candidate)
        return out

    def _usable(self, path: bytes, kind: elf.ElfKind) -> bool:
        return self.kind_of(path) == kind
