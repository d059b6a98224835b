"""Opening a store: where it is, how SQLite is set up, and what a fresh open repairs.

The default is a SQLite file at ``$XDG_DATA_HOME/minicon/minicon.db`` (``~/.local/share/...``),
or ``/var/lib/minicon/minicon.db`` for root; ``MINICON_DB`` or ``--db URL`` selects another, e.g.
``postgresql+psycopg://user:pass@host/db`` for many machines writing to one store.

SQLite runs in WAL mode (readers never block the writer), with a busy timeout (two tracers
writing to one file wait for each other instead of failing) and foreign keys on.

Recording a run needs no SQLAlchemy: a plain ``sqlite:///FILE`` store at the current schema is
opened with the standard library's driver, and the recording path (:mod:`store.ingest`) writes
through :meth:`Store.transaction`, a DB-API cursor. Importing SQLAlchemy costs a third of a
second, which ``minicon trace -- CMD`` would otherwise pay before every run; the engine
(queries, merges, migrations, the ORM) is made the first time something asks for it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
import sys
import threading
from collections.abc import Iterator
from functools import cached_property
from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import migrate
from .errors import StoreError
from .statuses import ACTIVE

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

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


def sqlite_file(url: str) -> str | None:
    """The file of a plain ``sqlite:///FILE`` URL (what the standard driver can open as SQLAlchemy
    would), or None for anything else: another database, in-memory, query options, escapes."""
    for prefix in ("sqlite:///", "sqlite+pysqlite:///"):
        if url.startswith(prefix):
            file = url[len(prefix) :]
            if file and file != ":memory:" and not any(c in file for c in "?%#"):
                return file
    return None


def _sqlite_pragmas(dbapi_connection: Any, _record: object = None) -> None:
    cur = dbapi_connection.cursor()
    cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys = ON")
    cur.execute("PRAGMA synchronous = NORMAL")  # durable at each checkpoint; safe with WAL
    cur.execute("PRAGMA cache_size = -65536")  # 64 MiB: merges and upserts walk big B-trees
    # checkpoint every 64 MiB of WAL instead of 4: a run's upserts land all over the
    # path-ordered accesses table, and pages rewritten by many runs are copied back once
    cur.execute("PRAGMA wal_autocheckpoint = 16384")
    cur.close()


def _aware(value: object) -> dt.datetime | None:
    """A timestamp read through the driver: SQLite gives SQLAlchemy's text, naive UTC."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return None


def hostname() -> str:
    """This machine's name, as runs record it (``socket.gethostname()`` without importing
    socket, which costs every minicon command 4 ms)."""
    return os.uname().nodename


