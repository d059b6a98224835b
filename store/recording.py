"""Tracing a command into a new run: the tracer's events streamed into the store as they come.

This is where the tracer meets the store (the dependency goes that way only). Used by
``minicon trace``, by the strace plugin of the one-shot command, and by the daemon.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from tracer.errors import TraceeStartError, TracerError
from tracer.events import RunResult
from tracer.ptrace_backend import CLEAN_ENV, Options, PtraceBackend

from .db import Store
from .ingest import Recorder, start_run


@dataclass
class TraceRequest:
    argv: list[str]
    label: str | None = None
    root: bytes = b"/"  # the source root, as recorded on the run
    chroot: bytes | None = None  # where the command runs (a Sandbox's merged dir) if not /
    seconds: float = 0.0
    env: dict[str, str] = field(default_factory=lambda: dict(CLEAN_ENV))
    cwd: str = "/"
    show_output: bool = False
    pin_cpu: bool = True


@dataclass
class TraceOutcome:
    run_id: int
    status: str  # completed, timed_out, failed, interrupted
    result: RunResult | None
    events: int
    seconds: float
    error: str | None = None

    def describe(self) -> str:
        r = self.result
        if self.error:
            how = self.error
        elif r is None:
            how = "no result"
        elif r.timed_out:
            how = "killed at the time limit"
        elif r.exit_code is not None:
            how = f"exit {r.exit_code}"
        else:
            how = f"signal {r.signal}"
        took = f"{self.seconds:.2f} s"
        return f"run {self.run_id}: {self.status} ({how}), {self.events} events in {took}"


def trace_run(store: Store, request: TraceRequest, run_id: int | None = None) -> TraceOutcome:
    """Record one traced execution as a new run (or into ``run_id``, a queued run this process
    has claimed). A command that cannot start is recorded as a failed run (and reported in the
    outcome); a tracer failure raises after recording it."""
    if run_id is None:
        run_id = start_run(
            store,
            request.argv,
            root=request.root,
            label=request.label,
            backend="ptrace",
            seconds=request.seconds,
        )
    recorder = Recorder(store, run_id)
    backend = PtraceBackend(
        Options(
            list(request.argv),
            seconds=request.seconds,
            env=request.env,
            cwd=request.cwd,
            show_output=request.show_output,
            chroot=request.chroot,
            pin_cpu=request.pin_cpu,
        )
    )
    started = time.monotonic()

    def outcome(status: str, error: str | None = None) -> TraceOutcome:
        return TraceOutcome(
            run_id, status, backend.result, recorder.events, time.monotonic() - started, error
        )

    try:
        recorder.record(backend.events())
    except TraceeStartError as exc:
        recorder.finish(None, "failed", error=str(exc))
        return outcome("failed", str(exc))
    except TracerError as exc:
        recorder.finish(backend.result, "failed", error=str(exc))
        raise
    except BaseException:  # Ctrl-C, or the consumer gave up: keep what was recorded
        recorder.finish(backend.result, "interrupted", error="interrupted")
        raise
    result = backend.result
    status = "timed_out" if result is not None and result.timed_out else "completed"
    recorder.finish(result, status)
    return outcome(status)


def root_bytes(root: str | bytes) -> bytes:
    return os.path.realpath(os.fsencode(root))
