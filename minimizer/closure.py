"""The static closure: from what the user asked for to every path it needs, with reasons.

Nothing from the root is executed. For every kept path the closure keeps its parent directories,
every symlink on the way (as a symlink), the target of a kept symlink, the ELF interpreter and
libraries of an ELF file (:mod:`.libsearch`), and the interpreter of a script (:mod:`.scripts`).
"""

from __future__ import annotations

import logging
import os
import re
import stat
import time
from collections import deque
from dataclasses import dataclass, field

from . import ldcache, scripts
from .elf import ELF_MAGIC, ElfInfo
from .errors import DanglingSymlinkError, NotInRootError, SymlinkLoopError, show
from .fsview import RootFS, is_under, join, normalize, parent
from .libsearch import LibrarySearch, LoadedObject
from .modes import Selection
from .plan import Plan, Synthetic

log = logging.getLogger(__name__)

DEFAULT_PATH = (b"/usr/local/sbin", b"/usr/local/bin", b"/usr/sbin", b"/usr/bin", b"/sbin", b"/bin")
NEVER_COPIED = (b"/proc", b"/sys", b"/dev")
MERGED_USR_LINKS = (b"/bin", b"/sbin", b"/lib", b"/lib32", b"/lib64", b"/libx32")
_GLIBC_LOADER = re.compile(rb"(ld-linux.*\.so\.\d+|ld64\.so\.\d+|ld\.so\.1)")


@dataclass
class SystemLib:
    """A library found where ldconfig looks (cache, default dirs, ld.so.conf)."""

    names: set[bytes]
    info: ElfInfo


@dataclass
class Options:
    excludes: list[bytes] = field(default_factory=list)
    includes: list[bytes] = field(default_factory=list)
    include_folders: bool = False
    # Paths that must never enter the result, whatever is asked (e.g. the output file itself).
    hidden: list[bytes] = field(default_factory=list)
    path: tuple[bytes, ...] = DEFAULT_PATH


