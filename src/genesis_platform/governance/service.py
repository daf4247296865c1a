"""The audit service (``p.audit``): read the audit log and verify its hash chain."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from genesis_platform.governance.audit import Verification
from genesis_platform.governance.authorize import Resource
from genesis_platform.governance.context import ServiceContext

__all__ = ["AuditInfo", "AuditService"]


@dataclass(frozen=True)
class AuditInfo:
    """One audit record."""

    id: int
    at: dt.datetime
    principal: str
    action: str
    resource: str
    decision: str
    policies: tuple[str, ...]
    detail: Mapping[str, Any]
    hash: str


class AuditService:
    """The audit log of one platform (reading it is ``administer`` on ``audit:*``)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def list(
        self,
        *,
        who: str | None = None,
        resource: str | None = None,
        action: str | None = None,
        since: dt.datetime | None = None,
        limit: int = 100,
    ) -> list[AuditInfo]:
        """The newest records first.

        Filtered by principal, resource (``KIND`` or ``KIND:ID``), action and time.
        """
        self._ctx.authorize("administer", Resource("audit", "*"))
        with self._ctx.db.session(write=False) as s:
            rows = self._ctx.audit.list(
                s, limit, who=who, resource=resource, action=action, since=since
            )
            return [
                AuditInfo(
                    r.id,
                    r.at,
                    r.principal,
                    r.action,
                    f"{r.resource_kind}:{r.resource_id}",
                    r.decision,
                    tuple(r.policies),
                    dict(r.detail),
                    r.hash,
                )
                for r in rows
            ]

    def verify(self) -> Verification:
        """Walk the hash chain: intact, or the first edited, inserted or missing record."""
        self._ctx.authorize("administer", Resource("audit", "*"))
        with self._ctx.db.session(write=False) as s:
            return self._ctx.audit.verify(s)
