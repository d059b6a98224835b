"""Opening a store: where it is, how SQLite is set up, and what a fresh open repairs.

The default is a SQLite file at ``$XDG_DATA_HOME/minicon/minicon.db`` (``~/.local/share/...``),
or ``/var/lib/minicon/minicon.db`` for root; ``MINICON_DB`` or ``--db URL`` selects another, e.g.
``postgresql+psycopg://user:pass@host/db`` for many machines writing to one store.

SQLite runs in WAL mode (readers never block the writer), with a busy timeout (two tracers
writing to one file wait for each other instead of failing) and foreign keys on.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from typing import Any

from sqlalchemy import Engine, create_engine, event, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from . import migrate
from .errors import StoreError
from .models import ACTIVE, Run

BUSY_TIMEOUT_MS = 30_000
STALE_AFTER = dt.timedelta(minutes=5)  # a run on another host with no heartbeat this long


def data_dir() -> str:
    """Where minicon keeps its state: /var/lib/minicon for root, else the user's data dir."""
    if os.geteuid() == 0:
        return "/var/lib/minicon"
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(data, "minicon")


def default_url() -> str:
    env = os.environ.get("MINICON_DB")
    if env:
        return env
    return "sqlite:///" + os.path.join(data_dir(), "minicon.db")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def process_start(pid: int) -> int | None:
    """The start time of ``pid`` (clock ticks since boot), to tell a recycled pid apart;
    None when there is no such live process (a zombie waiting to be reaped is dead)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        if fields[0] in (b"Z", b"X"):
            return None
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cur = dbapi_connection.cursor()
    cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys = ON")
    cur.execute("PRAGMA synchronous = NORMAL")  # durable at each checkpoint; safe with WAL
    cur.execute("PRAGMA cache_size = -65536")  # 64 MiB: merges and upserts walk big B-trees
    # checkpoint every 64 MiB of WAL instead of 4: a run's upserts land all over the
    # path-ordered accesses table, and pages rewritten by many runs are copied back once
    cur.execute("PRAGMA wal_autocheckpoint = 16384")
    cur.close()


class Store:
    """An open, migrated store: an engine and a session factory."""

    def __init__(self, url: str | None = None, *, upgrade: bool = True) -> None:
        self.url = url or default_url()
        try:
            parsed = make_url(self.url)
        except ArgumentError:
            raise StoreError(f"not a database URL: {self.url!r}") from None
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            database = parsed.database or ""
            if database and database != ":memory:":
                folder = os.path.dirname(os.path.abspath(database))
                try:
                    os.makedirs(folder, mode=0o700, exist_ok=True)
                except OSError as exc:
                    raise StoreError(f"cannot create {folder}: {exc.strerror}") from None
            kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_MS / 1000}
        else:
            kwargs["pool_pre_ping"] = True
        try:
            self.engine: Engine = create_engine(parsed, **kwargs)
        except (ArgumentError, ImportError) as exc:
            raise StoreError(f"cannot use database {parsed.render_as_string()}: {exc}") from None
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.session = sessionmaker(self.engine, expire_on_commit=False)
        self.path_ids: dict[bytes, int] = {}  # interned paths seen by this process
        try:
            if self.is_sqlite:
                self._use_wal()
            if upgrade:
                migrate.ensure_head(self.engine)
                self.mark_interrupted()
        except OperationalError as exc:
            raise StoreError(f"cannot open the store {self.describe()}: {exc.orig}") from None
        except SQLAlchemyError as exc:
            raise StoreError(f"store {self.describe()}: {exc}") from None

    def _use_wal(self) -> None:
        """Switch a new database to WAL (it stays so). The switch needs the database to itself
        and does not wait on a busy one: two processes opening a new store take turns."""
        with self.engine.connect() as conn:
            if conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal":
                return
        with migrate.migration_lock(self.engine), self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode = WAL")

    def describe(self) -> str:
        """The URL without its password, for messages."""
        return make_url(self.url).render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def mark_interrupted(self) -> int:
        """Runs left ``running`` by a recorder that is gone: its process ended on this host, or
        no heartbeat for :data:`STALE_AFTER` from another host. Returns how many were marked."""
        host = socket.gethostname()
        with self.session() as s:
            rows = s.execute(
                select(Run.id, Run.host, Run.owner_pid, Run.owner_start, Run.heartbeat_at).where(
                    Run.status.in_(ACTIVE)
                )
            ).all()
            gone = []
            for run_id, run_host, pid, start, beat in rows:
                if run_host == host and pid is not None:
                    alive = process_start(pid)
                    if alive is None or (start is not None and alive != start):
                        gone.append(run_id)
                elif beat is not None and now() - beat > STALE_AFTER:
                    gone.append(run_id)
            if gone:
                s.execute(
                    update(Run)
                    .where(Run.id.in_(gone), Run.status.in_(ACTIVE))
                    .values(status="interrupted", ended_at=now())
                )
                s.commit()
            return len(gone)
