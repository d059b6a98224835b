"""The ``minicon`` command line: the original's options, and room for subcommands.

``minicon [OPTIONS] [EXECUTABLES|FILES|FOLDERS]...`` is the original's form and stays the default;
``minicon shrink ...`` is the same command by name. The subcommands (``shrink``, ``trace``,
``runs``, ``minimize``, ``db``, ``serve``) live in modules of their own, imported only when asked
for: ``minicon trace`` loads neither the minimizer nor SQLAlchemy. A first argument that names
none of them goes to ``shrink``. Errors of the library are mapped to messages and exit codes in
the commands and only there: 2 for usage, 1 for failures.
"""

from __future__ import annotations

import importlib
from typing import ClassVar

import click


class MiniconGroup(click.Group):
    """A group whose default command is ``shrink``, so the original's form keeps working."""

    default_command = "shrink"
    # each command's module is imported when it is asked for: the store's import SQLAlchemy
    # (0.2 s), trace neither SQLAlchemy nor the minimizer
    lazy: ClassVar[dict[str, str]] = {
        "shrink": "shrinkcli",
        "trace": "tracecli",
        "runs": "storecli",
        "minimize": "storecli",
        "db": "storecli",
        "serve": "servecli",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in self.lazy:
            module = importlib.import_module(f"minicon.{self.lazy[name]}")
            command = getattr(module, name)
            assert isinstance(command, click.Command)
            self.add_command(command, name)
        return self.commands.get(name)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in self.lazy):
            if args[:1] == ["--version"]:
                click.echo(f"minicon {version()}")
                ctx.exit(0)
            if args in (["-h"], ["--help"]):  # the group's help: shrink's, then the commands
                click.echo(ctx.get_help())
                ctx.exit(0)
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        cmd = self.get_command(ctx, self.default_command)
        assert cmd is not None
        with click.Context(cmd, info_name=ctx.info_name, parent=ctx.parent) as sub:
            cmd.format_help(sub, formatter)
        self.format_commands(ctx, formatter)


def version() -> str:
    from importlib import metadata

    try:
        return metadata.version("minicon")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@click.group(cls=MiniconGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """minicon: shrink a container filesystem to the files its applications use."""
