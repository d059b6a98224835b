"""What each planned path is, read fresh from the root at write time, for the writers.

Writers never look at the root themselves: they get :class:`Item` values in plan order. A path that
vanished or cannot be read since the plan was made is reported as a failure, never replaced by
something else (least of all a host file).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from .fsview import RootFS
from .plan import Plan, Synthetic


@dataclass(frozen=True)
class Item:
    path: bytes  # inside the root
    mode: int  # full st_mode
    uid: int
    gid: int
    mtime: float
    size: int = 0
    linkname: bytes = b""  # symlink target
    hardlink_to: bytes | None = None  # an earlier item's path with the same inode
    rdev: int = 0
    xattrs: tuple[tuple[str, bytes], ...] = ()
    content: bytes | None = None  # synthetic file content
    host: bytes | None = None  # where to read a regular file's data


@dataclass
class Source:
    fs: RootFS
    plan: Plan
    failures: list[tuple[bytes, str]] = field(default_factory=list)

    def items(self) -> Iterator[Item]:
        seen_inodes: dict[tuple[int, int], bytes] = {}
        for path, kept in self.plan.ordered():
            if kept.synthetic is not None:
                yield _synthetic(path, kept.synthetic)
                continue
            host = self.fs.host(path)
            try:
                st = os.lstat(host)
            except OSError as exc:
                self.failures.append((path, exc.strerror or str(exc)))
                continue
            mode = st.st_mode
            if stat.S_ISSOCK(mode):
                continue  # a socket cannot be archived; it is recreated by whoever listens
            base = Item(path, mode, st.st_uid, st.st_gid, st.st_mtime, xattrs=_xattrs(host, mode))
            if stat.S_ISREG(mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in seen_inodes:
                    yield replace(base, hardlink_to=seen_inodes[key])
                    continue
                seen_inodes[key] = path
                yield replace(base, size=st.st_size, host=host)
            elif stat.S_ISLNK(mode):
                try:
                    target = os.readlink(host)
                except OSError as exc:
                    self.failures.append((path, exc.strerror or str(exc)))
                    continue
                yield replace(base, linkname=target)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                yield replace(base, rdev=st.st_rdev)
            else:  # directories and FIFOs
                yield base

    def fail(self, path: bytes, why: str) -> None:
        self.failures.append((path, why))


def _synthetic(path: bytes, syn: Synthetic) -> Item:
    size = len(syn.content) if syn.content is not None else 0
    return Item(path, syn.mode, 0, 0, syn.mtime, size=size, content=syn.content)


def _xattrs(host: bytes, mode: int) -> tuple[tuple[str, bytes], ...]:
    """Extended attributes (file capabilities among them); none for symlinks."""
    if stat.S_ISLNK(mode):
        return ()
    try:
        names = os.listxattr(host, follow_symlinks=False)
    except OSError:
        return ()
    out = []
    for name in sorted(names):
        try:
            out.append((name, os.getxattr(host, name, follow_symlinks=False)))
        except OSError:
            continue
    return tuple(out)
