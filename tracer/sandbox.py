"""A throw-away view of a root filesystem to run traced programs in.

``Sandbox(root)`` moves the calling process into a private mount namespace (once; the tracer
must see the mounts it reads paths from) and builds, on a private tmpfs:

- ``lower``: a read-only bind mount of the source root (so odd characters in its path never
  reach the overlay's option string, and nothing can write to it);
- ``merged``: an overlay with a scratch upper layer, where the programs' writes land; every run
  of one sandbox shares it, and it is thrown away on close;
- inside ``merged``: ``/proc``, a minimal ``/dev`` (null, zero, full, random, urandom, tty, a
  private devpts, shm) and an empty ``/tmp``.

Unmounting on close is belt and braces: the namespace's mounts die with the process anyway, so
even a tracer killed with SIGKILL leaves nothing mounted on the host.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from types import TracebackType

from . import linux
from .errors import TracerUnavailableError

_DEVICES = (b"null", b"zero", b"full", b"random", b"urandom", b"tty")
_private = False


def _private_namespace() -> None:
    global _private
    if _private:
        return
    try:
        linux.unshare(linux.CLONE_NEWNS)
        linux.mount(None, b"/", None, linux.MS_REC | linux.MS_PRIVATE, None)
    except OSError as exc:
        raise TracerUnavailableError(
            f"cannot make a private mount namespace for --root tracing ({exc.strerror}); "
            "this needs root (CAP_SYS_ADMIN)"
        ) from None
    _private = True


class Sandbox:
    """An overlay of ``root`` with /proc, /dev and /tmp, in a private mount namespace."""

    def __init__(self, root: str | bytes) -> None:
        self.source = os.path.realpath(os.fsencode(root))
        self.base = b""
        self.merged = b""
        self._mounts: list[bytes] = []

    def __enter__(self) -> Sandbox:
        self.open()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> None:
        if not os.path.isdir(self.source):
            raise TracerUnavailableError(f"{os.fsdecode(self.source)}: not a directory")
        import tempfile  # here: a trace without --root need not import it (shutil, random)

        _private_namespace()
        tmp = tempfile.gettempdir()
        if any(c in tmp for c in ",:\\ \n"):
            tmp = "/tmp"
        self.base = os.fsencode(tempfile.mkdtemp(prefix="minicon-root-", dir=tmp))
        try:
            self._build()
        except OSError as exc:
            self.close()
            raise TracerUnavailableError(
                f"cannot set up the overlay of {os.fsdecode(self.source)}: {exc}"
            ) from None

    def _mount(
        self, source: bytes | None, target: bytes, fstype: bytes | None, flags: int, data: bytes
    ) -> None:
        linux.mount(source, target, fstype, flags, data or None)
        self._mounts.append(target)

    def _build(self) -> None:
        base = self.base
        self._mount(b"tmpfs", base, b"tmpfs", linux.MS_NOSUID, b"mode=0700")
        for name in (b"lower", b"upper", b"work", b"merged"):
            os.mkdir(base + b"/" + name, 0o700)
        lower = base + b"/lower"
        self._mount(self.source, lower, None, linux.MS_BIND, b"")
        linux.mount(None, lower, None, linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY, None)
        merged = self.merged = base + b"/merged"
        options = b"lowerdir=%s/lower,upperdir=%s/upper,workdir=%s/work" % (base, base, base)
        self._mount(b"overlay", merged, b"overlay", 0, options)
        os.chmod(merged, os.stat(self.source).st_mode & 0o7777)
        nosuid = linux.MS_NOSUID | linux.MS_NODEV
        self._mount(b"proc", self._dir(b"/proc"), b"proc", nosuid | linux.MS_NOEXEC, b"")
        self._mount(b"tmpfs", self._dir(b"/tmp"), b"tmpfs", linux.MS_NODEV, b"mode=1777")
        self._build_dev(merged + b"/dev")

    def _dir(self, inner: bytes) -> bytes:
        path = self.merged + inner
        if os.path.islink(path) or (os.path.exists(path) and not os.path.isdir(path)):
            os.unlink(path)  # only in the scratch layer: the source is read-only below
        os.makedirs(path, exist_ok=True)
        return path

    def _build_dev(self, dev: bytes) -> None:
        self._dir(b"/dev")
        self._mount(b"tmpfs", dev, b"tmpfs", linux.MS_NOSUID | linux.MS_NOEXEC, b"mode=0755")
        for name in _DEVICES:
            node = dev + b"/" + name
            os.close(os.open(node, os.O_CREAT | os.O_WRONLY, 0o666))
            self._mount(b"/dev/" + name, node, None, linux.MS_BIND, b"")
        os.mkdir(dev + b"/pts", 0o755)
        self._mount(
            b"devpts",
            dev + b"/pts",
            b"devpts",
            linux.MS_NOSUID | linux.MS_NOEXEC,
            b"newinstance,ptmxmode=0666,mode=0620",
        )
        os.symlink(b"pts/ptmx", dev + b"/ptmx")
        os.mkdir(dev + b"/shm", 0o1777)
        shm_flags = linux.MS_NOSUID | linux.MS_NODEV
        self._mount(b"tmpfs", dev + b"/shm", b"tmpfs", shm_flags, b"mode=1777")
        for name, target in (
            (b"fd", b"/proc/self/fd"),
            (b"stdin", b"/proc/self/fd/0"),
            (b"stdout", b"/proc/self/fd/1"),
            (b"stderr", b"/proc/self/fd/2"),
        ):
            os.symlink(target, dev + b"/" + name)

    def close(self) -> None:
        """Unmount everything (innermost first) and remove the mount point."""
        errors = []
        for target in reversed(self._mounts):
            try:
                linux.umount(target)
            except OSError as exc:
                errors.append(exc)
        self._mounts.clear()
        if self.base:
            try:
                os.rmdir(self.base)
            except OSError as exc:
                errors.append(exc)
            self.base = b""
        if errors:
            raise TracerUnavailableError(f"cleaning up the overlay: {errors[0]}")


@contextlib.contextmanager
def chroot_for(root: str | bytes) -> Iterator[bytes | None]:
    """Where to run commands of ``root``: None for the host's ``/`` (no sandbox), else a
    :class:`Sandbox` of it for the duration (its merged directory)."""
    if os.path.realpath(os.fsencode(root)) == b"/":
        yield None
        return
    with Sandbox(root) as sandbox:
        yield sandbox.merged
