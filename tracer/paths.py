"""Exact path resolution for a stopped tracee, and the outcome of a lookup learned at entry.

Paths are handled as *host* paths (what the tracer sees: ``/proc/PID/cwd``, ``/proc/PID/fd/N``
and ``/proc/PID/root`` read from the tracer's root) and reported relative to the traced root
(``/`` or the overlay a sandbox chroots into), so a tracee that chroots further is still mapped
back. Directory parts are resolved the way the kernel resolves them for that process: inside its
own root (``openat2(RESOLVE_IN_ROOT)``), absolute symlinks and ``..`` clamped there.

Lookups whose outcome cannot change between the syscall's entry and its exit (every read-only
lookup) are answered here, at the entry stop, with a stat of the same path in the same root: the
tracee then runs on without a second stop. The exact result matters for the minimizer only as
"the path exists (as what)"; writes and execs still wait for the kernel's answer.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from .linux import O_PATH, open_in_root

_MAX_CACHED = 1 << 16
_KERNEL_TREES = (b"/proc", b"/sys", b"/dev")


def readlink(path: bytes) -> bytes | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def read_small(path: str) -> bytes | None:
    """A small /proc file (cmdline, status), or None when the process is gone."""
    try:
        with open(path, "rb") as fh:
            return fh.read(65536)
    except OSError:
        return None


def _lexical(path: bytes) -> bytes:
    """``path`` normalized without looking at the disk (only for paths that do not exist)."""
    return os.path.normpath(path) if path.startswith(b"/") else b"/" + path


def is_kernel_path(path: bytes) -> bool:
    """Under /proc, /sys or /dev: pseudo files and devices, whose lookups and opens only the
    kernel can answer for that process (/proc/self, a terminal that is not there: ENXIO)."""
    if path[:4] not in (b"/pro", b"/sys", b"/dev"):
        return False  # the common case, without the loop
    return any(path == t or path.startswith(t + b"/") for t in _KERNEL_TREES)


class Resolver:
    """Resolution state shared by every tracee of one run (caches, root directory fds)."""

    def __init__(self, root: bytes = b"/") -> None:
        self.prefix = b"" if root.rstrip(b"/") == b"" else root.rstrip(b"/")
        self._root_fds: dict[bytes, int] = {}
        self._dirs: dict[tuple[bytes, bytes], bytes] = {}

    def close(self) -> None:
        for fd in self._root_fds.values():
            os.close(fd)
        self._root_fds.clear()

    def forget_dirs(self) -> None:
        """Directories were created or renamed: drop cached resolutions of missing ones."""
        self._dirs.clear()

    # -- coordinates -------------------------------------------------------------------------

    def report(self, host: bytes) -> bytes | None:
        """The path as seen inside the traced root, or None when it is outside (a host fd)."""
        if not self.prefix:
            return host
        if host == self.prefix:
            return b"/"
        if host.startswith(self.prefix) and host[len(self.prefix) : len(self.prefix) + 1] == b"/":
            return host[len(self.prefix) :]
        return None

    @staticmethod
    def process_root(pid: int) -> bytes:
        """The host path of the tracee's root directory; ``b""`` for ``/``."""
        root = readlink(f"/proc/{pid}/root".encode()) or b"/"
        return b"" if root == b"/" else root

    def _root_fd(self, proot: bytes) -> int:
        fd = self._root_fds.get(proot)
        if fd is None:
            fd = self._root_fds[proot] = os.open(
                proot or b"/", O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
            )
        return fd

    # -- resolution --------------------------------------------------------------------------

    def absolute(self, proot: bytes, base: bytes | None, raw: bytes) -> bytes:
        """The host path ``raw`` names: from ``base`` (a host directory) when relative, inside
        ``proot`` when absolute; its directory part resolved, its last component kept."""
        if raw.startswith(b"/"):
            inner = raw
        else:
            assert base is not None
            if proot and not (base == proot or base.startswith(proot + b"/")):
                proot = b""  # a cwd outside the process's root (chroot without chdir)
            if raw and b"/" not in raw and raw not in (b".", b".."):  # one name (a tree walk)
                directory = self.directory(proot, base[len(proot) :].rstrip(b"/") or b"/")
                return proot + (directory if directory != b"/" else b"") + b"/" + raw
            inner = base[len(proot) :] + b"/" + raw
        head, _, name = inner.rstrip(b"/").rpartition(b"/")
        if name in (b".", b"..", b""):
            return proot + self.directory(proot, inner.rstrip(b"/") or b"/")
        directory = self.directory(proot, head or b"/")
        return proot + (directory if directory != b"/" else b"") + b"/" + name

    def directory(self, proot: bytes, inner: bytes) -> bytes:
        """``inner`` (absolute inside ``proot``) with every symlink and ``..`` resolved."""
        key = (proot, inner)
        found = self._dirs.get(key)
        if found is None:
            if len(self._dirs) >= _MAX_CACHED:
                self._dirs.clear()
            found = self._dirs[key] = self._resolve(proot, inner)
        return found

    def known_directory(self, proot: bytes, inner: bytes) -> None:
        """``inner`` is a real directory (the kernel opened it with O_DIRECTORY | O_NOFOLLOW,
        its parent resolved): no lstat for it when a name in it is resolved (find opens 16k)."""
        if len(self._dirs) < _MAX_CACHED:
            self._dirs.setdefault((proot, inner), inner)

    def _resolve(self, proot: bytes, inner: bytes) -> bytes:
        if inner == b"/" or is_kernel_path(inner):
            return _lexical(inner)  # /proc/self is the tracee's, not ours: never follow here
        head, _, name = inner.rstrip(b"/").rpartition(b"/")
        parent = self._dirs.get((proot, head or b"/"))
        if parent is not None and name not in (b"", b".", b".."):
            # a tree walk: the parent is known, and a real directory (not a link) below it is
            # the parent's path and its name: one lstat instead of an open and a readlink
            below = (parent if parent != b"/" else b"") + b"/" + name
            with contextlib.suppress(OSError):
                if stat.S_ISDIR(os.lstat(proot + below).st_mode):
                    return below
        try:
            fd = open_in_root(self._root_fd(proot), inner)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                return _lexical(inner)
            head, _, name = inner.rstrip(b"/").rpartition(b"/")
            parent = self.directory(proot, head or b"/")
            if name == b"..":
                return _lexical(parent + b"/..")
            return _lexical(parent + b"/" + name)
        try:
            real = os.readlink(f"/proc/self/fd/{fd}".encode())
        finally:
            os.close(fd)
        if proot:
            real = real[len(proot) :] if real.startswith(proot + b"/") else b"/"
        return real

    def is_executable(self, inner: bytes) -> bool:
        """A regular file at ``inner`` (inside the traced root) that may be executed."""
        try:
            fd = open_in_root(self._root_fd(self.prefix), inner)
        except OSError:
            return False
        try:
            proc = b"/proc/self/fd/%d" % fd
            return stat.S_ISREG(os.stat(proc).st_mode) and os.access(proc, os.X_OK)
        finally:
            os.close(fd)

    # -- outcome at entry --------------------------------------------------------------------

    def outcome(
        self,
        proot: bytes,
        host: bytes,
        *,
        follow: bool,
        want_dir: bool,
        refuse_link: bool,
        want_link: bool = False,
    ) -> int:
        """The errno a lookup of ``host`` gets now (0: it exists, as a directory if wanted;
        ``refuse_link``: a symlink is ELOOP, as for open(O_NOFOLLOW); ``want_link``: anything
        else is EINVAL, as for readlink)."""
        try:
            if not follow:
                mode = os.lstat(host).st_mode
                if refuse_link and stat.S_ISLNK(mode):
                    return errno.ELOOP
                if want_link and not stat.S_ISLNK(mode):
                    return errno.EINVAL  # readlink of something that is not a symlink
            elif not proot:
                mode = os.stat(host).st_mode
            else:  # follow symlinks inside the process's root, never into the host's
                fd = open_in_root(self._root_fd(proot), host[len(proot) :] or b"/")
                try:
                    mode = os.fstat(fd).st_mode
                finally:
                    os.close(fd)
        except OSError as exc:
            return exc.errno or errno.ENOENT
        if want_dir and not stat.S_ISDIR(mode):
            return errno.ELOOP if stat.S_ISLNK(mode) else errno.ENOTDIR
        return 0
