"""The ``minicon`` command line: the original's options, and room for subcommands.

``minicon [OPTIONS] [EXECUTABLES|FILES|FOLDERS]...`` is the original's form and stays the default;
``minicon shrink ...`` is the same command by name. Later subcommands (``trace``, ``runs``,
``minimize``, ``serve``) register on :data:`main`; a first argument that names none of them goes to
``shrink``. Errors of the library are mapped to messages and exit codes here and only here:
2 for usage, 1 for failures.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from importlib import metadata
from typing import Any, NoReturn

import click

from minimizer import closure as closure_mod
from minimizer import modes, writers
from minimizer.errors import MinimizerError, UnresolvedLibrariesError, show
from minimizer.fsview import RootFS, is_under, normalize
from minimizer.plan import Plan
from tracer.errors import TracerError

from . import tracing
from .plugins import Execution, PluginError, Plugins, parse_execution

log = logging.getLogger("minicon")

EXAMPLES = """\b
Examples:
  minicon -t uc1.tar bash ls mkdir less cat find
  minicon -t uc1.tar -E bash -E ls -E 'find / -maxdepth 1'
  minicon --root /srv/rootfs/debian -r /tmp/min -E bash -I /srv/app -e /usr/share/doc
  minicon -t - -E ls | tar tv
  minicon --list --root /srv/rootfs/debian python3
\b
Then: mkdir d && tar xpf uc1.tar -C d && chroot d /bin/ls /
\b
Plugins:
  --plugin=scripts:includefolders   also keep the module folders of script interpreters
  --plugin=strace[:seconds=N][:mode=skinny|slim|regular|loose][:execfile=FILE]
                 [:showoutput][:exclude=PREFIX]   trace every -E command and named
                 executable (as root) and keep what they used; with --root they run
                 chrooted in a throw-away overlay of it; exclude= drops traced paths only
\b
Exit status: 0 success, 1 failure (nothing half-written is left), 2 usage error.
"""


class MiniconGroup(click.Group):
    """A group whose default command is ``shrink``, so the original's form keeps working."""

    default_command = "shrink"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or args[0] not in self.commands:
            if args[:1] == ["--version"]:
                click.echo(f"minicon {version()}")
                ctx.exit(0)
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        cmd = self.commands[self.default_command]
        with click.Context(cmd, info_name=ctx.info_name, parent=ctx.parent) as sub:
            cmd.format_help(sub, formatter)
        self.format_commands(ctx, formatter)


class DefaultCommand(click.Command):
    """The default command shows the original's usage line: ``minicon [OPTIONS] ...``."""

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        prog = ctx.parent.info_name if ctx.parent is not None else ctx.info_name
        formatter.write_usage(prog or "minicon", " ".join(self.collect_usage_pieces(ctx)))


