"""The plan: every path the result will hold, and why.

A plan is data: the closure fills it, writers read it, ``--list`` prints it. Paths are absolute
inside the root; a kept path is either copied from the root (``content is None``) or made up by
minicon (an empty ``/tmp``, a generated ``ld.so.cache``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .fsview import ancestors


@dataclass(frozen=True)
class Synthetic:
    """A path minicon creates instead of copying: a directory (content None) or a file."""

    mode: int  # full st_mode, type bits included
    content: bytes | None = None
    mtime: float = 0.0


@dataclass
class Kept:
    reason: str
    synthetic: Synthetic | None = None


@dataclass
class Plan:
    entries: dict[bytes, Kept] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    missing_libraries: list[tuple[bytes, bytes]] = field(default_factory=list)  # (name, needed by)

    def keep(self, path: bytes, reason: str) -> bool:
        """Add ``path`` (and its parent directories); False if it was already kept."""
        if path in self.entries:
            return False
        self.entries[path] = Kept(reason)
        for anc in ancestors(path):
            if anc not in self.entries:
                self.entries[anc] = Kept("parent directory")
        return True

    def make(self, path: bytes, reason: str, synthetic: Synthetic) -> None:
        """Create ``path`` as given, replacing whatever the root would have provided."""
        self.keep(path, reason)
        self.entries[path] = Kept(reason, synthetic)

    def __contains__(self, path: bytes) -> bool:
        return path in self.entries

    def ordered(self) -> Iterator[tuple[bytes, Kept]]:
        """Paths in a deterministic order where every directory comes before its contents."""
        for path in sorted(self.entries, key=lambda p: p.split(b"/")):
            yield path, self.entries[path]
