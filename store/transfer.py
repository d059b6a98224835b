"""Moving runs between stores: minicon's JSONL export, and strace logs captured anywhere.

The JSONL format, one object per line: first ``{"format": "minicon-run", "version": 1, "run":
{...}}``, then ``{"process": {...}}`` and ``{"access": {...}}`` lines. Byte strings (paths,
argv words, the root) are JSON strings when they are UTF-8, else ``{"b64": "..."}``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from collections.abc import Iterator
from typing import IO, Any

from sqlalchemy import insert, update

from tracer.strace_log import StraceLog, StraceLogError

from .db import Store, now
from .errors import ImportFormatError
from .ingest import Recorder, intern_paths, start_run
from .models import Access, Process, Run
from .queries import accesses, delete_run, get_run, processes
from .statuses import STATUSES

FORMAT = "minicon-run"
VERSION = 1


def encode_bytes(value: bytes) -> str | dict[str, str]:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode("ascii")}


def decode_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and isinstance(value.get("b64"), str):
        return base64.b64decode(value["b64"], validate=True)
    raise ImportFormatError(f"expected a string or {{'b64': ...}}, got {value!r}")


def _time(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def export_run(store: Store, run_id: int, out: IO[bytes]) -> int:
    """Write run ``run_id`` as JSONL; returns the number of lines."""
    run = get_run(store, run_id)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "run": {
            "id": run.id,
            "label": run.label,
            "argv": [encode_bytes(w) for w in run.argv.split(b"\0")] if run.argv else [],
            "root": encode_bytes(run.root),
            "backend": run.backend,
            "status": run.status,
            "exit_code": run.exit_code,
            "signal": run.signal,
            "seconds": run.seconds,
            "created_at": _time(run.created_at),
            "started_at": _time(run.started_at),
            "ended_at": _time(run.ended_at),
            "host": run.host,
            "events": run.events,
            "lost_events": run.lost_events,
            "error": run.error,
        },
    }
    lines = [header]
    for p in processes(store, run_id):
        lines.append(
            {
                "process": {
                    "pid": p.pid,
                    "ppid": p.ppid,
                    "argv": [encode_bytes(w) for w in p.argv.split(b"\0")] if p.argv else [],
                    "exit_code": p.exit_code,
                    "signal": p.signal,
                }
            }
        )
    for a in accesses(store, run_id):
        lines.append(
            {
                "access": {
                    "path": encode_bytes(a.path),
                    "kind": a.kind,
                    "errno": a.errno,
                    "count": a.count,
                    "first_seen": a.first_seen,
                    "flags": a.flags,
                }
            }
        )
    for obj in lines:
        out.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n")
    return len(lines)


def import_file(store: Store, path: str, label: str | None = None) -> int:
    """Import a JSONL export or an ``strace -f -o`` log; returns the new run's id."""
    try:
        with open(path, "rb") as fh:
            first = fh.readline()
            while first and not first.strip():
                first = fh.readline()
    except OSError as exc:
        raise ImportFormatError(f"{path}: {exc.strerror}") from None
    if not first:
        raise ImportFormatError(f"{path}: empty file")
    if first.lstrip().startswith(b"{"):
        with open(path, "rb") as fh:
            return import_jsonl(store, fh, label)
    return import_strace(store, path, label)


