"""What every service holds: catalog, blob store, principal, policy and audit log."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from genesis_platform.catalog.database import Database
from genesis_platform.errors import AccessDenied
from genesis_platform.governance.audit import AuditLog
from genesis_platform.governance.authorize import Action, AllowAll, Policy, Resource, authorize
from genesis_platform.governance.principal import Principal
from genesis_platform.storage.blobs import BlobStore

__all__ = ["ServiceContext"]


@dataclass
class ServiceContext:
    """The shared state of one platform's services, and the two governance seams.

    Services read through :meth:`reading` and change state only through :meth:`mutation`.
    """

    db: Database
    blobs: BlobStore
    principal: Principal
    home: Path
    policy: Policy = field(default_factory=AllowAll)
    audit: AuditLog = field(default_factory=AuditLog)

    def authorize(self, action: Action, resource: Resource) -> None:
        """Raise AccessDenied unless the principal may do ``action`` on ``resource``.

        A denial is appended to the audit log (in a transaction of its own) before it is
        raised: call this outside any writing session.
        """
        try:
            authorize(self.policy, self.principal, action, resource)
        except AccessDenied as exc:
            detail = {"reason": str(exc)}
            policies = tuple(exc.details.get("policies", ()))
            with self.db.session() as session:
                self.audit.append(
                    session, self.principal, action, resource, detail, "deny", policies
                )
            raise

    @contextmanager
    def reading(self, resource: Resource) -> Iterator[Session]:
        """Authorize a read of ``resource`` and open a session."""
        self.authorize("read", resource)
        with self.db.session(write=False) as session:
            yield session

    @contextmanager
    def mutation(
        self, action: Action, resource: Resource, detail: Mapping[str, Any] | None = None
    ) -> Iterator[Session]:
        """Authorize, open a transaction, and append the audit record to it on success."""
        self.authorize(action, resource)
        with self.db.session() as session:
            yield session
            self.audit.append(session, self.principal, action, resource, detail)
