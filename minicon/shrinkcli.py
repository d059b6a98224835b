"""``minicon [OPTIONS] [EXECUTABLES|FILES|FOLDERS]...``: the original's command (``shrink``)."""

from __future__ import annotations

from typing import Any

import click

from minimizer import modes
from minimizer.errors import MinimizerError
from minimizer.fsview import RootFS, is_under
from minimizer.modes import Selection
from tracer.errors import TracerError

from .cli import version
from .common import db_option, fail, open_store, setup_logging
from .cutting import check_outputs, cut, output_options, user_path
from .plugins import Execution, PluginError, Plugins, StraceOptions, parse_execution

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


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"minicon {version()}")
        ctx.exit(0)


class DefaultCommand(click.Command):
    """The default command shows the original's usage line: ``minicon [OPTIONS] ...``."""

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        prog = ctx.parent.info_name if ctx.parent is not None else ctx.info_name
        formatter.write_usage(prog or "minicon", " ".join(self.collect_usage_pieces(ctx)))


@click.command(
    "shrink",
    cls=DefaultCommand,
    epilog=EXAMPLES,
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Minimize a filesystem (the default command).",
)
@click.argument("targets", nargs=-1, metavar="[EXECUTABLES|FILES|FOLDERS]...")
@click.option(
    "-E",
    "--execution",
    "executions",
    multiple=True,
    metavar="CMDLINE",
    help="A sample command line; its program is kept (repeatable).",
)
@output_options
@click.option(
    "--plugin",
    "plugin_specs",
    multiple=True,
    metavar="NAME[:K=V...]",
    help="Enable a plugin and set its options (strace, scripts).",
)
@click.option("--plugin-all", is_flag=True, help="Enable every plugin with its defaults.")
@click.option("--label", metavar="LABEL", help="Label of the runs --plugin=strace records.")
@db_option
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and exit.",
)
def shrink(**kw: Any) -> None:
    """Minimize a root filesystem to the given executables, files and folders.

    Executables are names looked up on the root's PATH, or paths. Their ELF libraries and
    interpreters, script interpreters and every symlink on the way are added; nothing from the
    root is executed. Paths are inside --root; relative ones are taken from the current
    directory when the root is /.
    """
    setup_logging(kw["verbose"], kw["debug"], kw["quiet"])
    try:
        plugins = Plugins()
        if kw["plugin_all"]:
            plugins.enable_all()
        for spec in kw["plugin_specs"]:
            plugins.add(spec)
        executions = [parse_execution(e) for e in kw["executions"]]
    except PluginError as exc:
        raise click.UsageError(str(exc)) from None
    check_outputs(kw)
    if not (kw["targets"] or executions or kw["includes"]):
        raise click.UsageError("nothing to keep: name executables, -E command lines or -I paths")
    traced = None
    if plugins.strace is not None:
        strace = plugins.strace

        def traced(fs: RootFS) -> Selection:
            return _trace(fs, strace, executions, kw)

    try:
        cut(
            kw,
            executions=executions,
            include_folders=plugins.scripts.includefolders,
            traced=traced,
        )
    except MinimizerError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", 130)


def _trace(
    fs: RootFS,
    strace: StraceOptions,
    executions: list[Execution],
    kw: dict[str, Any],
) -> Selection:
    """Run the sample commands under the tracer, record them as runs in the store; what the
    mode selects from them."""
    from store import queries
    from store.errors import StoreError

    from . import tracing

    names = [t for t in kw["targets"] if "/" not in t or fs.is_program(user_path(t, fs))]
    try:
        jobs = tracing.plan_jobs(strace, executions, names)
    except PluginError as exc:
        raise click.UsageError(str(exc)) from None
    with open_store(kw["db_url"]) as store:
        try:
            run_ids = tracing.run_jobs(store, jobs, fs.root or b"/", label=kw["label"])
            accesses = queries.merged(store, run_ids)
        except (tracing.TracingFailed, TracerError, StoreError) as exc:
            fail(str(exc))
    # the plugin's excludes drop what the programs used, not what -I or the analysis adds
    excludes = [user_path(e, fs) for e in strace.excludes]
    kept = [a for a in accesses if not any(is_under(a.path, e) for e in excludes)]
    return modes.select(kept, strace.mode)
