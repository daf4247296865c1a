"""The audit log: one appended record per mutation and per denied request, hash-chained.

Each record's ``hash`` is the SHA-256 of its content (time, principal, action, resource,
decision, deciding policies, detail) and of ``prev_hash``, the hash of the record before
it; the ``audit_head`` row holds the newest record's id and hash and the count. Records are
appended inside the transaction of the change they record, so a record exists exactly when
its change was committed, and the head row, updated by every append, serializes appenders.

:meth:`AuditLog.verify` walks the chain and names the first record that was edited (its
hash does not match its content), inserted or preceded by a deleted one (it does not
follow its predecessor), or a chain cut short at its end (the head says more). This detects
edits made in the database without the platform; someone who rewrites the whole chain and
the head together is not detected (that needs an anchor outside the database).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from genesis_platform.catalog.tables import AuditHead, AuditRecord, utcnow
from genesis_platform.governance.authorize import Action, Resource
from genesis_platform.governance.principal import Principal

__all__ = ["AuditEntry", "AuditLog", "Verification", "record_hash"]

_HEAD_ID = 1


@dataclass(frozen=True)
class AuditEntry:
    """One record to append: who did what to which resource, and the decision."""

    action: str
    resource: Resource
    detail: Mapping[str, Any] | None = None
    decision: str = "allow"
    policies: Sequence[str] = ()


@dataclass(frozen=True)
class Verification:
    """What :meth:`AuditLog.verify` found.

    Attributes:
        ok: The chain is intact.
        records: Records checked.
        first_bad: Id of the first bad record (None when intact, or when only the end of the
            chain is missing).
        problem: What is wrong, for people ('' when intact).
    """

    ok: bool
    records: int
    first_bad: int | None = None
    problem: str = ""


def record_hash(
    prev_hash: str,
    at: dt.datetime,
    principal: str,
    action: str,
    resource_kind: str,
    resource_id: str,
    decision: str,
    detail: Mapping[str, Any],
    policies: Sequence[str],
) -> str:
    """The SHA-256 (hex) of one record's content chained to ``prev_hash``."""
    content = [
        prev_hash,
        at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        principal,
        action,
        resource_kind,
        resource_id,
        decision,
        detail,
        list(policies),
    ]
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class AuditLog:
    """Appends audit records inside the caller's transaction, and verifies the chain."""

    def append(
        self,
        session: Session | Connection,
        principal: Principal,
        action: Action,
        resource: Resource,
        detail: Mapping[str, Any] | None = None,
        decision: str = "allow",
        policies: Sequence[str] = (),
    ) -> None:
        """Add one record to ``session``'s transaction."""
        self.append_entries(
            session, principal, [AuditEntry(action, resource, detail, decision, policies)]
        )

    def append_many(
        self,
        session: Session | Connection,
        principal: Principal,
        entries: Sequence[tuple[Action, Resource, Mapping[str, Any] | None]],
    ) -> None:
        """Add one allowed record per ``(action, resource, detail)`` (one head update).

        ``session`` may be a Core connection in a transaction (the task records' writer).
        """
        self.append_entries(session, principal, [AuditEntry(a, r, d) for a, r, d in entries])

    def append_entries(
        self,
        session: Session | Connection,
        principal: Principal,
        entries: Sequence[AuditEntry],
    ) -> None:
        """Append ``entries`` to the chain in ``session``'s transaction."""
        if not entries:
            return
        if isinstance(session, Session):  # Core statements: the ORM's handling is not needed
            session = session.connection()
        head = _head(session)
        last_id, last_hash, count = head
        rows = []
        who = str(principal)
        for entry in entries:
            at = utcnow()
            detail = dict(entry.detail or {})
            policies = list(entry.policies)
            last_id += 1
            digest = record_hash(
                last_hash,
                at,
                who,
                entry.action,
                entry.resource.kind,
                entry.resource.id,
                entry.decision,
                detail,
                policies,
            )
            rows.append(
                {
                    "id": last_id,
                    "at": at,
                    "principal": who,
                    "action": entry.action,
                    "resource_kind": entry.resource.kind,
                    "resource_id": entry.resource.id,
                    "decision": entry.decision,
                    "detail": detail,
                    "policies": policies,
                    "prev_hash": last_hash,
                    "hash": digest,
                }
            )
            last_hash = digest
        session.execute(_INSERT_RECORDS, rows)
        session.execute(
            _MOVE_HEAD,
            {"new_last_id": last_id, "new_hash": last_hash, "new_count": count + len(rows)},
        )

    def list(
        self,
        session: Session,
        limit: int = 100,
        *,
        who: str | None = None,
        resource: str | None = None,
        action: str | None = None,
        since: dt.datetime | None = None,
    ) -> Sequence[AuditRecord]:
        """The newest records first, optionally filtered.

        By principal, by resource (``KIND`` or ``KIND:ID``), by action, or to those at or
        after ``since``.
        """
        query = select(AuditRecord).order_by(AuditRecord.id.desc()).limit(limit)
        if who is not None:
            query = query.where(AuditRecord.principal == who)
        if resource is not None:
            kind, _, ident = resource.partition(":")
            query = query.where(AuditRecord.resource_kind == kind)
            if ident:
                query = query.where(AuditRecord.resource_id == ident)
        if action is not None:
            query = query.where(AuditRecord.action == action)
        if since is not None:
            query = query.where(AuditRecord.at >= since)
        return session.scalars(query).all()

    def verify(self, session: Session, batch: int = 5000) -> Verification:
        """Walk the whole chain; the first edited, inserted or missing record, if any."""
        head = session.get(AuditHead, _HEAD_ID)
        expected_prev, expected_id, count, after = "", None, 0, 0
        while True:
            rows = session.scalars(
                select(AuditRecord)
                .where(AuditRecord.id > after)
                .order_by(AuditRecord.id)
                .limit(batch)
            ).all()
            for row in rows:
                problem = _check(row, expected_prev, expected_id)
                if problem:
                    return Verification(False, count, row.id, problem)
                expected_prev, expected_id, count = row.hash, row.id + 1, count + 1
            if len(rows) < batch:
                break
            after = rows[-1].id
        if head is None and count:
            return Verification(
                False, count, None, "the chain's head record is missing: it was deleted"
            )
        if head is not None and (head.count != count or head.last_hash != expected_prev):
            return Verification(
                False,
                count,
                None,
                f"the chain ends after {count} records, but its head says {head.count} "
                f"records ending at record {head.last_id}: "
                "records were deleted from its end, or the head was changed",
            )
        return Verification(True, count)


