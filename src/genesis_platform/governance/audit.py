"""The audit log: one appended record per mutation (and, later, per decision)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.orm import Session

from genesis_platform.catalog.tables import AuditRecord, utcnow
from genesis_platform.governance.authorize import Action, Resource
from genesis_platform.governance.principal import Principal

__all__ = ["AuditLog"]


class AuditLog:
    """Appends audit records inside the caller's transaction.

    So a record exists exactly when its change was committed.
    """

    def append(
        self,
        session: Session,
        principal: Principal,
        action: Action,
        resource: Resource,
        detail: Mapping[str, Any] | None = None,
        decision: str = "allow",
    ) -> None:
        """Add one record to ``session``'s transaction."""
        session.execute(
            insert(AuditRecord).values(
                principal=str(principal),
                action=action,
                resource_kind=resource.kind,
                resource_id=resource.id,
                decision=decision,
                detail=dict(detail or {}),
            )
        )

    def append_many(
        self,
        session: Session | Connection,
        principal: Principal,
        entries: Sequence[tuple[Action, Resource, Mapping[str, Any] | None]],
    ) -> None:
        """Add one allowed record per ``(action, resource, detail)`` in one statement.

        ``session`` may be a Core connection in a transaction (the task records' writer).
        """
        if not entries:
            return
        session.execute(
            insert(AuditRecord),
            [
                {
                    "principal": str(principal),
                    "action": action,
                    "resource_kind": resource.kind,
                    "resource_id": resource.id,
                    "decision": "allow",
                    "detail": dict(detail or {}),
                    "at": utcnow(),
                }
                for action, resource, detail in entries
            ],
        )

    def list(self, session: Session, limit: int = 100) -> Sequence[AuditRecord]:
        """The newest ``limit`` records, newest first."""
        query = select(AuditRecord).order_by(AuditRecord.id.desc()).limit(limit)
        return session.scalars(query).all()
