"""The catalog: SQLAlchemy tables and Alembic migrations (SQLite or PostgreSQL)."""

from genesis_platform.catalog.database import Database

__all__ = ["Database"]
