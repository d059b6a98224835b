"""Trace jobs: each run the daemon accepts is queued in the store and traced by a
``minicon trace --run-id N`` child process, at most ``workers`` at a time.

A process per job keeps the daemon out of ptrace, mount namespaces and CPU pinning, and lets
a cancel be a kill. Each child gets PR_SET_PDEATHSIG: if the daemon dies, its jobs die (and
their tracees with them); the next open of the store marks those runs interrupted.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import update

from store.db import Store, now
from store.models import Run
from store.statuses import ACTIVE

log = logging.getLogger("minicon.api")
PR_SET_PDEATHSIG = 1


@dataclass
class Job:
    run_id: int
    argv: list[str]
    root: str
    seconds: float
    env: dict[str, str]
    cwd: str
    label: str | None
    backend: str = "ptrace"


def _die_with_parent() -> None:  # in the child, between fork and exec
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Jobs:
    def __init__(self, store: Store, python: str, workers: int) -> None:
        self.store = store
        self.python = python
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="trace-job")
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._cancelled: set[int] = set()
        self._lock = threading.Lock()

    def submit(self, job: Job) -> None:
        self._pool.submit(self._run, job)

    def _command(self, job: Job) -> list[str]:
        cmd = [self.python, "-m", "minicon", "trace", "--run-id", str(job.run_id)]
        cmd += ["--db", self.store.url, "--root", job.root, "--seconds", str(job.seconds)]
        cmd += ["--cwd", job.cwd, "--backend", job.backend]
        if job.label is not None:
            cmd += ["--label", job.label]
        for key, value in job.env.items():
            cmd += ["--env", f"{key}={value}"]
        return [*cmd, "--", *job.argv]

    def _run(self, job: Job) -> None:
        with self._lock:
            if job.run_id in self._cancelled:
                return
            proc = subprocess.Popen(
                self._command(job),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=_die_with_parent,
                env={**os.environ, "MINICON_DB": self.store.url},
            )
            self._procs[job.run_id] = proc
        _, err = proc.communicate()
        with self._lock:
            self._procs.pop(job.run_id, None)
            cancelled = job.run_id in self._cancelled
        if proc.returncode != 0 or cancelled:
            message = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
            self._settle(job.run_id, "cancelled" if cancelled else "failed", message[0])

    def _settle(self, run_id: int, status: str, error: str) -> None:
        """A job that ended without closing its run (killed, or failed before tracing)."""
        with self.store.engine.begin() as conn:
            conn.execute(
                update(Run)
                .where(Run.id == run_id, Run.status.in_(ACTIVE))
                .values(status=status, ended_at=now(), error=error or status)
            )

    def cancel(self, run_id: int) -> None:
        """Stop a queued or running job; its run ends as ``cancelled``."""
        with self._lock:
            self._cancelled.add(run_id)
            proc = self._procs.get(run_id)
        if proc is not None and proc.poll() is None:
            proc.kill()  # its tracees die with it (PTRACE_O_EXITKILL)
        else:
            self._settle(run_id, "cancelled", "cancelled")

    def shutdown(self) -> None:
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            proc.kill()
        self._pool.shutdown(wait=True, cancel_futures=True)