class Store:
    """An open, migrated store: a DB-API connection for recording, and (made when first asked
    for) an SQLAlchemy engine and session factory for everything else."""

    def __init__(self, url: str | None = None, *, upgrade: bool = True) -> None:
        self.url = url or default_url()
        self.is_sqlite = self.url.partition(":")[0].partition("+")[0] == "sqlite"
        self.path_ids: dict[bytes, int] = {}  # interned paths seen by this process
        self.sqlite_path = sqlite_file(self.url)  # set: recording uses our own connection
        self._raw: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one thread at a time on that connection
        try:
            if self.sqlite_path is not None:
                self._raw = self._connect_sqlite(self.sqlite_path)
            else:
                self.engine  # noqa: B018 -- a bad URL or driver fails here
            if self.is_sqlite:
                self._use_wal()
            if upgrade:
                migrate.ensure_head(self)
                self.mark_interrupted()
        except StoreError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            if not self._is_database_error(exc):
                raise
            orig = getattr(exc, "orig", None) or exc
            raise StoreError(f"cannot open the store {self.describe()}: {orig}") from None

    def _connect_sqlite(self, file: str) -> sqlite3.Connection:
        folder = os.path.dirname(os.path.abspath(file))
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {folder}: {exc.strerror}") from None
        conn = sqlite3.connect(file, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        _sqlite_pragmas(conn)
        return conn

    @cached_property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (importing SQLAlchemy the first time)."""
        from sqlalchemy import create_engine, event
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            parsed = make_url(self.url)
        except ArgumentError:
            raise StoreError(f"not a database URL: {self.url!r}") from None
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
            engine = create_engine(parsed, **kwargs)
        except (ArgumentError, ImportError) as exc:
            raise StoreError(f"cannot use database {self.describe()}: {exc}") from None
        if self.is_sqlite:
            event.listen(engine, "connect", _sqlite_pragmas)
        return engine

    @cached_property
    def session(self) -> sessionmaker[Session]:
        from sqlalchemy.orm import sessionmaker

        return sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dbapi(self) -> ModuleType:
        """The driver's module: its ``Error`` and ``IntegrityError`` are what
        :meth:`transaction` raises."""
        if self._raw is not None:
            return sqlite3
        dbapi: ModuleType = self.engine.dialect.dbapi  # type: ignore[assignment]
        return dbapi

    @property
    def mark(self) -> str:
        """The driver's parameter placeholder."""
        return "?" if self._raw is not None or self.is_sqlite else "%s"

    def stamp(self, value: dt.datetime) -> object:
        """A timestamp as the driver should be given it: SQLite stores SQLAlchemy's text form
        of the UTC time (so the ORM reads it back), other databases take the value."""
        if self.is_sqlite:
            return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        return value

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """A DB-API cursor inside one transaction: committed when the block ends, rolled back
        if it raises. Statements use :attr:`mark` placeholders."""
        if self._raw is not None:
            with self._lock:
                cur: Any = self._raw.cursor()
                try:
                    yield cur
                    self._raw.commit()
                except BaseException:
                    self._raw.rollback()
                    raise
                finally:
                    cur.close()
        else:
            with self.engine.begin() as conn:
                cur = conn.connection.cursor()
                try:
                    yield cur
                finally:
                    cur.close()

    def _is_database_error(self, exc: Exception) -> bool:
        errors: list[type[BaseException]] = [sqlite3.Error]
        with contextlib.suppress(Exception):  # no engine could be made: report that error
            errors.append(self.dbapi.Error)
        sa_exc = sys.modules.get("sqlalchemy.exc")  # only when SQLAlchemy was imported
        if sa_exc is not None:
            errors.append(sa_exc.SQLAlchemyError)
        return isinstance(exc, tuple(errors))

    def revision(self) -> str | None:
        """The database's schema revision, or None for a database minicon never touched."""
        try:
            with self.transaction() as cur:
                cur.execute("SELECT version_num FROM alembic_version")
                row = cur.fetchone()
        except self.dbapi.Error:  # no such table (rolled back, so PostgreSQL goes on)
            return None
        return str(row[0]) if row else None

    def _use_wal(self) -> None:
        """Switch a new database to WAL (it stays so). The switch needs the database to itself
        and does not wait on a busy one: two processes opening a new store take turns."""

        def journal_mode(set_wal: bool) -> str:
            if self._raw is not None:
                with self._lock:
                    sql = "PRAGMA journal_mode = WAL" if set_wal else "PRAGMA journal_mode"
                    return str(self._raw.execute(sql).fetchone()[0])
            with self.engine.connect() as conn:
                sql = "PRAGMA journal_mode = WAL" if set_wal else "PRAGMA journal_mode"
                return str(conn.exec_driver_sql(sql).scalar())

        if journal_mode(False) == "wal":
            return
        with migrate.migration_lock(self):
            journal_mode(True)

    def describe(self) -> str:
        """The URL without its password, for messages."""
        scheme, sep, rest = self.url.partition("://")
        userinfo, at, host = rest.rpartition("@")
        if at and ":" in userinfo:
            rest = userinfo.split(":", 1)[0] + ":***@" + host
        return scheme + sep + rest

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        if "engine" in self.__dict__:
            self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def mark_interrupted(self) -> int:
        """Runs left ``running`` by a recorder that is gone: its process ended on this host, or
        no heartbeat for :data:`STALE_AFTER` from another host. Returns how many were marked."""
        host = hostname()
        m = self.mark
        with self.transaction() as cur:
            cur.execute(
                "SELECT id, host, owner_pid, owner_start, heartbeat_at FROM runs "
                f"WHERE status IN ({m}, {m})",
                ACTIVE,
            )
            gone = []
            for run_id, run_host, pid, start, beat in cur.fetchall():
                if run_host == host and pid is not None:
                    alive = process_start(pid)
                    if alive is None or (start is not None and alive != start):
                        gone.append(run_id)
                else:
                    seen = _aware(beat)
                    if seen is not None and now() - seen > STALE_AFTER:
                        gone.append(run_id)
            for run_id in gone:
                cur.execute(
                    f"UPDATE runs SET status = 'interrupted', ended_at = {m} "
                    f"WHERE id = {m} AND status IN ({m}, {m})",
                    (self.stamp(now()), run_id, *ACTIVE),
                )
            return len(gone)
