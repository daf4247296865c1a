"""Engine, sessions and migrations of the catalog database.

Several processes may write one catalog at once (two shells, a campaign and a notebook).
On SQLite a writing transaction takes the write lock when it begins (``BEGIN IMMEDIATE``), so
one that reads the latest version number and inserts the next cannot interleave with another;
read-only sessions (``session(write=False)``) begin deferred and neither wait nor block.
PostgreSQL locks rows, not the database: a transaction that reads before it writes locks the
row its write depends on (``SELECT ... FOR UPDATE``: the audit chain's head, the dataset
whose next version it numbers), and the others wait for it there. Two transactions that
insert one new name can still collide on a unique constraint: the service re-runs its
transaction with :func:`retry_conflicts`, and sees the other's row.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, func, make_url, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker

from genesis_platform.errors import CatalogError

__all__ = ["Database", "head_revision", "retry_conflicts"]

_MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 0x67656E65736973  # "genesis": the PostgreSQL advisory lock of migrations
_READ_ONLY = "genesis_read_only"
"""Execution option of the engine behind read-only sessions (they BEGIN DEFERRED on SQLite)."""

T = TypeVar("T")


class Database:
    """The catalog: an engine, a session factory, and the schema at the latest revision.

    Args:
        url: SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg://...``).
        migrate: Apply pending Alembic migrations now.
    """

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        try:
            self.engine: Engine = _make_engine(url)
            self._read_engine = self.engine.execution_options(**{_READ_ONLY: True})
            if migrate:
                _while_locked(self.migrate)
        except SQLAlchemyError as exc:
            where = _without_password(url)
            raise CatalogError(f"cannot open the catalog {where}: {_reason(exc)}") from exc
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._readers = sessionmaker(self._read_engine, expire_on_commit=False)

    @contextmanager
    def session(self, *, write: bool = True) -> Iterator[Session]:
        """A session in a transaction, committed on success and rolled back on error.

        Args:
            write: Whether the transaction may write. On SQLite a writing transaction holds
                the database's write lock from its first statement to its commit, so its
                reads stay true until it writes; pass ``False`` for a read-only session,
                which neither waits for writers nor makes them wait. Do not open a writing
                session inside another writing session of the same thread: it would wait for
                the lock its own thread holds, until the 30 s busy timeout.

        Raises:
            CatalogError: the database failed; ``details["conflict"]`` is True when the
                transaction inserted a row whose unique key another writer took first, which
                re-running the transaction (:func:`retry_conflicts`) fixes.
        """
        factory = self._sessions if write else self._readers
        with factory() as session:
            try:
                with session.begin():
                    yield session
            except IntegrityError as exc:
                if not _is_unique_violation(exc):
                    raise CatalogError(f"catalog operation failed: {_reason(exc)}") from exc
                raise CatalogError(
                    f"catalog write conflicted with another writer ({_reason(exc)}); try again",
                    conflict=True,
                ) from exc
            except SQLAlchemyError as exc:
                raise CatalogError(f"catalog operation failed: {_reason(exc)}") from exc

    def migrate(self) -> None:
        """Bring the schema to the latest Alembic revision (a no-op when it is there)."""
        config = _alembic_config()
        head = head_revision()
        with self._read_engine.connect() as connection:
            if MigrationContext.configure(connection).get_current_revision() == head:
                return
        with self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Processes that open a new catalog at once take turns, and the later ones
                # find it migrated (Alembic reads the revision after the lock). On SQLite,
                # BEGIN IMMEDIATE does this. The lock ends with the transaction.
                connection.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()


def head_revision() -> str:
    """The newest migration's revision id: what :meth:`Database.migrate` brings a catalog to."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None  # the package ships its migrations
    return head


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def _while_locked(step: Callable[[], None], patience_s: float = 30.0) -> None:
    """Run ``step``, again while SQLite says "database is locked".

    Opening a catalog that other processes open at the same moment can meet SQLite's
    immediate "database is locked" (cases where it skips its busy handler to avoid a
    deadlock, e.g. switching a new file into WAL mode); waiting a moment resolves it.
    """
    deadline = time.monotonic() + patience_s
    while True:
        try:
            step()
            return
        except OperationalError as exc:
            if "locked" not in str(exc.orig) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05 + random.random() * 0.1)


def retry_conflicts(transaction: Callable[[], T], *, attempts: int = 5) -> T:
    """Run ``transaction``, running it again when it conflicts with a concurrent writer.

    ``transaction`` must open its own session (so a retry starts a new transaction, which
    sees what the other writer committed) and have no effect outside the catalog.

    Args:
        transaction: Opens a session, reads, writes, returns.
        attempts: How many times to run it at most.

    Raises:
        CatalogError: the last attempt still conflicted, or the catalog failed otherwise.
    """
    for attempt in range(1, attempts + 1):
        try:
            return transaction()
        except CatalogError as exc:
            if not exc.details.get("conflict") or attempt == attempts:
                raise
        # Random back-off so the writers that collided do not collide again in step.
        time.sleep(random.uniform(0, 0.005 * 2**attempt))
    raise AssertionError("unreachable")  # pragma: no cover


def _without_password(url: str) -> str:
    """``url`` to show in messages: its password, if any, replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # not a URL: it holds no password we could tell apart
        return url


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's message, without the SQL statement and parameters SQLAlchemy appends."""
    return str(exc.orig) if isinstance(exc, DBAPIError) else str(exc)


def _is_unique_violation(exc: IntegrityError) -> bool:
    orig = exc.orig
    sqlite_name = getattr(orig, "sqlite_errorname", None)
    if sqlite_name is not None:
        return sqlite_name in {"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"}
    # PostgreSQL's unique_violation, as psycopg (sqlstate) and psycopg2 (pgcode) name it.
    return "23505" in {getattr(orig, "sqlstate", None), getattr(orig, "pgcode", None)}


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite begins a transaction only before an INSERT/UPDATE/DELETE, so the SELECT that
    # picks the next version number ran outside the transaction that inserts it. Turn that
    # off and begin in _sqlite_begin instead (SQLAlchemy's documented pysqlite recipe).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    read_only = connection.get_execution_options().get(_READ_ONLY, False)
    connection.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")
