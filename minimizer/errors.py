"""The minimizer's exceptions.

Every error the minimizer raises on purpose derives from :class:`MinimizerError`; the command line
maps the whole tree to a message and exit status 1 in one place.
"""

from __future__ import annotations

import os


def show(path: bytes) -> str:
    """A path as a user can read it: undecodable bytes and control characters escaped."""
    text = os.fsdecode(path)
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # surrogateescape'd byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif ch == "\\":
            out.append("\\\\")
        else:
            out.append(ch)
    return "".join(out)


class MinimizerError(Exception):
    """Base class of every error the minimizer raises on purpose."""


class RootError(MinimizerError):
    """The source root does not exist or is not a directory."""


class NotInRootError(MinimizerError):
    """A path (or an executable name looked up on PATH) does not exist inside the source root.

    Raised for what the user asked for explicitly; paths found by the closure that are missing are
    warnings instead.
    """


class SymlinkLoopError(MinimizerError):
    """Resolving a path met more than 40 symbolic links (the kernel's ELOOP limit)."""


class DanglingSymlinkError(MinimizerError):
    """An explicitly requested symlink points to nothing inside the source root.

    Absolute targets are resolved inside the root, as a chroot would: a link to ``/etc/foo`` means
    ``ROOT/etc/foo``, never the host's file.
    """


class OutputError(MinimizerError):
    """The output (tar file or root directory) cannot be written where the user asked."""


class CopyError(MinimizerError):
    """One or more files could not be read from the source root while writing the output."""

    def __init__(self, failures: list[tuple[bytes, str]]) -> None:
        self.failures = failures
        lines = [f"{show(p)}: {why}" for p, why in failures[:20]]
        more = f"\n(+{len(failures) - 20} more)" if len(failures) > 20 else ""
        super().__init__(
            f"{len(failures)} file(s) could not be copied:\n  " + "\n  ".join(lines) + more
        )


class UnresolvedLibrariesError(MinimizerError):
    """With ``--strict``: some DT_NEEDED libraries were not found in the root."""
