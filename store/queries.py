"""Reading the store: runs, their processes and accesses, and merges of many runs.

Everything returned is plain data (or detached ORM rows); nothing here writes except
:func:`delete_run`.
"""

from __future__ import annotations

import os
import shlex
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import and_, delete, func, select

from .db import Store
from .errors import RunNotFoundError
from .models import Access, Path, Process, Run

O_DIRECTORY = 0o200000


class MergedAccess(NamedTuple):
    """One (path, kind, outcome) over the selected runs: what the minimizer's modes read.

    A NamedTuple: a merge makes one per unique access (100k+), and tuples build fast."""

    path: bytes
    kind: str
    ok: bool
    directory: bool  # opened with O_DIRECTORY by some run
    run_id: int  # the first run that made it (for the reasons)
    total: int  # how many times, over all the runs
    label: str  # that run as a reason names it: "run 7 (web)"


@dataclass(frozen=True)
class AccessRow:
    path: bytes
    kind: str
    errno: int
    count: int
    first_seen: float
    flags: int


def get_run(store: Store, run_id: int) -> Run:
    with store.session() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise RunNotFoundError(f"no run {run_id}")
        return run


def list_runs(
    store: Store,
    *,
    label: str | None = None,
    status: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[Run]:
    query = select(Run).order_by(Run.id)
    if label is not None:
        query = query.where(Run.label == label)
    if status is not None:
        query = query.where(Run.status == status)
    if limit is not None:
        query = query.limit(limit)
    with store.session() as s:
        return list(s.scalars(query.offset(offset)))


def count_runs(store: Store, *, label: str | None = None, status: str | None = None) -> int:
    query = select(func.count()).select_from(Run)
    if label is not None:
        query = query.where(Run.label == label)
    if status is not None:
        query = query.where(Run.status == status)
    with store.session() as s:
        return int(s.execute(query).scalar_one())


def select_runs(store: Store, ids: Iterable[int] = (), labels: Iterable[str] = ()) -> list[int]:
    """The ids named and those of every run with one of the labels; unknown ids are errors."""
    wanted = sorted(set(ids))
    labels = sorted(set(labels))
    with store.session() as s:
        found = set(s.scalars(select(Run.id).where(Run.id.in_(wanted)))) if wanted else set()
        missing = [i for i in wanted if i not in found]
        if missing:
            raise RunNotFoundError(f"no run {', '.join(map(str, missing))}")
        if labels:
            found |= set(s.scalars(select(Run.id).where(Run.label.in_(labels))))
    return sorted(found)


def processes(store: Store, run_id: int) -> list[Process]:
    get_run(store, run_id)
    with store.session() as s:
        return list(s.scalars(select(Process).where(Process.run_id == run_id).order_by(Process.id)))


def accesses(store: Store, run_id: int) -> list[AccessRow]:
    """Every access of one run, by path."""
    get_run(store, run_id)
    query = (
        select(Path.path, Access.kind, Access.errno, Access.count, Access.first_seen, Access.flags)
        .join(Path, Path.id == Access.path_id)
        .where(Access.run_id == run_id)
        .order_by(Path.path, Access.kind, Access.errno)
    )
    with store.session() as s:
        return [AccessRow(bytes(r[0]), *r[1:]) for r in s.execute(query)]


def merged(store: Store, run_ids: Sequence[int] | None) -> list[MergedAccess]:
    """The union of the runs' accesses (all runs when ``run_ids`` is None).

    Grouped in SQL by the table's key order (path, kind, errno), so the database streams
    through it without sorting; the errnos of one failed lookup are folded together here.
    """
    grouped = select(
        Access.path_id,
        Access.kind,
        Access.errno,
        func.max(Access.flags.op("&")(O_DIRECTORY)).label("directory"),
        func.min(Access.run_id).label("run_id"),
        func.sum(Access.count).label("count"),
    ).group_by(Access.path_id, Access.kind, Access.errno)
    if run_ids is not None:
        ids = list(run_ids)
        # many runs: one pass in key order beats SQLite's choice (the run_id index, then
        # sorting every row for the GROUP BY); "+ 0" keeps it off that index
        scan = store.is_sqlite and len(ids) * 8 >= count_runs(store)
        grouped = grouped.where((Access.run_id + 0 if scan else Access.run_id).in_(ids))
    sub = grouped.subquery()
    query = select(
        Path.path, sub.c.kind, sub.c.errno, sub.c.directory, sub.c.run_id, sub.c.count
    ).join(Path, Path.id == sub.c.path_id)
    out: dict[tuple[bytes, str, bool], tuple[bool, int, int]] = {}
    with store.session() as s:
        for path, kind, err, directory, run_id, count in s.execute(query):
            key = (bytes(path), kind, err == 0)
            seen = out.get(key)
            if seen is None:
                out[key] = (bool(directory), run_id, int(count))
            else:  # the same failed lookup with another errno
                out[key] = (seen[0] or bool(directory), min(seen[1], run_id), seen[2] + count)
    names = run_names(store, {v[1] for v in out.values()})
    return [
        MergedAccess(path, kind, ok, directory, run_id, total, names[run_id])
        for (path, kind, ok), (directory, run_id, total) in out.items()
    ]


def run_names(store: Store, run_ids: Iterable[int]) -> dict[int, str]:
    """How reasons name each run: ``run 7 (web)``, or its command when it has no label."""
    ids = sorted(set(run_ids))
    names = {}
    with store.session() as s:
        for i in range(0, len(ids), 500):
            query = select(Run.id, Run.label, Run.argv, Run.backend).where(
                Run.id.in_(ids[i : i + 500])
            )
            for run_id, label, argv, backend in s.execute(query):
                words = [os.fsdecode(w) for w in argv.split(b"\0")] if argv else []
                names[run_id] = f"run {run_id} ({label or shlex.join(words) or backend})"
    return names


def kind_counts(store: Store, run_id: int) -> dict[str, tuple[int, int]]:
    """Per kind: (unique accesses, syscalls)."""
    query = (
        select(Access.kind, func.count(), func.sum(Access.count))
        .where(Access.run_id == run_id)
        .group_by(Access.kind)
    )
    with store.session() as s:
        return {kind: (int(n), int(total)) for kind, n, total in s.execute(query)}


def top_dirs(rows: Iterable[AccessRow], limit: int = 10) -> list[tuple[bytes, int]]:
    """The directories holding the most accessed paths."""
    counter: Counter[bytes] = Counter()
    for r in rows:
        counter[r.path.rpartition(b"/")[0] or b"/"] += 1
    return counter.most_common(limit)


def diff(store: Store, a: int, b: int) -> tuple[list[tuple[bytes, str, bool]], ...]:
    """(only in a, only in b): (path, kind, ok) triples."""

    def keyset(run_id: int) -> set[tuple[bytes, str, bool]]:
        return {(r.path, r.kind, r.errno == 0) for r in accesses(store, run_id)}

    left, right = keyset(a), keyset(b)
    return sorted(left - right), sorted(right - left)


def delete_run(store: Store, run_id: int) -> None:
    """Delete a run with its accesses and processes, and paths no run uses any more."""
    get_run(store, run_id)
    with store.engine.begin() as conn:
        conn.execute(delete(Access).where(Access.run_id == run_id))
        conn.execute(delete(Process).where(Process.run_id == run_id))
        conn.execute(delete(Run).where(Run.id == run_id))
        used = select(Access.path_id).where(Access.path_id == Path.id).exists()
        conn.execute(delete(Path).where(and_(~used)))
    store.path_ids.clear()
