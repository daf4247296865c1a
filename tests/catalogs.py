"""Catalog databases for tests: a SQLite file, or a fresh database on a PostgreSQL server.

The PostgreSQL server is the one ``GENESIS_TEST_PG_URL`` names (``eval "$(./scripts/postgres
start)"`` starts one and sets it); its role must be allowed to create databases and to end
other sessions (``CREATEDB``, ``pg_signal_backend``: a test's database is dropped with
``FORCE``, whatever is still connected to it). Each test gets a database of its own, created
from a template and dropped after the test, so tests neither see each other's rows nor wait
on each other's locks. Two templates are made once per test session: one empty and one that
the catalog's migrations brought to their head, so that a test needing the schema does not
pay for migrating it. On the tests' server (fsync off, 2 cores, 31 tables) a copy of the
migrated template takes 40 ms (up to 110 ms on a busy machine) and dropping it 10 ms: 50 ms
a test, where an empty database migrated per test would take 160 ms. Emptying one reused
database (``TRUNCATE`` of every table, 43 ms) would save nothing, and wait on whatever
transaction a test left open.
"""

from __future__ import annotations

import itertools
import os

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from genesis_platform.catalog import Database
from tests.requires import require_extra, skip_or_fail

__all__ = ["BACKENDS", "PG_URL_VAR", "PostgresServer", "connect_postgres"]

BACKENDS = ("sqlite", "postgresql")
"""The catalog backends the catalog test suite runs over (the ``catalog_url`` params)."""

PG_URL_VAR = "GENESIS_TEST_PG_URL"
HOW_TO_START = f'start one and set {PG_URL_VAR} with: eval "$(./scripts/postgres start)"'
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class PostgresServer:
    """Creates and drops the test session's databases on one PostgreSQL server.

    Databases are named ``genesis_t<pid>_<n>`` after the pytest process, so test sessions
    running at once on one server do not collide, and a session that was killed leaves
    databases the next session on the machine drops.

    Args:
        url: A database on the server to connect to for ``CREATE``/``DROP DATABASE``.
    """

    def __init__(self, url: str) -> None:
        self._url = make_url(url)
        self._admin = create_engine(self._url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        self._prefix = f"genesis_t{os.getpid()}_"
        self._numbers = itertools.count()
        with self._admin.connect() as connection:
            connection.execute(text("SELECT 1"))
        self._drop_leftovers()
        self._empty = self._create("template0")
        self._migrated = self._create(self._empty)
        Database(self.url_of(self._migrated)).close()

    def new_database(self, *, migrated: bool) -> str:
        """The URL of a new database: the catalog's schema at its head, or nothing at all."""
        return self.url_of(self._create(self._migrated if migrated else self._empty))

    def drop_database(self, url: str) -> None:
        """Drop the database of ``url``, ending the sessions still connected to it."""
        name = make_url(url).database
        assert name is not None and name.startswith(self._prefix)
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def url_of(self, database: str) -> str:
        """The URL of ``database`` on this server, password included."""
        return _render(self._url.set(database=database))

    def close(self) -> None:
        """Drop the templates."""
        for name in (self._migrated, self._empty):
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._admin.dispose()

    def _create(self, template: str) -> str:
        name = f"{self._prefix}{next(self._numbers)}"
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    def _drop_leftovers(self) -> None:
        """Drop the databases of earlier test sessions on this machine that were killed."""
        if self._url.host not in _LOOPBACK:
            return  # their processes live on other machines: their pids mean nothing here
        with self._admin.connect() as connection:
            names = connection.scalars(
                text("SELECT datname FROM pg_database WHERE datname LIKE 'genesis\\_t%\\_%'")
            ).all()
        for name in names:
            pid = name.removeprefix("genesis_t").partition("_")[0]
            if pid.isdigit() and not _alive(int(pid)):
                self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _execute(self, statement: str) -> None:
        with self._admin.connect() as connection:
            connection.execute(text(statement))


def connect_postgres() -> PostgresServer:
    """The server of ``GENESIS_TEST_PG_URL``; skip the test without one (fail under CI=true)."""
    require_extra("postgres", "psycopg")
    url = os.environ.get(PG_URL_VAR)
    if not url:
        skip_or_fail(f"{PG_URL_VAR} is not set, so there is no PostgreSQL server; {HOW_TO_START}")
    try:
        return PostgresServer(url)
    except SQLAlchemyError as exc:
        where = _render(make_url(url), hide_password=True)
        skip_or_fail(
            f"the PostgreSQL server of {PG_URL_VAR} ({where}) failed: {exc}; {HOW_TO_START}"
        )


def _render(url: URL, *, hide_password: bool = False) -> str:
    return url.render_as_string(hide_password=hide_password)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
