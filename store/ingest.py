"""Recording a run: the run's row, and its events streamed in, de-duplicated, in batches.

Events are counted in memory per (path, kind, errno) and written every ``flush_seconds`` (or
when ``max_pending`` keys wait) as upserts that add to the stored counts. A test suite making
millions of syscalls costs rows per unique access, and a crash loses at most the last batch.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from tracer.events import Event, RunResult

from .db import Store, hostname, now, process_start

_CHUNK = 500  # bound parameters per IN (...) query


def path_digest(path: bytes) -> bytes:
    return hashlib.blake2b(path, digest_size=16).digest()


def intern_paths(store: Store, cur: Any, paths: Iterable[bytes]) -> dict[bytes, int]:
    """The ids of ``paths``, inserting the new ones (safe with concurrent writers); ``cur`` is a
    DB-API cursor in the caller's transaction."""
    cache = store.path_ids
    missing = {p for p in paths if p not in cache}
    if missing:
        by_digest = {path_digest(p): p for p in missing}
        m = store.mark
        cur.executemany(
            f"INSERT INTO paths (digest, path) VALUES ({m}, {m}) ON CONFLICT (digest) DO NOTHING",
            list(by_digest.items()),
        )
        digests = list(by_digest)
        for i in range(0, len(digests), _CHUNK):
            chunk = digests[i : i + _CHUNK]
            cur.execute(
                f"SELECT id, digest FROM paths WHERE digest IN ({', '.join([m] * len(chunk))})",
                chunk,
            )
            for path_id, digest in cur.fetchall():
                cache[by_digest[bytes(digest)]] = path_id
    return cache


def start_run(
    store: Store,
    argv: Iterable[bytes | str],
    *,
    root: bytes | str = b"/",
    label: str | None = None,
    backend: str = "ptrace",
    seconds: float | None = None,
    status: str = "running",
) -> int:
    """A new run owned by this process; returns its id."""
    words = [os.fsencode(w) for w in argv]
    stamp = store.stamp(now())
    values = {
        "label": label,
        "argv": b"\0".join(words),
        "root": os.fsencode(root),
        "backend": backend,
        "status": status,
        "seconds": seconds,
        "created_at": stamp,
        "started_at": stamp if status == "running" else None,
        "heartbeat_at": stamp,
        "host": hostname(),
        "owner_pid": os.getpid(),
        "owner_start": process_start(os.getpid()),
        "events": 0,
        "accesses": 0,
        "processes": 0,
        "lost_events": 0,
    }
    marks = ", ".join([store.mark] * len(values))
    with store.transaction() as cur:
        cur.execute(
            f"INSERT INTO runs ({', '.join(values)}) VALUES ({marks}) RETURNING id",
            list(values.values()),
        )
        return int(cur.fetchone()[0])


def claim_run(store: Store, run_id: int) -> bool:
    """Take over a queued run (the daemon queues runs, a job process records them); False
    when it is not queued any more (cancelled meanwhile)."""
    stamp = store.stamp(now())
    m = store.mark
    with store.transaction() as cur:
        cur.execute(
            f"UPDATE runs SET status = 'running', started_at = {m}, heartbeat_at = {m}, "
            f"host = {m}, owner_pid = {m}, owner_start = {m} "
            f"WHERE id = {m} AND status = 'queued'",
            (
                stamp,
                stamp,
                hostname(),
                os.getpid(),
                process_start(os.getpid()),
                run_id,
            ),
        )
        return bool(cur.rowcount == 1)


