"""The migrations build the tables from an empty database, and take them down again, on
every catalog backend."""

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.orm import Session

from genesis_platform.catalog import Database
from genesis_platform.catalog.database import _alembic_config, head_revision
from genesis_platform.catalog.tables import Base
from genesis_platform.governance.audit import AuditLog


def _migrate(db: Database, revision: str, *, down: bool = False) -> None:
    config = _alembic_config()
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)


def test_migrations_build_exactly_the_tables(empty_catalog_url: str) -> None:
    db = Database(empty_catalog_url)
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    db.close()
    assert diff == []


def test_migrations_downgrade_to_nothing_and_up_again(empty_catalog_url: str) -> None:
    db = Database(empty_catalog_url)
    _migrate(db, "base", down=True)
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    db.migrate()
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    db.close()
    assert diff == []


def test_sqlite_runs_in_wal_with_foreign_keys(tmp_path: Path) -> None:
    # SQLite only: these are SQLite's pragmas, set on every connection it opens.
    db = Database(f"sqlite:///{tmp_path / 'c.sqlite'}")
    with db.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    db.close()


def test_reopening_is_a_no_op(empty_catalog_url: str) -> None:
    Database(empty_catalog_url).close()
    db = Database(empty_catalog_url)
    with db.engine.connect() as connection:
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    db.close()
    assert version == head_revision()


def test_the_audit_chain_migration_chains_existing_records(empty_catalog_url: str) -> None:
    db = Database(empty_catalog_url, migrate=False)
    _migrate(db, "0004")  # a catalog from before the chain, with records
    with db.engine.begin() as connection:
        for i in range(3):
            connection.execute(
                text(
                    "INSERT INTO audit_records (at, principal, action, resource_kind, "
                    "resource_id, decision, detail) VALUES "
                    f"('2026-11-0{i + 1} 10:00:00.000000', 'ada@local', 'write', 'dataset', "
                    f"'d{i}', 'allow', '{{}}')"
                )
            )
    db.migrate()
    with Session(db.engine) as s:
        result = AuditLog().verify(s)
    db.close()
    assert result.ok and result.records == 3


def test_assets_from_before_governance_become_the_operators(
    empty_catalog_url: str, genesis_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from genesis_platform import Platform
    from genesis_platform.governance import Resource

    db = Database(empty_catalog_url, migrate=False)
    _migrate(db, "0005")  # a catalog from before governance, with a dataset and a site
    with db.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO datasets (name, description, license, created_at, created_by) "
                "VALUES ('spectra', '', '', '2026-11-01 10:00:00.000000', 'ada@local')"
            )
        )
    db.close()
    genesis_home.mkdir(parents=True, exist_ok=True)
    (genesis_home / "genesis.toml").write_text('user = "ada"\norg = "argonne"\n')
    monkeypatch.setenv("GENESIS_CATALOG_URL", empty_catalog_url)
    with Platform.open(genesis_home) as p:
        assert p.assets.get("dataset", "spectra").owner == "argonne"
        assert p._ctx.may("administer", Resource("dataset", "spectra"))
