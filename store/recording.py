"""Tracing a command into a new run: the tracer's events streamed into the store as they come.

This is where the tracer meets the store (the dependency goes that way only). Used by
``minicon trace``, by the strace plugin of the one-shot command, and by the daemon.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tracer.backends import make as make_backend
from tracer.errors import TraceeStartError, TracerError
from tracer.events import RunResult
from tracer.ptrace_backend import CLEAN_ENV, Options

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
    backend: str = "ptrace"  # or ebpf, or auto (eBPF when it loads here)


@dataclass
class TraceOutcome:
    run_id: int
    status: str  # completed, timed_out, failed, interrupted
    result: RunResult | None
    events: int
    seconds: float
    error: str | None = None
    backend: str = "ptrace"  # the one that ran
    lost_events: int = 0

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
        lost = f", {self.lost_events} LOST" if self.lost_events else ""
        return (
            f"run {self.run_id}: {self.status} ({how}), {self.events} events in {took} "
            f"({self.backend}{lost})"
        )


def trace_run(store: Store, request: TraceRequest, run_id: int | None = None) -> TraceOutcome:
    """Record one traced execution as a new run (or into ``run_id``, a queued run this process
    has claimed). A command that cannot start is recorded as a failed run (and reported in the
    outcome); a tracer failure raises after recording it."""
    options = Options(
        list(request.argv),
        seconds=request.seconds,
        env=request.env,
        cwd=request.cwd,
        show_output=request.show_output,
        chroot=request.chroot,
        pin_cpu=request.pin_cpu,
    )
    backend = make_backend(request.backend, options)  # unavailable: raises before any run
    if run_id is None:
        run_id = start_run(
            store,
            request.argv,
            root=request.root,
            label=request.label,
            backend=backend.name,
            seconds=request.seconds,
        )
    else:  # queued with what was asked for ("auto"): record what runs
        with store.transaction() as cur:
            m = store.mark
            cur.execute(f"UPDATE runs SET backend = {m} WHERE id = {m}", (backend.name, run_id))
    recorder = Recorder(store, run_id)
    started = time.monotonic()

    def outcome(status: str, error: str | None = None) -> TraceOutcome:
        return TraceOutcome(
            run_id,
            status,
            backend.result,
            recorder.events,
            time.monotonic() - started,
            error,
            backend.name,
            backend.lost_events,
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
    recorder.finish(result, status, lost_events=backend.lost_events)
    return outcome(status)
