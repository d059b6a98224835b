"""Alembic environment for minicon's store.

minicon runs migrations from code (``store.migrate``), handing over an open connection in
``config.attributes["connection"]``. From a checkout, ``alembic -c alembic.ini ...`` works too:
the database is ``MINICON_DB`` (or the ``sqlalchemy.url`` of alembic.ini).
"""

from __future__ import annotations

import os

from sqlalchemy import create_engine

from alembic import context
from store.models import Base, UTCDateTime

config = context.config
target_metadata = Base.metadata


def _render_item(kind: str, obj: object, autogen_context: object) -> str | bool:
    """Migrations stay self-contained: our column types render as plain SQLAlchemy ones."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        render_item=_render_item,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = os.environ.get("MINICON_DB") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set MINICON_DB (or sqlalchemy.url in alembic.ini) to a database URL")
    engine = create_engine(url)
    with engine.begin() as conn:
        _run(conn)


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run them online")
run_migrations_online()
