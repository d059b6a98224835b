"""SQLAlchemy 2 models. Paths and argv are bytes (``LargeBinary``): names are not always UTF-8.

Tables: ``runs``; ``paths`` (interned, keyed by a digest so any length fits a unique index);
``accesses``, one row per (run, path, kind, errno) with a count: a run's size grows with its
unique accesses, not with its syscalls; ``processes``; ``artifacts`` (generated tarballs).
Every change here needs a migration in the top-level ``alembic/versions`` (a test compares them).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp that is always timezone-aware UTC (SQLite returns naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC) if value is not None else None

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str | None] = mapped_column(String(200), index=True)
    argv: Mapped[bytes] = mapped_column(LargeBinary)  # NUL-separated words
    root: Mapped[bytes] = mapped_column(LargeBinary)  # the source root the paths are inside
    backend: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    signal: Mapped[int | None] = mapped_column(Integer)
    seconds: Mapped[float | None] = mapped_column(Float)  # the time limit asked for
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    host: Mapped[str] = mapped_column(String(255))
    owner_pid: Mapped[int | None] = mapped_column(Integer)  # the recording process
    owner_start: Mapped[int | None] = mapped_column(BigInteger)  # its start time: pids recycle
    events: Mapped[int] = mapped_column(BigInteger, default=0)  # recorded, before de-duplication
    accesses: Mapped[int] = mapped_column(Integer, default=0)  # unique (path, kind, errno)
    processes: Mapped[int] = mapped_column(Integer, default=0)
    lost_events: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text)


class Path(Base):
    __tablename__ = "paths"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[bytes] = mapped_column(LargeBinary(16), unique=True)  # blake2b-128 of path
    path: Mapped[bytes] = mapped_column(LargeBinary)


class Access(Base):
    """Keyed path first: a merge of many runs groups by (path, kind, errno) and reads the table
    in key order (SQLite keeps it clustered: WITHOUT ROWID); per-run reads use ix run_id."""

    __tablename__ = "accesses"

    path_id: Mapped[int] = mapped_column(ForeignKey("paths.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    errno: Mapped[int] = mapped_column(SmallInteger, primary_key=True)  # 0: it worked
    run_id: Mapped[int] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    count: Mapped[int] = mapped_column(BigInteger)
    first_seen: Mapped[float] = mapped_column(Float)  # seconds since the run started
    flags: Mapped[int] = mapped_column(Integer)  # open flags seen, OR-ed

    __table_args__ = ({"sqlite_with_rowid": False},)


class Process(Base):
    __tablename__ = "processes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    pid: Mapped[int] = mapped_column(Integer)
    ppid: Mapped[int] = mapped_column(Integer)
    argv: Mapped[bytes] = mapped_column(LargeBinary)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    signal: Mapped[int | None] = mapped_column(Integer)


class Artifact(Base):
    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    input_key: Mapped[str] = mapped_column(String(64), unique=True)  # digest of the inputs
    inputs: Mapped[str] = mapped_column(Text)  # the inputs, as JSON
    digest: Mapped[str | None] = mapped_column(String(64))  # of the content, once written
    size: Mapped[int | None] = mapped_column(BigInteger)
    location: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
