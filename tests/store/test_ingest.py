"""Ingest and queries on SQLite and PostgreSQL: de-duplication, batches, odd paths, transfer."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store import queries, transfer
from store.db import Store
from store.errors import ImportFormatError, RunNotFoundError
from store.ingest import Recorder, start_run
from tracer.events import Event, Kind, Process, RunResult


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    yield s
    s.close()


def ev(path: bytes, kind: Kind = Kind.OPEN, err: int = 0, t: float = 0.0, flags: int = 0) -> Event:
    return Event(kind, path, err, 1, flags, t)


def record(store: Store, events: list[Event], label: str | None = None, **kw: int) -> int:
    run_id = start_run(store, [b"prog", b"arg"], label=label)
    rec = Recorder(store, run_id, **kw)  # type: ignore[arg-type]
    rec.record(events)
    rec.finish(RunResult(0, None, False, {1: Process(1, 0, (b"prog", b"arg"), 0)}), "completed")
    return run_id


def test_counts_are_deduplicated_and_batches_add_up(store: Store) -> None:
    events = [ev(b"/a", t=0.5), ev(b"/a", t=0.9, flags=0o200000)] * 3000
    events += [ev(b"/missing", Kind.STAT, 2, t=1.0)] * 3
    events += [ev(b"/missing", Kind.STAT, 2, t=1.5)._replace(calls=2)]  # repeats counted
    run_id = record(store, events, max_pending=1)  # a flush at every 1024 events
    rows = {(r.path, r.kind, r.errno): r for r in queries.accesses(store, run_id)}
    assert rows[(b"/a", "open", 0)].count == 6000
    assert rows[(b"/a", "open", 0)].first_seen == 0.5
    assert rows[(b"/a", "open", 0)].flags == 0o200000
    assert rows[(b"/missing", "stat", 2)].count == 5
    run = queries.get_run(store, run_id)
    assert (run.status, run.events, run.accesses, run.processes) == ("completed", 6005, 2, 1)
    assert queries.processes(store, run_id)[0].argv == b"prog\0arg"


def test_merge_select_diff_and_delete(store: Store) -> None:
    a = record(store, [ev(b"/shared"), ev(b"/only-a", Kind.EXEC)], label="x")
    b = record(store, [ev(b"/shared", Kind.OPEN, flags=0o200000), ev(b"/gone", Kind.STAT, 2)])
    assert queries.select_runs(store, [b], ["x"]) == [a, b]
    with pytest.raises(RunNotFoundError):
        queries.select_runs(store, [999])
    merged = {(m.path, m.kind, m.ok): m for m in queries.merged(store, [a, b])}
    assert set(merged) == {
        (b"/shared", "open", True),
        (b"/only-a", "exec", True),
        (b"/gone", "stat", False),
    }
    assert merged[(b"/shared", "open", True)].directory  # one run opened it as a directory
    assert merged[(b"/shared", "open", True)].run_id == a
    assert merged[(b"/shared", "open", True)].total == 2
    only_a, only_b = queries.diff(store, a, b)
    assert only_a == [(b"/only-a", "exec", True)] and only_b == [(b"/gone", "stat", False)]
    queries.delete_run(store, a)
    assert {m.path for m in queries.merged(store, None)} == {b"/shared", b"/gone"}
    record(store, [ev(b"/only-a")])  # an id the deleted run's path had is not reused wrongly
    with pytest.raises(RunNotFoundError):
        queries.get_run(store, a)


ODD = st.binary(min_size=1, max_size=40).map(lambda b: b"/" + b.replace(b"\0", b"_"))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(paths=st.lists(ODD, min_size=1, max_size=20, unique=True))
def test_odd_paths_round_trip(store: Store, paths: list[bytes]) -> None:
    """Spaces, newlines, non-UTF-8 bytes: through ingest, queries, export and import."""
    paths = [*paths, b"/sp ace/new\nline", b"/bad\xff\xfe", os.fsencode("/caf\u00e9")]
    run_id = record(store, [ev(p) for p in paths])
    assert {r.path for r in queries.accesses(store, run_id)} == set(paths)
    buf = io.BytesIO()
    transfer.export_run(store, run_id, buf)
    buf.seek(0)
    again = transfer.import_jsonl(store, buf, label="copy")
    assert {r.path for r in queries.accesses(store, again)} == set(paths)
    assert queries.get_run(store, again).label == "copy"


def test_import_rejects_what_it_cannot_read(store: Store, tmp_path: Path) -> None:
    before = len(queries.list_runs(store))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"format": "minicon-run", "version": 1, "run": {}}\n{"access": {"kind": "x"}}\n'
    )
    with pytest.raises(ImportFormatError):
        transfer.import_file(store, str(bad))
    notlog = tmp_path / "notes.txt"
    notlog.write_text("hello\nworld\n")
    with pytest.raises(ImportFormatError, match="not a log"):
        transfer.import_file(store, str(notlog))
    assert len(queries.list_runs(store)) == before  # nothing half-imported


def test_strace_log_import(store: Store, tmp_path: Path) -> None:
    log = tmp_path / "s.log"
    log.write_bytes(
        b'7 execve("/bin/ls", ["ls", "/x y"], 0x1 /* 1 var */) = 0\n'
        b'7 openat(AT_FDCWD, "/etc/ld.so.cache", O_RDONLY|O_CLOEXEC) = 3\n'
        b'7 newfstatat(AT_FDCWD, "/x y", 0x7ff, 0) = -1 ENOENT (No such file or directory)\n'
        b"7 +++ exited with 2 +++\n"
    )
    run_id = transfer.import_file(store, str(log), label="from-strace")
    run = queries.get_run(store, run_id)
    assert (run.backend, run.label, run.argv, run.exit_code) == (
        "strace-log",
        "from-strace",
        b"ls\0/x y",
        2,
    )
    got = {(r.path, r.kind, r.errno) for r in queries.accesses(store, run_id)}
    assert got == {(b"/bin/ls", "exec", 0), (b"/etc/ld.so.cache", "open", 0), (b"/x y", "stat", 2)}