def version() -> str:
    try:
        return metadata.version("minicon")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@click.group(cls=MiniconGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """minicon: shrink a container filesystem to the files its applications use."""


def _setup_logging(verbose: bool, debug: bool, quiet: bool) -> None:
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    if quiet:
        level = logging.ERROR
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    for name in ("minicon", "minimizer"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"minicon: {record.levelname.lower()}: {record.getMessage()}"


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"minicon: error: {message}", err=True)
    sys.exit(code)


@main.command(
    "shrink",
    cls=DefaultCommand,
    epilog=EXAMPLES,
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Minimize a filesystem (the default command).",
)
@click.argument("targets", nargs=-1, metavar="[EXECUTABLES|FILES|FOLDERS]...")
@click.option(
    "-t",
    "--tar-file",
    "--tarfile",
    "tar_file",
    metavar="FILE",
    help="Write the result as a tar file ('-' for standard output).",
)
@click.option("-r", "--rootfs", metavar="DIR", help="Write the result into this directory.")
@click.option(
    "-E",
    "--execution",
    "executions",
    multiple=True,
    metavar="CMDLINE",
    help="A sample command line; its program is kept (repeatable).",
)
@click.option(
    "-I",
    "--include",
    "includes",
    multiple=True,
    metavar="PATH",
    help="Keep this file or whole folder; wins over excludes (repeatable).",
)
@click.option(
    "-e",
    "--exclude",
    "excludes",
    multiple=True,
    metavar="PREFIX",
    help="Leave out paths under this prefix, whole components only (repeatable).",
)
@click.option(
    "-l/-L",
    "--ldconfig/--no-ldconfig",
    default=True,
    show_default=True,
    help="Write an ld.so.conf and ld.so.cache that match the kept libraries.",
)
@click.option(
    "--plugin",
    "plugin_specs",
    multiple=True,
    metavar="NAME[:K=V...]",
    help="Enable a plugin and set its options (strace, scripts).",
)
@click.option("--plugin-all", is_flag=True, help="Enable every plugin with its defaults.")
@click.option(
    "--root",
    "root",
    default="/",
    metavar="DIR",
    show_default=True,
    help="The root filesystem to minimize; every lookup stays inside it.",
)
@click.option(
    "--list", "list_paths", is_flag=True, help="Print every kept path with the reason it was kept."
)
@click.option("--strict", is_flag=True, help="Fail when a needed library is not found.")
@click.option("-f", "--force", is_flag=True, help="Write into a non-empty --rootfs directory.")
@click.option("-v", "--verbose", is_flag=True, help="Say more (also prints the kept paths).")
@click.option("--debug", is_flag=True, help="Say everything.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.version_option(version(), "--version", prog_name="minicon", message="%(prog)s %(version)s")
def shrink(**kw: Any) -> None:
    """Minimize a root filesystem to the given executables, files and folders.

    Executables are names looked up on the root's PATH, or paths. Their ELF libraries and
    interpreters, script interpreters and every symlink on the way are added; nothing from the
    root is executed. Paths are inside --root; relative ones are taken from the current
    directory when the root is /.
    """
    _setup_logging(kw["verbose"], kw["debug"], kw["quiet"])
    try:
        plugins = Plugins()
        if kw["plugin_all"]:
            plugins.enable_all()
        for spec in kw["plugin_specs"]:
            plugins.add(spec)
        executions = [parse_execution(e) for e in kw["executions"]]
    except PluginError as exc:
        raise click.UsageError(str(exc)) from None
    if not (kw["tar_file"] or kw["rootfs"] or kw["list_paths"]):
        raise click.UsageError("nothing to write: give -t FILE, -r DIR or --list")
    if not (kw["targets"] or executions or kw["includes"]):
        raise click.UsageError("nothing to keep: name executables, -E command lines or -I paths")
    try:
        _shrink(kw, plugins, executions)
    except MinimizerError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted", 130)


def _user_path(text: str, fs: RootFS) -> bytes:
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


def _shrink(kw: dict[str, Any], plugins: Plugins, executions: list[Execution]) -> None:
    started = time.monotonic()
    if kw["tar_file"] and kw["tar_file"] != "-":
        writers.check_output_file(kw["tar_file"])
    fs = RootFS(kw["root"])
    options = closure_mod.Options(
        excludes=[_user_path(e, fs) for e in kw["excludes"]],
        include_folders=plugins.scripts.includefolders,
        hidden=_hidden_outputs(fs, kw),
    )
    cl = closure_mod.Closure(fs, options)
    if plugins.strace is not None:
        _trace_into(cl, fs, plugins, executions, kw)
    for target in kw["targets"]:
        raw = os.fsencode(target)
        if b"/" in raw:
            cl.add_path(_user_path(target, fs), f"named on the command line: {target}")
        else:
            cl.add_executable(raw, f"executable named on the command line: {target}")
    for ex in executions:
        prog = os.fsencode(ex.argv[0])
        if b"/" in prog:
            prog = _user_path(ex.argv[0], fs)
        cl.add_executable(prog, f"program of -E {' '.join(ex.argv)}")
    for inc in kw["includes"]:
        cl.add_path(_user_path(inc, fs), f"-I {inc}")
    plan = cl.finish(ldconfig=kw["ldconfig"])
    if plan.missing_libraries and kw["strict"]:
        names = ", ".join(f"{show(n)} (for {show(b)})" for n, b in plan.missing_libraries)
        raise UnresolvedLibrariesError(f"--strict: libraries not found: {names}")
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


def _trace_into(
    cl: closure_mod.Closure,
    fs: RootFS,
    plugins: Plugins,
    executions: list[Execution],
    kw: dict[str, Any],
) -> None:
    """Run the sample commands under the tracer and keep what the mode selects."""
    assert plugins.strace is not None
    names = [t for t in kw["targets"] if "/" not in t or fs.is_program(_user_path(t, fs))]
    try:
        jobs = tracing.plan_jobs(plugins.strace, executions, names)
        accesses = tracing.run_jobs(jobs, None if fs.is_host_root else fs.root)
    except PluginError as exc:
        raise click.UsageError(str(exc)) from None
    except (tracing.TracingFailed, TracerError) as exc:
        _fail(str(exc))
    # the plugin's excludes drop what the programs used, not what -I or the analysis adds
    excludes = [_user_path(e, fs) for e in plugins.strace.excludes]
    kept = [a for a in accesses if not any(is_under(a.path, e) for e in excludes)]
    cl.add_traced(modes.select(kept, plugins.strace.mode))


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
