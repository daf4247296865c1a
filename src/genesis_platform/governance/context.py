"""What every service holds: catalog, blob store, principal, policy and audit log."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.orm import Session

from genesis_platform.catalog.database import Database
from genesis_platform.catalog.tables import AssetRow
from genesis_platform.errors import AccessDenied
from genesis_platform.governance.audit import AuditEntry, AuditLog
from genesis_platform.governance.authorize import (
    Action,
    AllowAll,
    Decision,
    Policy,
    Resource,
    authorize,
)
from genesis_platform.governance.principal import Principal
from genesis_platform.governance.state import AssetFacts, GovernanceState, record_change
from genesis_platform.storage.blobs import BlobStore

__all__ = ["ServiceContext"]

_CHANGED = "genesis_governance_changed"
"""``Session.info`` key: the transaction changed what policy decisions read."""


@dataclass
class ServiceContext:
    """The shared state of one platform's services, and the governance seams.

    Services read through :meth:`reading`, change state only through :meth:`mutation`,
    filter what they list through :meth:`visible`, and record new assets with
    :meth:`register_asset` and changes to what decisions read with :meth:`changed`.
    """

    db: Database
    blobs: BlobStore
    principal: Principal
    home: Path
    policy: Policy = field(default_factory=AllowAll)
    audit: AuditLog = field(default_factory=AuditLog)
    governance: GovernanceState | None = None
    read_audit: Any = None
    """A :class:`~genesis_platform.governance._read_audit.ReadAuditor` when reads are audited."""

    def authorize(self, action: Action, resource: Resource) -> Decision:
        """Raise AccessDenied unless the principal may do ``action`` on ``resource``.

        A denial is appended to the audit log (in a transaction of its own) before it is
        raised: call this outside any writing session.
        """
        try:
            return authorize(self.policy, self.principal, action, resource)
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
        """Authorize a read of ``resource`` (audited in the next batch) and open a session."""
        decision = self.authorize("read", resource)
        if self.read_audit is not None:
            self.read_audit.add(AuditEntry("read", resource, None, "allow", decision.policies))
        with self.db.session(write=False) as session:
            yield session

    def visible(self, kind: str, names: Sequence[str]) -> list[bool]:
        """For each name, whether the principal may read ``kind:name`` (for list results)."""
        if self.governance is None:
            return [True] * len(names)
        return [
            self.policy.decide(self.principal, "read", Resource(kind, n)).allowed for n in names
        ]

    def may(self, action: Action, resource: Resource) -> bool:
        """Whether the principal may do ``action`` on ``resource`` (not audited, no error)."""
        if self.principal.scopes is not None and action not in self.principal.scopes:
            return False
        return self.policy.decide(self.principal, action, resource).allowed

    def projects(self) -> frozenset[str] | None:
        """The principal's projects; None when governance is off (every project)."""
        if self.governance is None:
            return None
        member = self.governance.member(self.principal.org, self.principal.name)
        return member.projects if member is not None else frozenset()

    def check_project(self, project: str) -> None:
        """AccessDenied unless the principal may work in ``project`` (its member, or its admins).

        A name no registered project has is a free label (nothing to be a member of).
        """
        if not project or self.governance is None or self.governance.project(project) is None:
            return
        if project in (self.projects() or ()):
            return
        if not self.may("administer", Resource("project", project)):
            raise AccessDenied(
                f"{self.principal} is not a member of project {project}; its lead "
                f"organization's admins add members with "
                f"`genesis project add-member {project} {self.principal}`",
                principal=str(self.principal),
                action="run",
                resource=f"project:{project}",
            )

    @property
    def operator(self) -> str:
        """The organization that runs the platform."""
        return str(getattr(self.policy, "operator", self.principal.org))

    def recheck(self, action: Action, resource: Resource) -> None:
        """Decide again on the newest state; AccessDenied if the answer changed to deny.

        For a transaction that found the resource created by someone else after it was
        authorized (a dataset that did not exist when its first version was allowed).
        """
        if self.governance is None:
            return
        self.governance.refresh(now=True)
        decision = self.policy.decide(self.principal, action, resource)
        if not decision.allowed:
            raise AccessDenied(
                f"{self.principal} may not {action} {resource}: {decision.reason}",
                principal=str(self.principal),
                action=action,
                resource=str(resource),
                policies=list(decision.policies),
            )

    def confirm_existing(self, action: Action, kind: str, name: str) -> None:
        """Decide again, on the newest state, on an asset a transaction found already there.

        Only when this process did not know the asset when it authorized: someone may have
        created it since, under another owner.
        """
        if self.governance is not None and self.governance.asset(kind, name) is None:
            self.recheck(action, Resource(kind, name))

    @contextmanager
    def mutation(
        self, action: Action, resource: Resource, detail: Mapping[str, Any] | None = None
    ) -> Iterator[Session]:
        """Authorize, open a transaction, and append the audit record to it on success.

        When the transaction changed what decisions read (:meth:`changed`), the governance
        state is refreshed as soon as it commits.
        """
        decision = self.authorize(action, resource)
        with self.db.session() as session:
            yield session
            self.audit.append(
                session, self.principal, action, resource, detail, "allow", decision.policies
            )
        if session.info.get(_CHANGED) and self.governance is not None:
            self.governance.refresh(now=True)

    def resolve(self, kind: str, find: Callable[[str], AssetFacts | None]) -> None:
        """Let decisions find the attributes of ``kind`` objects that have no asset row.

        ``find(id)`` returns their owner, project, ... (tasks: their submitter's org).
        """
        resolvers = getattr(self.policy, "resolvers", None)
        if resolvers is not None:
            resolvers[kind] = find

    def changed(self, session: Session, kind: str, key: str) -> None:
        """Record, in ``session``'s transaction, that a governance object changed.

        ``kind`` is ``org``, ``member`` (key ``ORG/USER``), ``project``, ``asset`` (key
        ``KIND:NAME``) or ``agreement``; every process's decisions see the change.
        """
        record_change(session, kind, key)
        session.info[_CHANGED] = True

    def register_asset(self, session: Session, kind: str, name: str, **attributes: Any) -> None:
        """Give a new asset its governance attributes: owned by the principal's organization.

        Args:
            session: The transaction that creates the asset.
            kind: ``dataset``, ``model``, ``station``, ``site`` or ``campaign``.
            name: Its name (a campaign's id).
            **attributes: Columns of :class:`~genesis_platform.catalog.tables.AssetRow` to
                set (``access``, ``classification``, ``export_controlled``, ``synthetic``,
                ``derived_from``, ...); the default is private, public classification.
        """
        values = {"owner_org": self.principal.org, "project": self.principal.project or ""}
        session.execute(insert(AssetRow).values(kind=kind, name=name, **{**values, **attributes}))
        self.changed(session, "asset", f"{kind}:{name}")

    def forget_asset(self, session: Session, kind: str, name: str) -> None:
        """Drop a removed asset's governance attributes (in its removal's transaction)."""
        session.execute(delete(AssetRow).where(AssetRow.kind == kind, AssetRow.name == name))
        self.changed(session, "asset", f"{kind}:{name}")
