"""The trace store's commands: ``trace``, ``runs ...``, ``minimize`` and ``db ...``.

``minicon trace -- CMD`` records one run; ``minicon minimize --label L -t out.tar`` cuts one
filesystem from the union of many runs (several workloads, a long test suite) and the static
closure of the executables named.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import sys
from typing import Any

import click

from minimizer import modes
from minimizer.errors import MinimizerError, show
from minimizer.fsview import RootFS
from store import migrate, queries, transfer
from store.errors import StoreError
from store.models import Run

from .common import db_option, fail, open_store, setup_logging
from .cutting import check_outputs, cut, output_options

CONTEXT = {"help_option_names": ["-h", "--help"]}


def _words(argv: bytes) -> list[str]:
    return [os.fsdecode(w) for w in argv.split(b"\0")] if argv else []


def _command(run: Run) -> str:
    return shlex.join(_words(run.argv))


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


# -- runs ----------------------------------------------------------------------------------------


@click.group("runs", context_settings=CONTEXT)
def runs() -> None:
    """List, inspect, compare, export, import and delete recorded runs."""


def _run_dict(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "label": run.label,
        "argv": [transfer.encode_bytes(w) for w in run.argv.split(b"\0")] if run.argv else [],
        "root": transfer.encode_bytes(run.root),
        "backend": run.backend,
        "status": run.status,
        "exit_code": run.exit_code,
        "signal": run.signal,
        "created_at": run.created_at.isoformat() if run.created_at else None,
        "ended_at": run.ended_at.isoformat() if run.ended_at else None,
        "host": run.host,
        "events": run.events,
        "accesses": run.accesses,
        "processes": run.processes,
        "lost_events": run.lost_events,
        "error": run.error,
    }


@runs.command("list", context_settings=CONTEXT)
@click.option("--label", metavar="LABEL", help="Only runs with this label.")
@click.option("--status", metavar="STATUS", help="Only runs with this status.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array instead of a table.")
@db_option
def runs_list(label: str | None, status: str | None, as_json: bool, db_url: str | None) -> None:
    """The recorded runs, oldest first."""
    with open_store(db_url) as store:
        found = queries.list_runs(store, label=label, status=status)
    if as_json:
        click.echo(json.dumps([_run_dict(r) for r in found], indent=1))
        return
    click.echo(f"{'ID':>5}  {'STATUS':<11} {'LABEL':<16} {'EVENTS':>9} {'UNIQUE':>7}  COMMAND")
    for r in found:
        click.echo(
            f"{r.id:>5}  {r.status:<11} {(r.label or '-')[:16]:<16} {r.events:>9} "
            f"{r.accesses:>7}  {_command(r)}"
        )


@runs.command("show", context_settings=CONTEXT)
@click.argument("run_id", type=int)
@click.option("--top", default=10, show_default=True, help="How many dirs and failures to list.")
@db_option
def runs_show(run_id: int, top: int, db_url: str | None) -> None:
    """One run: its outcome, processes, accesses per kind, busiest dirs, failed lookups."""
    with open_store(db_url) as store:
        try:
            run = queries.get_run(store, run_id)
            procs = queries.processes(store, run_id)
            counts = queries.kind_counts(store, run_id)
            rows = queries.accesses(store, run_id)
        except StoreError as exc:
            fail(str(exc))
    outcome = (
        f"exit {run.exit_code}"
        if run.exit_code is not None
        else f"signal {run.signal}"
        if run.signal is not None
        else "-"
    )
    click.echo(f"run {run.id}: {run.status} ({outcome})")
    click.echo(f"  command:  {_command(run)}")
    click.echo(f"  label:    {run.label or '-'}")
    click.echo(f"  root:     {show(run.root)}   backend: {run.backend}   host: {run.host}")
    click.echo(f"  started:  {_when(run.started_at)}   ended: {_when(run.ended_at)}")
    click.echo(f"  events:   {run.events} recorded, {run.accesses} unique, {run.lost_events} lost")
    if run.error:
        click.echo(f"  error:    {run.error}")
    click.echo("accesses per kind (unique / syscalls):")
    for kind, (unique, total) in sorted(counts.items()):
        click.echo(f"  {kind:<6} {unique:>7} / {total}")
    click.echo(f"processes ({len(procs)}):")
    for p in procs[:50]:
        end = f"exit {p.exit_code}" if p.exit_code is not None else f"signal {p.signal}"
        click.echo(f"  {p.pid:>7} <- {p.ppid:<7} {end:<10} {shlex.join(_words(p.argv))}")
    if len(procs) > 50:
        click.echo(f"  ... {len(procs) - 50} more")
    click.echo("busiest directories:")
    for d, n in queries.top_dirs(rows, top):
        click.echo(f"  {n:>6}  {show(d)}")
    failed = sorted((r for r in rows if r.errno), key=lambda r: -r.count)[:top]
    click.echo("failed lookups:")
    for r in failed:
        name = os.strerror(r.errno).split(" (")[0]
        click.echo(f"  {r.count:>6}  {r.kind:<5} {show(r.path)}  ({name})")


@runs.command("files", context_settings=CONTEXT)
@click.argument("run_id", type=int)
@click.option("--mode", type=click.Choice(modes.MODES), default="skinny", show_default=True)
@db_option
def runs_files(run_id: int, mode: str, db_url: str | None) -> None:
    """What a mode takes from a run: file, dir (created) or whole (with contents) lines."""
    with open_store(db_url) as store:
        try:
            accesses = queries.merged(store, queries.select_runs(store, [run_id]))
        except StoreError as exc:
            fail(str(exc))
    sel = modes.select(accesses, mode)
    for what, entries in (("file", sel.files), ("dir", sel.dirs), ("whole", sel.whole)):
        for path, why in sorted(entries.items()):
            click.echo(f"{what}\t{show(path)}\t{why}")


@runs.command("diff", context_settings=CONTEXT)
@click.argument("a", type=int)
@click.argument("b", type=int)
@db_option
def runs_diff(a: int, b: int, db_url: str | None) -> None:
    """Accesses only in run A (-) and only in run B (+)."""
    with open_store(db_url) as store:
        try:
            left, right = queries.diff(store, a, b)
        except StoreError as exc:
            fail(str(exc))
    for sign, rows in (("-", left), ("+", right)):
        for path, kind, ok in rows:
            click.echo(f"{sign} {kind:<5} {'ok' if ok else 'failed':<6} {show(path)}")


@runs.command("rm", context_settings=CONTEXT)
@click.argument("run_ids", type=int, nargs=-1, required=True)
@db_option
def runs_rm(run_ids: tuple[int, ...], db_url: str | None) -> None:
    """Delete runs with everything recorded for them."""
    with open_store(db_url) as store:
        try:
            queries.select_runs(store, run_ids)  # every id exists, or nothing is deleted
            for run_id in run_ids:
                queries.delete_run(store, run_id)
        except StoreError as exc:
            fail(str(exc))


@runs.command("export", context_settings=CONTEXT)
@click.argument("run_id", type=int)
@click.option("-o", "--output", metavar="FILE", help="Write here instead of standard output.")
@db_option
def runs_export(run_id: int, output: str | None, db_url: str | None) -> None:
    """Write a run as JSONL (`runs import` reads it back, here or in another store)."""
    with open_store(db_url) as store:
        try:
            if output is None:
                transfer.export_run(store, run_id, sys.stdout.buffer)
                sys.stdout.buffer.flush()
            else:
                tmp = f"{output}.tmp{os.getpid()}"
                try:
                    with open(tmp, "wb") as fh:
                        transfer.export_run(store, run_id, fh)
                    os.replace(tmp, output)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
        except StoreError as exc:
            fail(str(exc))
        except BrokenPipeError:  # `| head`: the reader has seen enough
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        except OSError as exc:
            fail(f"{output}: {exc.strerror}")


@runs.command("import", context_settings=CONTEXT)
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--label", metavar="LABEL", help="Label the imported run.")
@db_option
def runs_import(file: str, label: str | None, db_url: str | None) -> None:
    """Import a run: minicon's JSONL export, or an `strace -f [-y] -o FILE` log."""
    with open_store(db_url) as store:
        try:
            run_id = transfer.import_file(store, file, label)
        except StoreError as exc:
            fail(str(exc))
    click.echo(run_id)


