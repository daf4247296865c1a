"""Queries several services share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

__all__ = ["with_version_stats"]


def with_version_stats(
    s: Session,
    parent: Any,
    parent_key: InstrumentedAttribute[int],
    version: InstrumentedAttribute[int],
) -> Sequence[tuple[Any, int, int]]:
    """Every ``parent`` row that has versions, by name, with ``(row, count, latest)``.

    Args:
        s: An open session.
        parent: The parent table (``Dataset``, ``Model``).
        parent_key: The versions' foreign key to it (``DatasetVersion.dataset_id``).
        version: The versions' number column (``DatasetVersion.version``).
    """
    stats = (
        select(
            parent_key.label("parent_id"),
            func.count().label("n"),
            func.max(version).label("latest"),
        )
        .group_by(parent_key)
        .subquery()
    )
    rows = s.execute(
        select(parent, stats.c.n, stats.c.latest)
        .join(stats, stats.c.parent_id == parent.id)
        .order_by(parent.name)
    )
    return [(row, int(n), int(latest)) for row, n, latest in rows]
