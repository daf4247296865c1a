"""Fixtures shared by every test: an isolated home, an open embedded platform, and the
catalog backends (SQLite, PostgreSQL) that the catalog test suite runs over."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from genesis_platform import Platform
from tests.catalogs import BACKENDS, PostgresServer, connect_postgres

# The Ray clusters that tests start live on loopback for a few seconds. With Ray 2.60's token
# authentication on, a cluster from `ray start` intermittently refused the tests' clients
# here (InvalidAuthToken, the token file ~/.ray/auth_token shared by every Ray on the
# machine); it is turned off for them.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(autouse=True)
def genesis_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own GENESIS_HOME, so nothing touches ~/.genesis."""
    home = tmp_path / "genesis-home"
    monkeypatch.setenv("GENESIS_HOME", str(home))
    for var in (
        "GENESIS_CATALOG_URL",
        "GENESIS_OBJECTS_URL",
        "GENESIS_USER",
        "GENESIS_ORG",
        "GENESIS_GOVERNANCE",
        "GENESIS_TOKEN",
    ):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def platform(genesis_home: Path) -> Iterator[Platform]:
    """An embedded platform in the test's home."""
    with Platform.open(genesis_home) as p:
        yield p


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The PostgreSQL server of ``GENESIS_TEST_PG_URL`` (skip without one, fail under CI)."""
    server = connect_postgres()
    yield server
    server.close()


def _new_catalog(
    request: pytest.FixtureRequest, tmp_path: Path, *, migrated: bool
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.sqlite'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.new_database(migrated=migrated)
    yield url
    server.drop_database(url)


@pytest.fixture(params=BACKENDS)
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new catalog of each backend, holding no data, dropped after the test.

    On PostgreSQL it has the schema already (a copy of a template migrated once per test
    session); a SQLite file does not exist yet, and the first ``Database`` creates it.
    """
    yield from _new_catalog(request, tmp_path, migrated=True)


@pytest.fixture(params=BACKENDS)
def empty_catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty database of each backend (no tables), for tests of the migrations."""
    yield from _new_catalog(request, tmp_path, migrated=False)


@pytest.fixture
def catalog_env(catalog_url: str, genesis_home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``catalog_url``, set as ``GENESIS_CATALOG_URL`` for every platform the test opens.

    The processes the test starts inherit it, so they share the catalog.
    """
    monkeypatch.setenv("GENESIS_CATALOG_URL", catalog_url)
    return catalog_url


@pytest.fixture
def any_platform(catalog_env: str, genesis_home: Path) -> Iterator[Platform]:
    """An embedded platform in the test's home on each catalog backend (``catalog_url``)."""
    with Platform.open(genesis_home) as p:
        yield p
