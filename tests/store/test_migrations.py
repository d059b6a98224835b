"""Migrations: upgrade from nothing, downgrade to nothing, no drift from the models, and the
migrations of an installed wheel (not only of a checkout)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from store import migrate
from store.db import Store
from store.errors import SchemaError
from store.models import Base

TABLES = {"runs", "paths", "accesses", "processes", "artifacts", "alembic_version"}


def test_upgrade_downgrade_and_no_drift(store_url: str) -> None:
    engine = create_engine(store_url)
    assert migrate.current(engine) is None
    migrate.upgrade(engine)
    assert migrate.current(engine) == migrate.HEAD
    assert set(inspect(engine).get_table_names()) == TABLES
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []  # the models and the migrations describe the same schema
    migrate.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(engine)
    assert migrate.current(engine) == migrate.HEAD
    engine.dispose()


def test_head_constant_matches_the_migrations() -> None:
    assert migrate.revisions()[-1] == migrate.HEAD


def test_opening_upgrades_and_refuses_a_newer_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    Store(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(SchemaError, match="newer"):
        Store(url)
    engine.dispose()


@pytest.mark.slow
def test_a_built_wheel_migrates_a_new_database(tmp_path: Path) -> None:
    """The migrations ship inside the wheel: a fresh venv with only the wheel installed works."""
    repo = Path(__file__).resolve().parents[2]
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(repo)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("minicon-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "install", "-q", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    db = tmp_path / "fresh.db"
    env = {**os.environ, "MINICON_DB": f"sqlite:///{db}"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [str(venv / "bin/minicon"), "db", "upgrade"],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the checkout: its alembic/ folder must not be what is found
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"schema {migrate.HEAD}" in proc.stdout
    where = subprocess.run(
        [str(venv / "bin/python"), "-c", "import store.migrate as m; print(m.script_location())"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert str(venv) in where.stdout  # the wheel's own copy of the migrations
    assert set(inspect(create_engine(f"sqlite:///{db}")).get_table_names()) == TABLES
