"""A plan written as a tar straight into an HTTP response, in constant memory.

The tar writer runs in a thread of its own, writing into a pipe; the response reads the pipe
in chunks. Memory is the pipe and one chunk, whatever the size of the tree. A client that goes
away closes the pipe and the writer stops; a writer that fails (a file vanished) makes the
response fail instead of ending cleanly, so a truncated tar is never taken for a whole one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator

from minimizer import writers
from minimizer.fsview import RootFS
from minimizer.plan import Plan

CHUNK = 1 << 20


class TarStreamError(Exception):
    """The tar could not be completed; the response must not end as if it were."""


def stream_tar(
    plan: Plan, fs: RootFS, on_bytes: Callable[[int], None] | None = None
) -> Iterator[bytes]:
    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(write_fd, "wb", buffering=CHUNK) as out:
                writers.write_tar(plan, fs, out)
        except BrokenPipeError:
            pass  # the reader went away
        except BaseException as exc:
            failure.append(exc)

    writer = threading.Thread(target=produce, name="tar-writer", daemon=True)
    writer.start()
    reader = os.fdopen(read_fd, "rb", buffering=0)
    try:
        while True:
            data = reader.read(CHUNK)
            if not data:
                break
            if on_bytes is not None:
                on_bytes(len(data))
            yield data
    finally:
        reader.close()  # a writer still writing gets EPIPE and stops
        writer.join()
    if failure:
        raise TarStreamError(str(failure[0]))
