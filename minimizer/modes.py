"""What the four modes take from traced accesses (pure logic, no filesystem).

| mode    | keeps                                                                          |
|---------|--------------------------------------------------------------------------------|
| skinny  | every path executed, opened or successfully checked; listed, entered or created |
|         | directories are created (holding only what else is kept); the directory of a    |
|         | failed lookup, so search-path walks find the same directories                   |
| slim    | + the whole contents of every listed or created directory                       |
| regular | + the whole directory holding each opened or executed file                     |
| loose   | + the whole directory of every touched path                                    |

"Whole directory" never means a system directory such as ``/usr/lib`` or ``/etc``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from .fsview import parent

MODES = ("skinny", "slim", "regular", "loose")
SYSTEM_DIRS = frozenset(
    {
        b"/", b"/usr", b"/usr/lib", b"/usr/lib64", b"/usr/lib32", b"/usr/libx32", b"/lib",
        b"/lib64", b"/lib32", b"/etc", b"/var", b"/bin", b"/sbin", b"/usr/bin", b"/usr/sbin",
        b"/tmp", b"/home", b"/boot", b"/usr/local", b"/usr/local/bin", b"/usr/local/lib",
        b"/usr/share", b"/usr/include", b"/opt", b"/root", b"/run", b"/srv", b"/mnt",
        b"/media", b"/var/lib", b"/var/cache", b"/var/log", b"/usr/libexec",
    }
)  # fmt: skip


def is_system_dir(path: bytes) -> bool:
    """A directory no mode sweeps whole (multiarch library dirs included)."""
    if path in SYSTEM_DIRS:
        return True
    head, _, name = path.rpartition(b"/")
    return head in (b"/lib", b"/usr/lib", b"/usr/local/lib") and name.endswith(
        (b"-gnu", b"-gnux32", b"-gnueabihf", b"-gnuabi64", b"-musl")
    )


class Access(NamedTuple):
    """One traced access: kind is exec, open, stat, list, mkdir or chdir (a tuple: a merge of
    many runs makes 100k+ of them)."""

    kind: str
    path: bytes
    ok: bool
    label: str = ""  # which run or command it came from, for the reasons
    directory: bool = False  # an open with O_DIRECTORY: about the directory, not a file in it


@dataclass
class Selection:
    files: dict[bytes, str] = field(default_factory=dict)  # keep as named (links followed)
    dirs: dict[bytes, str] = field(default_factory=dict)  # create the directory only
    whole: dict[bytes, str] = field(default_factory=dict)  # keep the directory with everything


class AccessLike(Protocol):
    """What select() reads of an access (an :class:`Access`, or a store's merged access)."""

    @property
    def kind(self) -> str: ...
    @property
    def path(self) -> bytes: ...
    @property
    def ok(self) -> bool: ...
    @property
    def label(self) -> str: ...
    @property
    def directory(self) -> bool: ...


def select(accesses: Iterable[AccessLike], mode: str) -> Selection:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    level = MODES.index(mode)
    sel = Selection()

    def whole(path: bytes, why: str) -> None:
        if not is_system_dir(path):
            sel.whole.setdefault(path, why)

    for a in accesses:
        src = f" by {a.label}" if a.label else ""
        is_dir = a.kind in ("list", "chdir", "mkdir") or a.directory
        if is_dir:
            if a.ok:
                sel.dirs.setdefault(a.path, f"{_VERB[a.kind]}{src}")
                if level >= 1 and a.kind in ("list", "mkdir"):
                    whole(a.path, f"{_VERB[a.kind]}{src} (mode {mode})")
        elif a.ok:
            sel.files.setdefault(a.path, f"{_VERB[a.kind]}{src}")
            if level >= 2 and a.kind in ("open", "exec"):
                whole(parent(a.path), f"holds a file {_VERB[a.kind]}{src} (mode {mode})")
        else:
            sel.dirs.setdefault(parent(a.path), f"searched{src} (failed lookup of a path in it)")
        if level >= 3:
            whole(
                a.path if is_dir else parent(a.path),
                f"touched{src} (mode {mode})",
            )
    return sel


_VERB = {
    "exec": "executed",
    "open": "opened",
    "stat": "checked",
    "list": "listed",
    "chdir": "entered",
    "mkdir": "created",
}
