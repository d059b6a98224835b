"""Writers: the plan as a tar stream or as a root directory, with all metadata.

Both keep modes, numeric owners, mtimes, hard links, device nodes and extended attributes (file
capabilities such as ``security.capability`` on ping). Owner *names* in the tar come from the
source root's ``/etc/passwd`` and ``/etc/group``, never from the host's.

Failures to read a source file are collected and raised as one :class:`CopyError` at the end;
:func:`write_tar_file` and :func:`write_rootfs` then remove what they started, so a failed run
leaves no half-written output behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from .errors import CopyError, OutputError, show
from .fsview import RootFS
from .plan import Plan
from .sources import Item, Source


@dataclass
class Stats:
    entries: int = 0
    bytes: int = 0


# -- owner names --


def _names(data: bytes | None) -> dict[int, str]:
    out: dict[int, str] = {}
    for line in (data or b"").splitlines():
        fields = line.split(b":")
        if len(fields) >= 3 and fields[2].isdigit():
            out.setdefault(int(fields[2]), fields[0].decode("utf-8", "surrogateescape"))
    return out


@dataclass
class Owners:
    users: dict[int, str]
    groups: dict[int, str]

    @classmethod
    def of_root(cls, fs: RootFS) -> Owners:
        return cls(_names(fs.read_file(b"/etc/passwd")), _names(fs.read_file(b"/etc/group")))


# -- tar --


class _TarInfo(tarfile.TarInfo):
    """PAX records written as raw bytes, without ``hdrcharset=BINARY``.

    Python marks a header holding non-UTF-8 bytes (a file name, a capability value) with
    ``hdrcharset=BINARY``, a keyword GNU tar does not know and warns about on every such file.
    GNU tar itself writes such values raw; so do we. Python's reader still decodes them (it falls
    back to the archive's encoding with surrogateescape).
    """

    @classmethod
    def _create_pax_generic_header(
        cls, pax_headers: dict[str, str], type: bytes, encoding: str
    ) -> bytes:
        records = bytearray()
        for keyword, value in pax_headers.items():
            key = keyword.encode("utf-8")
            val = value.encode("utf-8", "surrogateescape")
            length = len(key) + len(val) + 3  # " " "=" "\n"
            size = length + len(str(length))
            if len(str(size)) != len(str(length)):
                size = length + len(str(size))
            records += b"%d %s=%s\n" % (size, key, val)
        info = {
            "name": "././@PaxHeader",
            "type": type,
            "size": len(records),
            "magic": tarfile.POSIX_MAGIC,
        }
        # _create_header and _create_payload are tarfile's own (untyped) helpers.
        make_header: Any = getattr(cls, "_create_header")  # noqa: B009
        make_payload: Any = getattr(cls, "_create_payload")  # noqa: B009
        return bytes(make_header(info, tarfile.USTAR_FORMAT, "ascii", "replace")) + bytes(
            make_payload(bytes(records))
        )


def _tar_name(path: bytes) -> str:
    return "." if path == b"/" else "." + os.fsdecode(path)


def _tarinfo(item: Item, owners: Owners) -> tarfile.TarInfo:
    ti = _TarInfo(_tar_name(item.path))
    ti.mode = stat.S_IMODE(item.mode)
    ti.uid, ti.gid = item.uid, item.gid
    ti.uname = owners.users.get(item.uid, "")
    ti.gname = owners.groups.get(item.gid, "")
    ti.mtime = int(item.mtime)
    mode = item.mode
    if item.hardlink_to is not None:
        ti.type = tarfile.LNKTYPE
        ti.linkname = _tar_name(item.hardlink_to)
    elif stat.S_ISREG(mode):
        ti.type = tarfile.REGTYPE
        ti.size = item.size
    elif stat.S_ISDIR(mode):
        ti.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(mode):
        ti.type = tarfile.SYMTYPE
        ti.linkname = os.fsdecode(item.linkname)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(item.rdev), os.minor(item.rdev)
    elif stat.S_ISFIFO(mode):
        ti.type = tarfile.FIFOTYPE
    if item.xattrs:
        ti.pax_headers = {
            "SCHILY.xattr." + name: value.decode("utf-8", "surrogateescape")
            for name, value in item.xattrs
        }
    return ti


_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE
CHUNK = 1 << 20


def iter_tar(
    plan: Plan, fs: RootFS, stats: Stats | None = None, chunk: int = CHUNK
) -> Iterator[bytes]:
    """The plan as a PAX tar, in pieces of about ``chunk`` bytes, in constant memory.

    Headers come from tarfile's own encoder (``TarInfo.tobuf``); file data is read straight
    from the source, ``chunk`` at a time, with no intermediate copy (tarfile's stream mode copies
    each megabyte many times over). Files that cannot be read are left out and raised as one
    :class:`CopyError` after the rest; a file that shrinks while read raises at once.
    """
    source = Source(fs, plan)
    owners = Owners.of_root(fs)
    stats = stats if stats is not None else Stats()
    buf = bytearray()
    written = 0
    for item in source.items():
        ti = _tarinfo(item, owners)
        if ti.type != tarfile.REGTYPE:
            buf += ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        elif item.content is not None:
            ti.size = len(item.content)
            buf += ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            buf += item.content + _padding(ti.size)
            stats.bytes += ti.size
        else:
            opened = _open_regular(item, source)
            if opened is None:
                continue  # could not be read: reported in source.failures
            fd, ti.size = opened
            try:
                buf += ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
                remaining = ti.size
                while remaining:
                    data = os.read(fd, min(chunk, remaining))
                    if not data:  # the file shrank half-way
                        message = f"shrank while being copied ({remaining} bytes missing)"
                        raise CopyError([*source.failures, (item.path, message)])
                    remaining -= len(data)
                    if len(data) >= 1 << 16:  # big: hand it over as it is
                        if buf:
                            written += len(buf)
                            yield bytes(buf)
                            buf.clear()
                        written += len(data)
                        yield data
                    else:
                        buf += data
                buf += _padding(ti.size)
            finally:
                os.close(fd)
            stats.bytes += ti.size
        stats.entries += 1
        if len(buf) >= chunk:
            written += len(buf)
            yield bytes(buf)
            buf.clear()
    buf += bytes(2 * _BLOCK)  # the end-of-archive marker, then a whole record
    buf += bytes(-(written + len(buf)) % _RECORD)
    yield bytes(buf)
    if source.failures:
        raise CopyError(source.failures)


def _padding(size: int) -> bytes:
    return bytes(-size % _BLOCK)


def _open_regular(item: Item, source: Source) -> tuple[int, int] | None:
    """An fd for a regular source file (never through a symlink) and its size, or None and a
    failure."""
    assert item.host is not None
    try:
        fd = os.open(item.host, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        source.fail(item.path, exc.strerror or str(exc))
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        source.fail(item.path, "changed type while being copied")
        return None
    return fd, st.st_size


def write_tar(plan: Plan, fs: RootFS, out: BinaryIO, digest: Any = None) -> Stats:
    """Write the plan as a PAX tar to ``out`` (which need not be seekable); ``digest`` (a
    hashlib object) sees every byte written."""
    stats = Stats()
    for piece in iter_tar(plan, fs, stats):
        out.write(piece)
        if digest is not None:
            digest.update(piece)
    return stats


def check_output_file(path: str) -> None:
    """Fail early, before any work, when a tar file cannot be created at ``path``."""
    directory = os.path.dirname(os.path.abspath(path)) or "/"
    if os.path.isdir(path):
        raise OutputError(f"{path}: is a directory; give a file name for the tar")
    if not os.path.isdir(directory):
        raise OutputError(f"{path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: directory {directory} is not writable")


def write_tar_file(plan: Plan, fs: RootFS, path: str, digest: Any = None) -> Stats:
    """Write the tar atomically: a temporary file beside ``path``, renamed when complete."""
    check_output_file(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(
            dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".part"
        )
    except OSError as exc:
        raise OutputError(f"{path}: cannot create a file there: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            stats = write_tar(plan, fs, fh, digest)
            fh.flush()
            os.fsync(fh.fileno())
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fh.fileno(), 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as exc:
        _unlink_quietly(tmp)
        if isinstance(exc, OSError):
            raise OutputError(f"{path}: {exc.strerror or exc}") from exc
        raise
    return stats


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


# -- root directory --


def write_rootfs(plan: Plan, fs: RootFS, target: str, *, force: bool = False) -> Stats:
    """Materialize the plan as a directory tree at ``target``.

    A missing or empty ``target`` is built beside it and renamed into place at the end (a failure
    leaves nothing). A non-empty one is refused unless ``force``; then entries are written into it,
    replacing what stands in their way, never following a symlink found there.
    """
    btarget = os.fsencode(os.path.abspath(target))
    _refuse_dangerous_target(btarget, fs)
    exists = os.path.lexists(btarget)
    if (exists and not os.path.isdir(btarget)) or os.path.islink(btarget):
        raise OutputError(f"{target}: exists and is not a directory")
    if exists and os.listdir(btarget) and not force:
        raise OutputError(f"{target}: directory is not empty (use -f/--force to write into it)")
    if exists and os.listdir(btarget):
        return _DirWriter(fs, btarget, in_place=True).write(plan)
    parent_dir = os.path.dirname(btarget)
    if not os.path.isdir(parent_dir) or not os.access(parent_dir, os.W_OK | os.X_OK):
        raise OutputError(f"{target}: parent directory is missing or not writable")
    tmp = tempfile.mkdtemp(dir=parent_dir, prefix=b"." + os.path.basename(btarget) + b".")
    try:
        stats = _DirWriter(fs, tmp, in_place=False).write(plan)
        os.rename(tmp, btarget)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise OutputError(f"{target}: {exc.strerror or exc}") from exc
        raise
    return stats


def _refuse_dangerous_target(target: bytes, fs: RootFS) -> None:
    real = os.path.realpath(target)
    root = fs.root or b"/"
    if real == b"/" or real == root or (root + b"/").startswith(real + b"/"):
        raise OutputError(
            f"{show(target)}: refusing to write over the source root or one of its parents"
        )


class _DirWriter:
    def __init__(self, fs: RootFS, dest: bytes, *, in_place: bool) -> None:
        self.fs = fs
        self.dest = dest
        self.in_place = in_place
        self.stats = Stats()

    def _host(self, path: bytes) -> bytes:
        return self.dest if path == b"/" else self.dest + path

    def write(self, plan: Plan) -> Stats:
        source = Source(self.fs, plan)
        dirs: list[Item] = []
        for item in source.items():
            try:
                if self._write(item):
                    dirs.append(item)
            except OSError as exc:
                source.fail(item.path, f"cannot write: {exc.strerror or exc}")
            self.stats.entries += 1
        for item in reversed(dirs):  # directory metadata last: children change mtimes
            self._metadata(self._host(item.path), item)
        if source.failures:
            raise CopyError(source.failures)
        return self.stats

    def _clear(self, dst: bytes, want_dir: bool) -> None:
        """Make room at ``dst`` (only needed when writing into an existing tree)."""
        try:
            st = os.lstat(dst)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if not want_dir:
                shutil.rmtree(dst)
        else:
            os.unlink(dst)

    def _write(self, item: Item) -> bool:
        """Create one entry; True for directories (whose metadata is applied at the end)."""
        dst = self._host(item.path)
        mode = item.mode
        if self.in_place or item.path != b"/":
            self._clear(dst, stat.S_ISDIR(mode))
        if stat.S_ISDIR(mode):
            if not os.path.isdir(dst):
                os.mkdir(dst, 0o700)
            return True
        if item.hardlink_to is not None:
            os.link(self._host(item.hardlink_to), dst, follow_symlinks=False)
            return False
        if stat.S_ISREG(mode):
            self._copy(item, dst)
        elif stat.S_ISLNK(mode):
            os.symlink(item.linkname, dst)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            os.mknod(dst, mode, item.rdev)
        self._metadata(dst, item)
        return False

    def _copy(self, item: Item, dst: bytes) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        out = os.open(dst, flags, 0o600)
        try:
            if item.content is not None:
                os.write(out, item.content)
                self.stats.bytes += len(item.content)
                return
            assert item.host is not None
            src = os.open(item.host, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                self.stats.bytes += _copy_fd(src, out)
            finally:
                os.close(src)
        finally:
            os.close(out)

    def _metadata(self, dst: bytes, item: Item) -> None:
        is_link = stat.S_ISLNK(item.mode)
        os.chown(dst, item.uid, item.gid, follow_symlinks=False)
        if not is_link:
            os.chmod(dst, stat.S_IMODE(item.mode))
            for name, value in item.xattrs:  # after chown, which drops file capabilities
                os.setxattr(dst, name, value, follow_symlinks=False)
        ns = int(item.mtime * 1e9)
        os.utime(dst, ns=(ns, ns), follow_symlinks=False)


def _copy_fd(src: int, dst: int) -> int:
    total = 0
    try:
        while True:
            n = os.copy_file_range(src, dst, 1 << 30)
            if n == 0:
                return total
            total += n
    except OSError:
        pass  # not supported between these filesystems: plain copy from where we are
    while True:
        chunk = os.read(src, 1 << 20)
        if not chunk:
            return total
        os.write(dst, chunk)
        total += len(chunk)
