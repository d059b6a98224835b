"""The strace plugin: which sample commands to trace; their events as the minimizer's accesses."""

from __future__ import annotations

import logging
import os
import shlex
from dataclasses import dataclass

from minimizer.modes import Access
from tracer.errors import TracerError
from tracer.ptrace_backend import Options, PtraceBackend
from tracer.sandbox import Sandbox
from tracer.syscalls import O_DIRECTORY

from .plugins import Execution, PluginError, StraceOptions

log = logging.getLogger("minicon")


@dataclass(frozen=True)
class Job:
    argv: tuple[str, ...]
    seconds: float
    show_output: bool


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
        for key, value in extra:
            per.set(key, value)
        jobs.append(Job(argv, per.seconds, per.showoutput))

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


def run_jobs(jobs: list[Job], root: bytes | None = None) -> list[Access]:
    """Trace each job in turn; a job that cannot start is an error, one that fails is not.

    With ``root`` (not ``/``) the jobs run chrooted in one :class:`Sandbox` of it: an overlay
    whose scratch layer they share (a file one job writes is there for the next) and which is
    thrown away afterwards; the root itself is never written.
    """
    if root is None or os.path.realpath(root) == b"/":
        return _run(jobs, None)
    with Sandbox(root) as sandbox:
        return _run(jobs, sandbox.merged)


def _run(jobs: list[Job], chroot: bytes | None) -> list[Access]:
    accesses: list[Access] = []
    for job in jobs:
        label = shlex.join(job.argv)
        backend = PtraceBackend(
            Options(list(job.argv), seconds=job.seconds, show_output=job.show_output, chroot=chroot)
        )
        count = 0
        try:
            for event in backend.events():
                directory = bool(event.flags & O_DIRECTORY)
                ok = event.errno == 0
                accesses.append(Access(event.kind.value, event.path, ok, label, directory))
                count += 1
        except TracerError as exc:
            raise TracingFailed(f"tracing {label}: {exc}") from exc
        result = backend.result
        how = (
            "timed out (killed)"
            if result and result.timed_out
            else (
                f"exit {result.exit_code}"
                if result and result.exit_code is not None
                else f"signal {result.signal}"
                if result
                else "unknown"
            )
        )
        log.info("traced %s: %d events, %s", label, count, how)
    return accesses


class TracingFailed(Exception):
    """A sample command could not be traced."""
