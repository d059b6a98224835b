"""The only way the minimizer reads a filesystem: a view of one root directory.

Paths given to and returned by :class:`RootFS` are absolute *inside the root* (``b"/usr/bin/ls"``)
and are bytes, because Linux paths are bytes. Resolution follows the kernel's rules as a process
chrooted into the root would see them: an absolute symlink target starts again at the root, ``..``
never climbs above the root, ``..`` after a symlinked directory goes to the parent of the link's
target. Nothing outside the root is ever read, whatever the links in it say.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass

from .errors import RootError, SymlinkLoopError, show

MAX_SYMLINKS = 40  # the kernel's limit before ELOOP


def normalize(path: bytes) -> bytes:
    """Make a path absolute and drop empty and ``.`` components (``..`` is kept: it needs links)."""
    parts = [p for p in path.split(b"/") if p and p != b"."]
    return b"/" + b"/".join(parts)


def parent(path: bytes) -> bytes:
    head = path.rsplit(b"/", 1)[0]
    return head or b"/"


def join(directory: bytes, name: bytes) -> bytes:
    return directory + name if directory == b"/" else directory + b"/" + name


def ancestors(path: bytes) -> list[bytes]:
    """``/a/b/c`` -> ``[/, /a, /a/b]``."""
    out = [b"/"]
    parts = path.strip(b"/").split(b"/")
    for i in range(1, len(parts)):
        out.append(b"/" + b"/".join(parts[:i]))
    return out if path != b"/" else []


def is_under(path: bytes, prefix: bytes) -> bool:
    """Whole-component prefix test: ``/tmp`` covers ``/tmp/x`` but not ``/tmpfoo``."""
    if prefix == b"/":
        return True
    return path == prefix or path.startswith(prefix + b"/")


@dataclass(frozen=True)
class Resolution:
    """Where a path leads inside the root.

    ``real``: the path with every symlink resolved (the final one only if it was followed).
    ``links``: every symlink met on the way, as paths whose directory part is already real; each
    must be kept as a symlink for the path to keep working. ``exists``: whether ``real`` exists.
    """

    real: bytes
    links: tuple[bytes, ...]
    exists: bool


def _rest(path: bytes, pending: list[bytes]) -> bytes:
    """``path`` followed by the components still pending (kept in reverse order)."""
    for comp in reversed(pending):
        path = join(path, comp)
    return path


class RootFS:
    """Read-only view of a root filesystem directory, with cached metadata lookups."""

    def __init__(self, root: str | bytes) -> None:
        broot = os.fsencode(root)
        try:
            real = os.path.realpath(broot)
            st = os.stat(real)
        except OSError as exc:
            raise RootError(f"source root {show(broot)}: {exc.strerror}") from exc
        if not stat.S_ISDIR(st.st_mode):
            raise RootError(f"source root {show(broot)} is not a directory")
        self.root: bytes = real.rstrip(b"/")  # b"" for the host's "/"
        self._lstat: dict[bytes, os.stat_result | None] = {}
        self._readlink: dict[bytes, bytes] = {}
        self._resolved: dict[tuple[bytes, bool], Resolution] = {}

    @property
    def is_host_root(self) -> bool:
        return self.root == b""

    def host(self, path: bytes) -> bytes:
        """The host path of a path inside the root. ``path`` must be normalized and absolute."""
        return self.root + path if path != b"/" else (self.root or b"/")

    def lstat(self, path: bytes) -> os.stat_result | None:
        try:
            return self._lstat[path]
        except KeyError:
            pass
        try:
            st: os.stat_result | None = os.lstat(self.host(path))
        except OSError:
            st = None
        self._lstat[path] = st
        return st

    def readlink(self, path: bytes) -> bytes:
        try:
            return self._readlink[path]
        except KeyError:
            target = os.readlink(self.host(path))
            self._readlink[path] = target
            return target

    def resolve(self, path: bytes, *, follow: bool = True) -> Resolution:
        """Resolve ``path`` inside the root, recording every symlink on the way.

        Raises :class:`SymlinkLoopError` after 40 links. A missing component stops the walk: the
        result has ``exists=False`` and ``real`` is what the path would be.
        """
        key = (path, follow)
        cached = self._resolved.get(key)
        if cached is not None:
            return cached
        result = self._walk(path, follow)
        self._resolved[key] = result
        return result

    def _walk(self, path: bytes, follow: bool) -> Resolution:
        pending = [p for p in reversed(path.split(b"/")) if p and p != b"."]
        current = b"/"
        links: list[bytes] = []
        hops = 0
        while pending:
            comp = pending.pop()
            if comp == b"..":
                current = parent(current)
                continue
            candidate = join(current, comp)
            st = self.lstat(candidate)
            if st is None:
                return Resolution(_rest(candidate, pending), tuple(links), False)
            is_last = not pending
            if stat.S_ISLNK(st.st_mode) and (follow or not is_last):
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise SymlinkLoopError(
                        f"{show(path)}: too many levels of symbolic links (a symlink loop?)"
                    )
                links.append(candidate)
                target = self.readlink(candidate)
                if target.startswith(b"/"):
                    current = b"/"
                pending.extend(p for p in reversed(target.split(b"/")) if p and p != b".")
                continue
            if not is_last and not stat.S_ISDIR(st.st_mode):
                return Resolution(_rest(candidate, pending), tuple(links), False)
            current = candidate
        return Resolution(current, tuple(links), True)

    def stat(self, path: bytes) -> os.stat_result | None:
        """Metadata of what ``path`` leads to (symlinks followed inside the root)."""
        try:
            res = self.resolve(path)
        except SymlinkLoopError:
            return None
        return self.lstat(res.real) if res.exists else None

    def is_file(self, path: bytes) -> bool:
        st = self.stat(path)
        return st is not None and stat.S_ISREG(st.st_mode)

    def is_program(self, path: bytes) -> bool:
        """A regular file with an execute bit: something the tracer can run."""
        st = self.stat(path)
        return st is not None and stat.S_ISREG(st.st_mode) and bool(st.st_mode & 0o111)

    def is_dir(self, path: bytes) -> bool:
        st = self.stat(path)
        return st is not None and stat.S_ISDIR(st.st_mode)

    def read_head(self, real: bytes, size: int) -> bytes:
        """The first ``size`` bytes of a regular file given by its real path ('' if unreadable)."""
        try:
            fd = os.open(self.host(real), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return b""
        try:
            return os.pread(fd, size, 0)
        except OSError:
            return b""
        finally:
            os.close(fd)

    def read_file(self, path: bytes, limit: int = 16 << 20) -> bytes | None:
        """Whole content of a (small) file, symlinks resolved inside the root; None if absent."""
        try:
            res = self.resolve(path)
        except SymlinkLoopError:
            return None
        if not res.exists:
            return None
        st = self.lstat(res.real)
        if st is None or not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        try:
            with open(self.host(res.real), "rb") as fh:
                return fh.read(limit)
        except OSError:
            return None

    def glob(self, pattern: bytes) -> list[bytes]:
        """Paths matching ``pattern`` (wildcards in any component), resolved inside the root."""
        matches = [b"/"]
        for comp in pattern.strip(b"/").split(b"/"):
            if not any(c in comp for c in b"*?["):
                matches = [join(m, comp) for m in matches]
                continue
            found: list[bytes] = []
            for base in matches:
                res = self.resolve(base)
                if res.exists:
                    found += [
                        join(base, n)
                        for n in self.listdir(res.real)
                        if fnmatch.fnmatchcase(n, comp)
                    ]
            matches = found
        return [m for m in matches if self.stat(m) is not None]  # never a host lookup

    def listdir(self, real: bytes) -> list[bytes]:
        try:
            return sorted(os.listdir(self.host(real)))
        except OSError:
            return []
