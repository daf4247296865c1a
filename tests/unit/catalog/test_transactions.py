"""How catalog transactions lock SQLite and how their failures read, on every backend."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from genesis_platform.catalog import Database
from genesis_platform.catalog.database import head_revision, retry_conflicts
from genesis_platform.catalog.tables import Dataset
from genesis_platform.errors import CatalogError
from tests.requires import require_extra


@pytest.fixture
def db(catalog_url: str) -> Iterator[Database]:
    db = Database(catalog_url)
    yield db
    db.close()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'c.sqlite'}")
    yield db
    db.close()


def _try_to_write(path: Path) -> None:
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()


# SQLite only, the three tests below: they test how sessions take SQLite's database-wide write
# lock (BEGIN IMMEDIATE or DEFERRED) and its pragmas. PostgreSQL locks rows, not the database,
# and its readers never block writers.


def test_a_write_session_holds_the_write_lock_from_its_first_read(
    sqlite_db: Database, tmp_path: Path
) -> None:
    db = sqlite_db
    with db.session() as s:
        s.scalar(select(Dataset.id))
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            _try_to_write(tmp_path / "c.sqlite")
    _try_to_write(tmp_path / "c.sqlite")
    db.close()


def test_a_read_only_session_does_not_block_writers(sqlite_db: Database, tmp_path: Path) -> None:
    db = sqlite_db
    with db.session(write=False) as s:
        s.scalar(select(Dataset.id))
        _try_to_write(tmp_path / "c.sqlite")
    db.close()


def test_pragmas_survive_the_manual_transactions(sqlite_db: Database) -> None:
    db = sqlite_db
    with db.session() as s:
        pragmas = [s.scalar(text(f"PRAGMA {name}")) for name in ("foreign_keys", "synchronous")]
        assert s.scalar(text("PRAGMA busy_timeout")) == 30000
    db.close()
    assert pragmas == [1, 1]  # foreign keys on, synchronous NORMAL


def test_a_rolled_back_session_leaves_nothing(db: Database) -> None:
    with pytest.raises(RuntimeError), db.session() as s:
        s.add(Dataset(name="d", created_by="me"))
        s.flush()
        raise RuntimeError
    with db.session(write=False) as s:
        assert s.scalar(select(Dataset.id)) is None
    db.close()


def test_a_unique_violation_is_a_conflict_without_sql(db: Database) -> None:
    with db.session() as s:
        s.add(Dataset(name="d", created_by="me"))
    with pytest.raises(CatalogError) as info, db.session() as s:
        s.add(Dataset(name="d", created_by="me"))
    assert info.value.details == {"conflict": True}
    reason = {  # the driver's message, without SQL
        "sqlite": "UNIQUE constraint failed: datasets.name",
        "postgresql": 'duplicate key value violates unique constraint "uq_datasets_name"\n'
        "DETAIL:  Key (name)=(d) already exists.",
    }[db.engine.dialect.name]
    assert str(info.value) == f"catalog write conflicted with another writer ({reason}); try again"
    db.close()


def test_other_integrity_errors_are_not_conflicts(db: Database) -> None:
    with pytest.raises(CatalogError) as info, db.session() as s:
        s.execute(text("INSERT INTO datasets (name) VALUES (NULL)"))
    assert "conflict" not in info.value.details
    reason = {
        "sqlite": "NOT NULL constraint failed",
        "postgresql": 'null value in column "name" of relation "datasets" violates not-null',
    }[db.engine.dialect.name]
    assert str(info.value).startswith(f"catalog operation failed: {reason}")
    assert "INSERT" not in str(info.value)
    db.close()


def test_a_catalog_that_cannot_be_opened_is_named_without_its_password() -> None:
    require_extra("postgres", "psycopg")
    with pytest.raises(CatalogError) as info:
        Database("postgresql+psycopg://ada:s3cret@127.0.0.1:1/nowhere")
    assert str(info.value).startswith(
        "cannot open the catalog postgresql+psycopg://ada:***@127.0.0.1:1/nowhere: "
    )
    assert "s3cret" not in str(info.value)


def test_retry_conflicts_reruns_only_conflicts() -> None:
    calls: list[int] = []

    def conflicts_twice() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise CatalogError("taken", conflict=True)
        return "done"

    assert retry_conflicts(conflicts_twice) == "done"
    assert len(calls) == 3

    def fails() -> None:
        calls.append(1)
        raise CatalogError("broken")

    calls.clear()
    with pytest.raises(CatalogError, match="broken"):
        retry_conflicts(fails)
    assert len(calls) == 1

    def always_conflicts() -> None:
        calls.append(1)
        raise CatalogError("taken", conflict=True)

    calls.clear()
    with pytest.raises(CatalogError, match="taken"):
        retry_conflicts(always_conflicts, attempts=3)
    assert len(calls) == 3


def _open(url: str) -> None:
    Database(url).close()


def test_processes_opening_a_new_catalog_at_once_migrate_it_once(empty_catalog_url: str) -> None:
    url = empty_catalog_url
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_open, args=(url,)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)
    assert [proc.exitcode for proc in procs] == [0] * 4
    db = Database(url, migrate=False)
    with db.session(write=False) as s:
        assert s.scalar(text("SELECT version_num FROM alembic_version")) == head_revision()
    db.close()