def _lines(fh: IO[bytes]) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, raw in enumerate(fh, 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            raise ImportFormatError(f"line {number}: not JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise ImportFormatError(f"line {number}: expected an object")
        yield number, obj


def import_jsonl(store: Store, fh: IO[bytes], label: str | None = None) -> int:
    """Read a whole export, check it, then write it in one transaction (all or nothing)."""
    lines = _lines(fh)
    try:
        _, header = next(lines)
    except StopIteration:
        raise ImportFormatError("empty file") from None
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise ImportFormatError(f"not a {FORMAT} version {VERSION} export")
    meta = header.get("run")
    if not isinstance(meta, dict):
        raise ImportFormatError("the header has no run")
    procs: list[dict[str, Any]] = []
    found: dict[tuple[bytes, str, int], list[Any]] = {}
    try:
        for number, obj in lines:
            if "process" in obj:
                p = obj["process"]
                procs.append(
                    {
                        "pid": int(p["pid"]),
                        "ppid": int(p["ppid"]),
                        "argv": b"\0".join(decode_bytes(w) for w in p.get("argv", [])),
                        "exit_code": p.get("exit_code"),
                        "signal": p.get("signal"),
                    }
                )
            elif "access" in obj:
                a = obj["access"]
                kind = str(a["kind"])
                if kind not in ("exec", "open", "stat", "list", "mkdir", "chdir"):
                    raise ImportFormatError(f"line {number}: unknown kind {kind!r}")
                key = (decode_bytes(a["path"]), kind, int(a["errno"]))
                entry = found.setdefault(key, [0, float(a.get("first_seen", 0.0)), 0])
                entry[0] += int(a.get("count", 1))
                entry[2] |= int(a.get("flags", 0))
            else:
                raise ImportFormatError(f"line {number}: neither a process nor an access")
    except (KeyError, TypeError, ValueError) as exc:
        raise ImportFormatError(f"malformed export: {exc!r}") from None
    status = meta.get("status") if meta.get("status") in STATUSES else "completed"
    if status in ("queued", "running"):
        status = "interrupted"  # exported while it ran: it will never finish here
    stamp = now()
    with store.engine.begin() as conn:
        run_id = conn.execute(
            insert(Run)
            .values(
                label=label if label is not None else meta.get("label"),
                argv=b"\0".join(decode_bytes(w) for w in meta.get("argv", [])),
                root=decode_bytes(meta.get("root", "/")),
                backend=str(meta.get("backend", "ptrace"))[:32],
                status=status,
                exit_code=meta.get("exit_code"),
                signal=meta.get("signal"),
                seconds=meta.get("seconds"),
                created_at=_parse_time(meta.get("created_at")) or stamp,
                started_at=_parse_time(meta.get("started_at")),
                ended_at=_parse_time(meta.get("ended_at")),
                heartbeat_at=None,
                host=str(meta.get("host", "imported"))[:255],
                owner_pid=None,
                owner_start=None,
                events=int(meta.get("events", 0)),
                accesses=len(found),
                processes=len(procs),
                lost_events=int(meta.get("lost_events", 0)),
                error=meta.get("error"),
            )
            .returning(Run.id)
        ).scalar_one()
        if procs:
            conn.execute(insert(Process), [{"run_id": run_id, **p} for p in procs])
        if found:
            ids = intern_paths(store, conn.connection.cursor(), {k[0] for k in found})
            conn.execute(
                insert(Access),
                [
                    {
                        "run_id": run_id,
                        "path_id": ids[path],
                        "kind": kind,
                        "errno": err,
                        "count": count,
                        "first_seen": first,
                        "flags": flags,
                    }
                    for (path, kind, err), (count, first, flags) in found.items()
                ],
            )
    return int(run_id)


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None


def import_strace(store: Store, path: str, label: str | None = None) -> int:
    """Record an ``strace -f -o`` log as a run (backend ``strace-log``)."""
    log = StraceLog(_read_lines(path))
    run_id = start_run(store, [], label=label, backend="strace-log")
    recorder = Recorder(store, run_id)
    try:
        recorder.record(log.events())
    except (StraceLogError, OSError) as exc:
        delete_run(store, run_id)  # nothing half-imported stays behind
        raise ImportFormatError(f"{path}: {exc}") from None
    result = log.result
    root = result.processes.get(log.root_pid) if result and log.root_pid is not None else None
    recorder.finish(result, "completed")
    with store.engine.begin() as conn:
        conn.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(argv=b"\0".join(root.argv if root else ()), owner_pid=None, owner_start=None)
        )
    return run_id


def _read_lines(path: str) -> Iterator[bytes]:
    with open(os.fsencode(path), "rb") as fh:
        yield from fh
