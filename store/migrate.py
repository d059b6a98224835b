"""Schema migrations from code: alembic, with the migrations that ship with this package.

In a checkout they are the top-level ``alembic/`` folder; an installed wheel carries the same
files as ``store/_alembic``. Opening a store upgrades it to :data:`HEAD` (checked with one query,
so SQLAlchemy and alembic are only imported when there is something to do).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .errors import SchemaError

if TYPE_CHECKING:  # SQLAlchemy is imported when there is something to do, not to check
    from sqlalchemy import Connection, Engine

    from .db import Store

HEAD = "0001"  # the newest revision in alembic/versions (a test keeps them in step)


def script_location() -> str:
    here = os.path.dirname(os.path.realpath(__file__))
    checkout = os.path.join(os.path.dirname(here), "alembic")
    for candidate in (os.path.join(here, "_alembic"), checkout):
        if os.path.isfile(os.path.join(candidate, "env.py")) and os.path.isdir(
            os.path.join(candidate, "versions")
        ):
            return candidate
    raise SchemaError("the store's migrations are missing from this installation")


def _config(connection: Connection) -> object:
    from alembic.config import Config  # imported only to migrate

    config = Config()
    config.set_main_option("script_location", script_location())
    config.attributes["connection"] = connection
    return config


def revisions() -> list[str]:
    """Every revision this installation knows, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(script_location())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def current(engine: Engine | Connection) -> str | None:
    """The database's revision, or None for a database minicon never touched."""
    from sqlalchemy import Engine, inspect, text

    if not inspect(engine).has_table("alembic_version"):
        return None
    if isinstance(engine, Engine):
        with engine.connect() as conn:
            return current(conn)
    row = engine.execute(text("SELECT version_num FROM alembic_version")).first()
    return str(row[0]) if row else None


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(_config(conn), revision)  # type: ignore[arg-type]


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    with engine.begin() as conn:
        command.downgrade(_config(conn), revision)  # type: ignore[arg-type]


def ensure_head(store: Store) -> None:
    """Upgrade an older schema; refuse one newer than this version of minicon knows.

    The usual case, a database at :data:`HEAD`, costs one query on the store's own connection.
    Two processes opening a new store at once must not both create it: the upgrade runs under
    a lock (a lock file beside a SQLite database, an advisory lock on PostgreSQL) and looks
    at the revision again once it holds it.
    """
    if store.revision() == HEAD:
        return
    with migration_lock(store):
        now = current(store.engine)
        if now == HEAD:
            return
        if now is not None and now not in revisions():
            raise SchemaError(
                f"the database is at schema revision {now}, newer than this minicon knows "
                f"({HEAD}): upgrade minicon"
            )
        upgrade(store.engine)


_PG_LOCK_KEY = 0x6D696E69636F6E  # "minicon"


@contextlib.contextmanager
def migration_lock(store: Store) -> Iterator[None]:
    """Held while a process changes the database as a whole (schema, journal mode)."""
    if store.is_sqlite:
        database = store.sqlite_path or store.engine.url.database
        if not database or database == ":memory:":
            yield
            return
        fd = os.open(database + ".migrate-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
    elif store.engine.dialect.name == "postgresql":
        from sqlalchemy import text

        with store.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
                conn.commit()
    else:
        yield
