"""A plan written as a tar straight into an HTTP response, in constant memory.

``minimizer.writers.iter_tar`` yields the archive in pieces of a few megabytes as it reads the
source files; the response sends each as it comes (memory: one piece, whatever the size of the
tree). A source that fails half-way makes the response fail instead of ending cleanly, so a
truncated tar is never taken for a whole one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from minimizer.fsview import RootFS
from minimizer.plan import Plan
from minimizer.writers import iter_tar

CHUNK = 4 << 20  # each piece costs a hop to a worker thread and back: make them big


def stream_tar(
    plan: Plan, fs: RootFS, on_bytes: Callable[[int], None] | None = None
) -> Iterator[bytes]:
    for piece in iter_tar(plan, fs, chunk=CHUNK):
        if on_bytes is not None:
            on_bytes(len(piece))
        yield piece