# -- minimize ------------------------------------------------------------------------------------


@click.command("minimize", context_settings=CONTEXT)
@click.argument("targets", nargs=-1, metavar="[EXECUTABLES|FILES|FOLDERS]...")
@click.option("--run", "run_ids", type=int, multiple=True, metavar="ID", help="Merge this run.")
@click.option("--label", "labels", multiple=True, metavar="LABEL", help="Merge runs so labelled.")
@click.option("--all-runs", is_flag=True, help="Merge every run in the store.")
@click.option("--mode", type=click.Choice(modes.MODES), default="skinny", show_default=True)
@output_options
@db_option
def minimize(**kw: Any) -> None:
    """Cut one filesystem from the union of recorded runs and the named executables.

    Every run's root must be the --root given (the default /).
    """
    setup_logging(kw["verbose"], kw["debug"], kw["quiet"])
    check_outputs(kw)
    if not (kw["run_ids"] or kw["labels"] or kw["all_runs"]):
        raise click.UsageError("no runs: give --run ID, --label LABEL or --all-runs")
    with open_store(kw["db_url"]) as store:
        try:
            if kw["all_runs"]:
                selected = [r.id for r in queries.list_runs(store)]
            else:
                selected = queries.select_runs(store, kw["run_ids"], kw["labels"])
            if not selected:
                fail("no run matches")
            root = os.path.realpath(os.fsencode(kw["root"]))
            others = sorted(
                {
                    show(r.root)
                    for r in (queries.get_run(store, i) for i in selected)
                    if os.path.realpath(r.root) != root
                }
            )
            if others:
                fail(f"runs of another root ({', '.join(others)}): pass it with --root")
            accesses = queries.merged(store, selected)
        except StoreError as exc:
            fail(str(exc))

    def traced(fs: RootFS) -> modes.Selection:
        return modes.select(accesses, kw["mode"])

    try:
        cut(kw, traced=traced)
    except MinimizerError as exc:
        fail(str(exc))


# -- db ------------------------------------------------------------------------------------------


@click.group("db", context_settings=CONTEXT)
def db() -> None:
    """The trace store's schema."""


@db.command("upgrade", context_settings=CONTEXT)
@db_option
def db_upgrade(db_url: str | None) -> None:
    """Create the store or bring its schema to this version's (also done on every open)."""
    with open_store(db_url) as store:
        click.echo(f"{store.describe()}: schema {migrate.current(store.engine)}")


@db.command("downgrade", context_settings=CONTEXT, hidden=True)
@click.argument("revision")
@db_option
def db_downgrade(revision: str, db_url: str | None) -> None:
    """Migrate the schema down to REVISION ('base' drops every table)."""
    from store.db import Store

    try:
        store = Store(db_url, upgrade=False)
        migrate.downgrade(store.engine, revision)
    except StoreError as exc:
        fail(str(exc))
    click.echo(f"{store.describe()}: schema {migrate.current(store.engine)}")
