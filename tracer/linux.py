"""The few Linux calls Python 3.11's ``os`` lacks: unshare, mount, umount2, openat2."""

from __future__ import annotations

import ctypes
import os
import struct

CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2
O_PATH = 0o10000000
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
SYS_OPENAT2 = 437

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.syscall.restype = ctypes.c_long
_OPEN_HOW = struct.Struct("=QQQ")  # flags, mode, resolve


def _check(result: int, what: str) -> None:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(
    source: bytes | None, target: bytes, fstype: bytes | None, flags: int, data: bytes | None
) -> None:
    _check(_libc.mount(source, target, fstype, flags, data), f"mount {target!r}")


def umount(target: bytes, flags: int = MNT_DETACH) -> None:
    _check(_libc.umount2(target, flags), f"umount {target!r}")


def open_in_root(root_fd: int, path: bytes, flags: int = O_PATH | os.O_CLOEXEC) -> int:
    """An fd for ``path`` looked up as if ``root_fd`` were ``/`` (absolute links and ``..`` stay
    inside); ``/proc`` magic links are refused. Raises OSError with the lookup's errno."""
    how = ctypes.create_string_buffer(
        _OPEN_HOW.pack(flags, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), _OPEN_HOW.size
    )
    fd = _libc.syscall(
        ctypes.c_long(SYS_OPENAT2), ctypes.c_long(root_fd), path, how, ctypes.c_long(_OPEN_HOW.size)
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(fd)
