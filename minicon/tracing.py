"""The strace plugin: which sample commands to trace; their events as the minimizer's accesses."""

from __future__ import annotations

import logging
import os
import shlex
from dataclasses import dataclass

from store.db import Store
from store.recording import TraceRequest, trace_run
from tracer.sandbox import chroot_for

from .plugins import Execution, PluginError, StraceOptions

log = logging.getLogger("minicon")


@dataclass(frozen=True)
class Job:
    argv: tuple[str, ...]
    seconds: float
    show_output: bool
    backend: str = "ptrace"


def read_execfile(path: str) -> list[tuple[str, ...]]:
    """Sample command lines, one per line, quoted as a shell would; ``#`` starts a comment."""
    out = []
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        for number, line in enumerate(fh, 1):
            try:
                words = shlex.split(line, comments=True)
            except ValueError as exc:
                raise PluginError(f"execfile {path}, line {number}: {exc}") from None
            if words:
                out.append(tuple(words))
    return out


def _matches(program: str, line_program: str) -> bool:
    """An execfile line serves a program named the same, by name or by path."""
    return line_program == program or os.path.basename(line_program) == os.path.basename(program)


def plan_jobs(
    options: StraceOptions, executions: list[Execution], executables: list[str]
) -> list[Job]:
    """Every -E command, each positional executable (with its execfile lines, or bare)."""
    samples = read_execfile(options.execfile) if options.execfile else []
    jobs: list[Job] = []
    seen: set[tuple[str, ...]] = set()

    def add(argv: tuple[str, ...], extra: tuple[tuple[str, str], ...] = ()) -> None:
        if argv in seen:
            return
        seen.add(argv)
        per = StraceOptions(options.seconds, options.mode, None, options.showoutput)
        per.backend = options.backend
        for key, value in extra:
            per.set(key, value)
        jobs.append(Job(argv, per.seconds, per.showoutput, per.backend))

    for ex in executions:
        add(ex.argv, ex.options)
        for line in samples:
            if _matches(ex.argv[0], line[0]):
                add(line)
    for name in executables:
        lines = [line for line in samples if _matches(name, line[0])]
        for line in lines or [(name,)]:
            add(line)
    return jobs


def run_jobs(store: Store, jobs: list[Job], root: bytes, label: str | None = None) -> list[int]:
    """Trace each job into a new run of ``store``; returns the run ids.

    A job that cannot start is an error; one that fails or times out is not. With ``root``
    (not ``/``) the jobs run chrooted in one :class:`Sandbox` of it: an overlay whose scratch
    layer they share (a file one job writes is there for the next) and which is thrown away
    afterwards; the root itself is never written.
    """
    with chroot_for(root) as chroot:
        return _run(store, jobs, os.path.realpath(root), chroot, label)


def _run(
    store: Store, jobs: list[Job], root: bytes, chroot: bytes | None, label: str | None
) -> list[int]:
    run_ids = []
    for job in jobs:
        request = TraceRequest(
            list(job.argv),
            label=label,
            root=root,
            chroot=chroot,
            seconds=job.seconds,
            show_output=job.show_output,
            backend=job.backend,
        )
        outcome = trace_run(store, request)
        if outcome.status == "failed":
            raise TracingFailed(f"tracing {shlex.join(job.argv)}: {outcome.error}")
        log.info("traced %s: %s", shlex.join(job.argv), outcome.describe())
        run_ids.append(outcome.run_id)
    return run_ids


class TracingFailed(Exception):
    """A sample command could not be traced."""