class Closure:
    def __init__(self, fs: RootFS, options: Options | None = None) -> None:
        self.fs = fs
        self.options = options or Options()
        self.plan = Plan()
        self.search = LibrarySearch(fs)
        self.system_libs: dict[bytes, SystemLib] = {}
        self.glibc = False
        self._analyzed: set[bytes] = set()
        self._walked: set[bytes] = set()
        self._excludes = self._with_real(self.options.excludes)
        self._includes = self._with_real(self.options.includes)

    def _with_real(self, prefixes: list[bytes]) -> list[bytes]:
        """Each prefix as given and with its symlinks resolved (``/lib/x`` is ``/usr/lib/x``)."""
        out: list[bytes] = []
        for p in prefixes:
            p = normalize(p)
            out.append(p)
            try:
                real = self.fs.resolve(p, follow=False).real
            except SymlinkLoopError:
                continue
            if real != p:
                out.append(real)
        return out

    # -- what the user asks for --

    def lookup(self, name: bytes) -> bytes | None:
        """The first executable regular file called ``name`` on the root's PATH."""
        for d in self.options.path:
            candidate = join(d, name)
            st = self.fs.stat(candidate)
            if st is not None and stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
                return candidate
        return None

    def add_executable(self, name: bytes, reason: str) -> bytes:
        """Keep a program named by the user: a name looked up on PATH, or a path."""
        if b"/" not in name:
            found = self.lookup(name)
            if found is None:
                dirs = ":".join(os.fsdecode(d) for d in self.options.path)
                raise NotInRootError(f"{show(name)}: command not found in the root (PATH={dirs})")
            name = found
        self.add_path(name, reason)
        return name

    def add_path(self, path: bytes, reason: str, *, recursive: bool = True) -> None:
        """Keep a file or folder named by the user; folders are kept whole. Wins over excludes."""
        path = normalize(path)
        self._includes.extend(self._with_real([path]))
        self._keep(path, reason, explicit=True, recursive=recursive)

    # -- the walk --

    def _hidden(self, path: bytes) -> bool:
        return any(is_under(path, p) for p in NEVER_COPIED) or any(
            is_under(path, h) for h in self.options.hidden
        )

    def excluded(self, path: bytes) -> bool:
        """The most specific prefix decides; an include wins over an exclude of the same path.

        ``-I /opt -e /opt/app`` leaves ``/opt/app`` out; ``-e /opt -I /opt/app/f`` keeps ``f``.
        ``/tmp``'s contents are left out unless included.
        """
        if self._hidden(path):
            return True
        inc = max((len(i) for i in self._includes if is_under(path, i)), default=-1)
        exc = max((len(e) for e in (*self._excludes, b"/tmp") if is_under(path, e)), default=-1)
        return exc > inc

    def _keep(
        self,
        path: bytes,
        reason: str,
        *,
        follow: bool = True,
        explicit: bool = False,
        recursive: bool = False,
        analyze: bool = True,
        missing_ok: bool = False,
    ) -> bytes | None:
        """Keep ``path`` as named; returns the real path kept (None if skipped or missing)."""
        if self._hidden(path):
            if explicit:
                self._warn(f"{show(path)}: /proc, /sys and /dev are never copied")
            return None
        try:
            res = self.fs.resolve(path, follow=follow)
        except SymlinkLoopError as exc:
            if explicit:
                raise
            self._warn(f"{exc} ({reason}); skipped")
            return None
        if not res.exists:
            if explicit:
                if res.links:
                    raise DanglingSymlinkError(
                        f"{show(path)}: symbolic link to {show(res.real)}, which does not exist in "
                        "the root (absolute links are resolved inside the root, never on the host)"
                    )
                raise NotInRootError(f"{show(path)}: no such file or directory in the root")
            if not missing_ok:
                self._warn(f"{show(path)} ({reason}) does not exist in the root; skipped")
            return None
        real = res.real
        if self.excluded(real) and not explicit:
            log.debug("excluded: %s (%s)", show(real), reason)
            return None
        for link in res.links:
            self.plan.keep(link, reason if link == path else f"symlink on the way to {show(path)}")
        is_new = self.plan.keep(real, reason if real == path else f"{reason}, through {show(path)}")
        st = self.fs.lstat(real)
        assert st is not None
        if stat.S_ISLNK(st.st_mode):  # only when follow=False: keep what it points to as well
            if is_new:
                self._keep(path, f"target of symlink {show(path)}", analyze=analyze)
        elif stat.S_ISDIR(st.st_mode):
            if recursive and real not in self._walked:
                self._walked.add(real)
                for child in self.fs.listdir(real):
                    cpath = join(real, child)
                    if not self.excluded(cpath):
                        self._keep(cpath, f"in {show(real)}", follow=False, recursive=True)
        elif stat.S_ISREG(st.st_mode) and analyze:
            self._analyze(path, real)
        return real

    def _analyze(self, named: bytes, real: bytes) -> None:
        if real in self._analyzed:
            return
        self._analyzed.add(real)
        head = self.fs.read_head(real, scripts.SHEBANG_MAX)
        if head.startswith(ELF_MAGIC):
            info = self.search.info_of(real)
            if info is None:
                self._warn(f"{show(real)}: unreadable ELF headers; its libraries are unknown")
            elif info.is_dynamic:
                self._elf(named, real, info)
        elif head.startswith(b"#!"):
            shebang = scripts.parse_shebang(head)
            if shebang is not None:
                self._script(named, real, shebang)

    def _elf(self, named: bytes, real: bytes, info: ElfInfo) -> None:
        if info.interp:
            self._keep(info.interp, f"ELF interpreter of {show(named)}")
            if _GLIBC_LOADER.fullmatch(info.interp.rsplit(b"/", 1)[-1]):
                self.glibc = True
        loaded: set[bytes] = {info.soname} if info.soname else set()
        queue = deque([LoadedObject(named, info, None, parent(real))])
        while queue:
            obj = queue.popleft()
            for name in obj.info.needed:
                if name in loaded:
                    continue
                loaded.add(name)
                found = self.search.find(name, obj)
                if found is None:
                    self.plan.missing_libraries.append((name, obj.path))
                    self._warn(
                        f"{show(name)}: library not found in the root (DT_NEEDED of "
                        f"{show(obj.path)})"
                    )
                    continue
                why = f"DT_NEEDED of {show(obj.path)} ({found.how})"
                lreal = self._keep(found.path, why, analyze=False)
                for variant in found.variants:
                    self._keep(variant, f"glibc-hwcaps build of {show(found.path)}", analyze=False)
                if lreal is None:
                    continue
                linfo = self.search.info_of(lreal)
                if linfo is None:
                    self._warn(f"{show(lreal)}: unreadable ELF headers; its libraries are unknown")
                    continue
                if linfo.soname:
                    loaded.add(linfo.soname)
                if found.system:
                    lib = self.system_libs.setdefault(found.path, SystemLib(set(), linfo))
                    lib.names.add(name)
                    if linfo.soname:
                        lib.names.add(linfo.soname)
                self._analyzed.add(lreal)  # its own dependencies are followed right here
                queue.append(LoadedObject(found.path, linfo, obj, parent(found.path)))

    def _script(self, named: bytes, real: bytes, shebang: scripts.Shebang) -> None:
        interp = shebang.interpreter
        if not interp.startswith(b"/"):
            self._warn(f"{show(named)}: relative interpreter {show(interp)} in #! line; ignored")
            return
        target = self._keep(interp, f"interpreter of script {show(named)}")
        command = shebang.command
        if command is not None:
            path = command if b"/" in command else self.lookup(command)
            if path is None:
                self._warn(f"{show(named)}: {show(command)} (run by env) not found on PATH")
                return
            target = self._keep(path, f"program run by env for script {show(named)}")
        if target is not None and self.options.include_folders:
            for pattern in scripts.module_folder_patterns(target):
                for folder in filter(self.fs.is_dir, self.fs.glob(pattern)):
                    self._includes.append(folder)
                    self._keep(
                        folder,
                        f"module folder of {show(target)} (scripts:includefolders)",
                        recursive=True,
                    )

    def add_traced(self, selection: Selection) -> None:
        """Keep what tracing found (a mode's :class:`Selection`); excludes apply, nothing is fatal.

        Traced paths that no longer exist (temporary files, failed creations) are skipped quietly.
        """
        for path, why in sorted(selection.files.items()):
            self._keep(path, why, missing_ok=True)
        for path, why in sorted(selection.dirs.items()):
            self._keep(path, why, missing_ok=True)
        for path, why in sorted(selection.whole.items()):
            self._keep(path, why, recursive=True, missing_ok=True)

    def _warn(self, message: str) -> None:
        self.plan.warnings.append(message)
        log.warning("%s", message)

    # -- the finishing touches --

    def finish(self, *, ldconfig: bool = True) -> Plan:
        now = float(os.environ.get("SOURCE_DATE_EPOCH", time.time()))
        for link in MERGED_USR_LINKS:
            st = self.fs.lstat(link)
            if st is not None and stat.S_ISLNK(st.st_mode):
                target = self.fs.readlink(link)
                if target.lstrip(b"/").startswith(b"usr/"):
                    self._keep(link, "merged-/usr link", follow=False)
        self._make_dir(b"/tmp", 0o1777, "created empty, world-writable", now)
        for d in NEVER_COPIED:
            self._make_dir(d, None, "mount point (never copied)", now)
        if ldconfig and self.glibc:
            self._ldconfig(now)
        return self.plan

    def _make_dir(self, path: bytes, mode: int | None, reason: str, now: float) -> None:
        st = self.fs.lstat(path)
        if mode is None:
            mode = (
                stat.S_IMODE(st.st_mode) if st is not None and stat.S_ISDIR(st.st_mode) else 0o755
            )
        mtime = st.st_mtime if st is not None else now
        self.plan.make(path, reason, Synthetic(stat.S_IFDIR | mode, None, mtime))

    def _ldconfig(self, now: float) -> None:
        """An ld.so.conf and ld.so.cache for the kept libraries, as ``ldconfig -r`` would make."""
        root_flags = {
            (e.key, e.value): e.flags
            for entries in self.search.cache_entries().values()
            for e in entries
        }
        entries: list[ldcache.CacheEntry] = []
        dirs: list[bytes] = []
        for path, lib in sorted(self.system_libs.items()):
            if path not in self.plan and self.fs.resolve(path).real not in self.plan:
                continue
            flags = ldcache.cache_flags(lib.info.kind.machine, lib.info.kind.elfclass)
            for name in sorted(lib.names):
                entries.append(ldcache.CacheEntry(name, path, root_flags.get((name, path), flags)))
            d = parent(path)
            if d not in dirs:
                dirs.append(d)
        defaults: set[bytes] = set()
        for lib in self.system_libs.values():
            defaults.update(self.search.default_dirs(lib.info.kind))
        conf = b"# written by minicon: the library directories of this minimized tree\n"
        # ld.so.conf splits on blanks, commas and colons: such directories stay in the cache only.
        listed = [d for d in dirs if d not in defaults and not any(c in d for c in b" \t\n,:=")]
        conf += b"".join(d + b"\n" for d in listed)
        self.plan.make(
            b"/etc/ld.so.conf",
            "generated by --ldconfig",
            Synthetic(stat.S_IFREG | 0o644, conf, now),
        )
        self.plan.make(
            b"/etc/ld.so.cache",
            "generated by --ldconfig",
            Synthetic(stat.S_IFREG | 0o644, ldcache.build_cache(entries), now),
        )