class Recorder:
    """Streams the events of one run into the store."""

    def __init__(
        self,
        store: Store,
        run_id: int,
        *,
        flush_seconds: float = 1.0,
        max_pending: int = 200_000,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.flush_seconds = flush_seconds
        self.max_pending = max_pending
        self.events = 0  # recorded so far
        self._pending: dict[tuple[bytes, str, int], list[int | float]] = {}
        self._flushed_events = 0
        self._last_flush = time.monotonic()
        m = store.mark
        # Plain SQL through the driver's executemany, the same text on SQLite and PostgreSQL.
        self._upsert = (
            "INSERT INTO accesses (run_id, path_id, kind, errno, count, first_seen, flags) "
            f"VALUES ({', '.join([m] * 7)}) "
            "ON CONFLICT (path_id, kind, errno, run_id) DO UPDATE SET "
            "count = accesses.count + excluded.count, flags = accesses.flags | excluded.flags"
        )

    def record(self, events: Iterable[Event]) -> int:
        """Consume ``events`` (typically a tracer's live iterator); returns how many."""
        pending = self._pending
        for seen, e in enumerate(events, 1):
            key = (e.path, e.kind, e.errno)  # Kind is a str: no .value lookup per event
            entry = pending.get(key)
            if entry is None:
                pending[key] = [e.calls, e.time, e.flags]
            else:
                entry[0] += e.calls
                entry[2] = int(entry[2]) | e.flags
            self.events += e.calls  # calls, not events: the eBPF backend sends repeats counted
            if not seen & 1023 and (
                time.monotonic() - self._last_flush >= self.flush_seconds
                or len(pending) >= self.max_pending
            ):
                self.flush()
                pending = self._pending
        return self.events

    def flush(self) -> None:
        """Write what is pending in one transaction (and beat the run's heart)."""
        self._transaction(lambda conn: None)

    def finish(
        self,
        result: RunResult | None,
        status: str,
        error: str | None = None,
        lost_events: int = 0,
    ) -> None:
        """Write the rest, the processes and the run's outcome, in one transaction."""
        processes = list(result.processes.values()) if result else []
        m = self.store.mark

        def close(cur: Any) -> None:
            if processes:
                cur.executemany(
                    "INSERT INTO processes (run_id, pid, ppid, argv, exit_code, signal) "
                    f"VALUES ({m}, {m}, {m}, {m}, {m}, {m})",
                    [
                        (self.run_id, p.pid, p.ppid, b"\0".join(p.argv), p.exit_code, p.signal)
                        for p in processes
                    ],
                )
            cur.execute(f"SELECT count(*) FROM accesses WHERE run_id = {m}", (self.run_id,))
            unique = cur.fetchone()[0]
            cur.execute(
                f"UPDATE runs SET status = {m}, exit_code = {m}, signal = {m}, ended_at = {m}, "
                f"accesses = {m}, processes = {m}, lost_events = {m}, error = {m} WHERE id = {m}",
                (
                    status,
                    result.exit_code if result else None,
                    result.signal if result else None,
                    self.store.stamp(now()),
                    unique,
                    len(processes),
                    lost_events,
                    error,
                    self.run_id,
                ),
            )

        self._transaction(close)

    def _transaction(self, then: Callable[[Any], None]) -> None:
        items, self._pending = self._pending, {}
        new_events, self._flushed_events = self.events - self._flushed_events, self.events
        self._last_flush = time.monotonic()
        try:
            with self.store.transaction() as cur:
                self._write(cur, items, new_events)
                then(cur)
        except self.store.dbapi.IntegrityError:
            # a path id cached here was removed meanwhile (another process deleted the last
            # run using it): look the ids up again, once
            self.store.path_ids.clear()
            with self.store.transaction() as cur:
                self._write(cur, items, new_events)
                then(cur)

    def _write(
        self, cur: Any, items: dict[tuple[bytes, str, int], list[int | float]], new: int
    ) -> None:
        if items:
            ids = intern_paths(self.store, cur, {k[0] for k in items})
            run_id = self.run_id
            rows = [
                (run_id, ids[path], str(kind), err, count, first, flags)
                for (path, kind, err), (count, first, flags) in items.items()
            ]
            cur.executemany(self._upsert, rows)
        m = self.store.mark
        cur.execute(
            f"UPDATE runs SET events = events + {m}, heartbeat_at = {m} WHERE id = {m}",
            (new, self.store.stamp(now()), self.run_id),
        )
