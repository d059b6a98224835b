"""What every command shares: messages and exit codes, logging, the store option.

Light on purpose (click and the standard library): ``minicon trace`` imports this and not the
minimizer; what the minimizing commands share is in :mod:`minicon.cutting`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

if TYPE_CHECKING:  # the store (SQLAlchemy) is imported only by the commands that use it
    from store.db import Store

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"minicon: error: {message}", err=True)
    sys.exit(code)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"minicon: {record.levelname.lower()}: {record.getMessage()}"


def setup_logging(verbose: bool = False, debug: bool = False, quiet: bool = False) -> None:
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


def db_option(f: F) -> F:
    return click.option(
        "--db",
        "db_url",
        metavar="URL",
        envvar="MINICON_DB",
        help="The trace store (default: a SQLite file in the user's data directory; "
        "postgresql+psycopg://... for a shared one). Also $MINICON_DB.",
    )(f)


def open_store(url: str | None) -> Store:
    from store.db import Store
    from store.errors import StoreError

    try:
        return Store(url)
    except StoreError as exc:
        fail(str(exc))
