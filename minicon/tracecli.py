"""``minicon trace -- CMD``: record one traced run in the trace store.

Kept apart from the other store commands: it imports the tracer and the store's recording path
only (no SQLAlchemy, no minimizer), so a run costs the traced command and little more.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from store.errors import StoreError
from store.ingest import Recorder, claim_run
from store.recording import TraceRequest, trace_run
from tracer.errors import TracerError
from tracer.ptrace_backend import CLEAN_ENV
from tracer.sandbox import chroot_for

from .common import db_option, fail, open_store, setup_logging

CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.command("trace", context_settings=CONTEXT)
@click.argument("argv", nargs=-1, metavar="-- CMD [ARGS]...")
@click.option("--label", metavar="LABEL", help="Label the run (runs are merged by label).")
@click.option(
    "--root",
    default="/",
    metavar="DIR",
    show_default=True,
    help="Run chrooted in a throw-away overlay of this root filesystem.",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Kill the traced tree after this long (0: run until it exits).",
)
@click.option("--cwd", default="/", show_default=True, help="Working directory (in the root).")
@click.option("--env", "env", multiple=True, metavar="NAME=VALUE", help="Set an env variable.")
@click.option("--show-output", is_flag=True, help="Let the command's output through.")
@click.option(
    "--backend",
    type=click.Choice(["ptrace", "ebpf", "auto"]),
    default="ptrace",
    show_default=True,
    help="ptrace (exact, stops the program at each recorded call), ebpf (bcc tracepoints, "
    "no stops), auto (eBPF when it can load here).",
)
@click.option("--dump-bpf", is_flag=True, hidden=True, help="Print the eBPF program and exit.")
@click.option("--run-id", type=int, hidden=True, help="Record into this queued run (daemon).")
@db_option
def trace(**kw: Any) -> None:
    """Record one traced run of CMD in the trace store and print its id.

    CMD runs with stdin from /dev/null, a clean environment and, unless --show-output, its
    output hidden. The exit status is 0 when the run was recorded, whatever CMD returned
    (see `minicon runs show ID`); 1 when CMD could not be started or tracing failed.
    """
    setup_logging()
    if kw["dump_bpf"]:
        from tracer.ebpf_program import bpf_program

        click.echo(bpf_program())
        return
    if not kw["argv"]:
        raise click.UsageError("no command: minicon trace [OPTIONS] -- CMD [ARGS]...")
    env = dict(CLEAN_ENV)
    for item in kw["env"]:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.UsageError(f"--env {item!r}: expected NAME=VALUE")
        env[name] = value
    root = os.path.realpath(os.fsencode(kw["root"]))
    if not os.path.isdir(root):
        raise click.UsageError(f"--root {kw['root']}: not a directory")
    with open_store(kw["db_url"]) as store:
        request = TraceRequest(
            list(kw["argv"]),
            label=kw["label"],
            root=root,
            seconds=kw["seconds"],
            env=env,
            cwd=kw["cwd"],
            show_output=kw["show_output"],
            backend=kw["backend"],
        )
        run_id = kw["run_id"]
        if run_id is not None and not claim_run(store, run_id):
            fail(f"run {run_id} is not queued (cancelled?)")
        try:
            with chroot_for(root) as chroot:
                request.chroot = chroot
                outcome = trace_run(store, request, run_id)
        except (TracerError, StoreError) as exc:
            if run_id is not None:  # a queued run must not stay "running"
                Recorder(store, run_id).finish(None, "failed", error=str(exc))
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted (the run is kept, marked interrupted)", 130)
    click.echo(outcome.run_id)
    click.echo(f"minicon: {outcome.describe()}", err=True)
    if outcome.status == "failed":
        sys.exit(1)
