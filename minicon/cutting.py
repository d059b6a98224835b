"""What the minimizing commands share: the output options and the cut.

The cut is the minimizer's half of every command: a closure over the root (named executables,
-E programs, -I paths, and whatever tracing contributes), then the tar, the directory or the list.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from minimizer import writers
from minimizer.cut import Spec, make_plan
from minimizer.errors import show
from minimizer.fsview import RootFS, normalize
from minimizer.modes import Selection
from minimizer.plan import Plan

from .plugins import Execution

F = TypeVar("F", bound=Callable[..., Any])
TracedHook = Callable[[RootFS], Selection]  # what tracing contributes, given the root


def output_options(f: F) -> F:
    """The options that say what to keep besides the named programs, and where to write."""
    decorators = [
        click.option(
            "-t",
            "--tar-file",
            "--tarfile",
            "tar_file",
            metavar="FILE",
            help="Write the result as a tar file ('-' for standard output).",
        ),
        click.option("-r", "--rootfs", metavar="DIR", help="Write the result into this directory."),
        click.option(
            "-I",
            "--include",
            "includes",
            multiple=True,
            metavar="PATH",
            help="Keep this file or whole folder; wins over excludes (repeatable).",
        ),
        click.option(
            "-e",
            "--exclude",
            "excludes",
            multiple=True,
            metavar="PREFIX",
            help="Leave out paths under this prefix, whole components only (repeatable).",
        ),
        click.option(
            "-l/-L",
            "--ldconfig/--no-ldconfig",
            default=True,
            show_default=True,
            help="Write an ld.so.conf and ld.so.cache that match the kept libraries.",
        ),
        click.option(
            "--root",
            "root",
            default="/",
            metavar="DIR",
            show_default=True,
            help="The root filesystem to minimize; every lookup stays inside it.",
        ),
        click.option(
            "--list",
            "list_paths",
            is_flag=True,
            help="Print every kept path with the reason it was kept.",
        ),
        click.option("--strict", is_flag=True, help="Fail when a needed library is not found."),
        click.option(
            "-f", "--force", is_flag=True, help="Write into a non-empty --rootfs directory."
        ),
        click.option(
            "-v", "--verbose", is_flag=True, help="Say more (also prints the kept paths)."
        ),
        click.option("--debug", is_flag=True, help="Say everything."),
        click.option("-q", "--quiet", is_flag=True, help="Only errors."),
    ]
    for decorate in reversed(decorators):
        f = decorate(f)
    return f


def check_outputs(kw: dict[str, Any]) -> None:
    if not (kw["tar_file"] or kw["rootfs"] or kw["list_paths"]):
        raise click.UsageError("nothing to write: give -t FILE, -r DIR or --list")


def user_path(text: str, fs: RootFS) -> bytes:
    """A path the user typed, inside the root (relative: from the cwd on /, else the root's /)."""
    raw = os.fsencode(text)
    if not raw.startswith(b"/"):
        raw = os.fsencode(os.path.abspath(text)) if fs.is_host_root else b"/" + raw
    return normalize(raw)


def _hidden_outputs(fs: RootFS, kw: dict[str, Any]) -> list[bytes]:
    """The outputs, as paths inside the root, so a walk never archives its own output."""
    out = []
    for value in (kw["tar_file"], kw["rootfs"]):
        if value and value != "-":
            real = os.path.realpath(os.fsencode(os.path.abspath(value)))
            if fs.is_host_root:
                out.append(real)
            elif real.startswith(fs.root + b"/"):
                out.append(real[len(fs.root) :])
    return out


def cut(
    kw: dict[str, Any],
    *,
    executions: Sequence[Execution] = (),
    include_folders: bool = False,
    traced: TracedHook | None = None,
) -> None:
    """Build the closure and write what the options ask for. MinimizerErrors propagate."""
    started = time.monotonic()
    if kw["tar_file"] and kw["tar_file"] != "-":
        writers.check_output_file(kw["tar_file"])
    fs = RootFS(kw["root"])
    spec = Spec(
        root=fs.root or b"/",
        excludes=[user_path(e, fs) for e in kw["excludes"]],
        include_folders=include_folders,
        hidden=_hidden_outputs(fs, kw),
        ldconfig=kw["ldconfig"],
        strict=kw["strict"],
        traced=traced(fs) if traced is not None else None,
    )
    for target in kw.get("targets", ()):
        raw = os.fsencode(target)
        if b"/" in raw:
            spec.named.append((user_path(target, fs), f"named on the command line: {target}"))
        else:
            spec.named.append((raw, f"executable named on the command line: {target}"))
    for ex in executions:
        prog = os.fsencode(ex.argv[0])
        if b"/" in prog:
            prog = user_path(ex.argv[0], fs)
        spec.named.append((prog, f"program of -E {' '.join(ex.argv)}"))
    spec.includes = [(user_path(inc, fs), f"-I {inc}") for inc in kw["includes"]]
    _, plan = make_plan(spec, fs)
    to_stdout = kw["tar_file"] == "-"
    if kw["list_paths"] or kw["verbose"]:
        _print_plan(plan, err=to_stdout or not kw["list_paths"])
    if kw["rootfs"]:
        stats = writers.write_rootfs(plan, fs, kw["rootfs"], force=kw["force"])
        _summary(kw, f"wrote {kw['rootfs']}", stats, started)
    if kw["tar_file"]:
        if to_stdout:
            stats = writers.write_tar(plan, fs, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            stats = writers.write_tar_file(plan, fs, kw["tar_file"])
        _summary(kw, f"wrote {'standard output' if to_stdout else kw['tar_file']}", stats, started)


def _print_plan(plan: Plan, *, err: bool) -> None:
    for path, kept in plan.ordered():
        click.echo(f"{show(path)}\t{kept.reason}", err=err)


def _summary(kw: dict[str, Any], what: str, stats: writers.Stats, started: float) -> None:
    if kw["quiet"]:
        return
    took = time.monotonic() - started
    click.echo(
        f"minicon: {what}: {stats.entries} entries, {stats.bytes / 1e6:.2f} MB in {took:.2f} s",
        err=True,
    )