_RECORDS = cast(Table, AuditRecord.__table__)
_HEAD = cast(Table, AuditHead.__table__)
# Built once: every task record appends to the chain, and building a statement costs more
# than running it on SQLite.
_INSERT_RECORDS = insert(_RECORDS)
_READ_HEAD = (
    select(_HEAD.c.last_id, _HEAD.c.last_hash, _HEAD.c.count)
    .where(_HEAD.c.id == _HEAD_ID)
    .with_for_update()
)
_MOVE_HEAD = (
    update(_HEAD)
    .where(_HEAD.c.id == _HEAD_ID)
    .values(
        last_id=bindparam("new_last_id"),
        last_hash=bindparam("new_hash"),
        count=bindparam("new_count"),
    )
)


def _head(session: Session | Connection) -> tuple[int, str, int]:
    """The chain's head (last id, last hash, count), locked for this transaction."""
    row = session.execute(_READ_HEAD).first()
    if row is None:  # a new catalog: the first append creates the head
        session.execute(insert(_HEAD).values(id=_HEAD_ID, last_id=0, last_hash="", count=0))
        return 0, "", 0
    return int(row[0]), str(row[1]), int(row[2])


def _check(row: AuditRecord, expected_prev: str, expected_id: int | None) -> str:
    """Why ``row`` breaks the chain ('' when it does not)."""
    if row.prev_hash != expected_prev or (expected_id is not None and row.id != expected_id):
        return (
            f"record {row.id} does not follow the record before it: a record was deleted "
            "before it, or it was inserted"
        )
    digest = record_hash(
        row.prev_hash,
        row.at,
        row.principal,
        row.action,
        row.resource_kind,
        row.resource_id,
        row.decision,
        row.detail,
        row.policies,
    )
    if digest != row.hash:
        return f"record {row.id} was edited: its hash does not match its content"
    return ""
