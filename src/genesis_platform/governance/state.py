"""What policy decisions read, held in memory: organizations, members, assets, agreements.

A process loads the governance tables once, then follows the ``governance_changes`` log:
every change (a member added, an asset's access level set, an agreement signed, ...) writes
a row in the same transaction, and :meth:`GovernanceState.refresh` reloads only the objects
named by rows it has not seen. The platform's own changes are seen when their transaction
commits; another process's changes within :attr:`GovernanceState.poll_s` of their commit.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from genesis_platform.catalog.database import Database
from genesis_platform.catalog.tables import (
    AgreementPartyRow,
    AgreementRow,
    AssetRow,
    GovernanceChange,
    MemberRow,
    OrgRow,
    ProjectMemberRow,
    ProjectRow,
)

__all__ = [
    "ASSET_KINDS",
    "AgreementFacts",
    "AssetFacts",
    "GovernanceState",
    "MemberFacts",
    "record_change",
]

ASSET_KINDS = ("dataset", "model", "station", "site", "campaign")
"""Kinds whose governance attributes are stored (one ``assets`` row each)."""

_CHANGE_LOCK = 0x67656E65  # PostgreSQL advisory lock key of the change log ("gene")


def record_change(session: Session, kind: str, key: str) -> None:
    """Append a change to the log in ``session``'s transaction.

    On PostgreSQL the transaction first takes an advisory lock that it holds until it ends,
    so change ids are committed in the order they are drawn: a reader that saw id N has
    seen every change below N. (SQLite's one writer at a time already does that.)
    """
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHANGE_LOCK})
    session.execute(insert(GovernanceChange).values(kind=kind, key=key))


@dataclass(frozen=True)
class MemberFacts:
    """A member of an organization as decisions see it."""

    org: str
    user: str
    role: str
    vetting: str
    projects: frozenset[str] = frozenset()


@dataclass(frozen=True)
class AssetFacts:
    """An asset's governance attributes as decisions see them."""

    kind: str
    name: str
    owner: str
    project: str = ""
    access: str = "private"
    classification: str = "public"
    export_controlled: bool = False
    review: str = "none"
    submitter: str = ""
    reviewer: str = ""
    shared_with: frozenset[str] = frozenset()

    @property
    def key(self) -> str:
        """``KIND:NAME``, the asset's Cedar id."""
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class AgreementFacts:
    """An agreement's parties, signatures, terms and coverage as decisions see them."""

    name: str
    kind: str
    state: str
    owner: str
    parties: frozenset[str]
    signed_by: frozenset[str]
    uses: frozenset[str]
    covers: frozenset[str]
    covers_owners: frozenset[str]
    redistribution: bool
    export_control: bool
    starts_at: int
    expires_at: int


@dataclass
class _Tables:
    orgs: dict[str, bool] = field(default_factory=dict)  # name -> export cleared
    members: dict[tuple[str, str], MemberFacts] = field(default_factory=dict)
    assets: dict[tuple[str, str], AssetFacts] = field(default_factory=dict)
    agreements: dict[str, AgreementFacts] = field(default_factory=dict)
    agreements_of: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    projects: dict[str, tuple[str, frozenset[str]]] = field(default_factory=dict)


class GovernanceState:
    """The governance tables of one catalog, in memory, following its change log.

    Args:
        db: The catalog.
        poll_s: How often to look for other processes' changes (at most).
    """

    def __init__(self, db: Database, poll_s: float = 0.25) -> None:
        self._db = db
        self.poll_s = poll_s
        self._lock = threading.RLock()
        self._t = _Tables()
        self._seen = 0
        self._polled = 0.0
        self.generation = 0
        """Counts reloads; entity caches built on an older generation are stale."""
        self.change_count = 0
        """Changes reloaded since this state was loaded."""
        self.changed_keys: dict[str, int] = {}
        """``kind/key`` of every object reloaded, with the generation it was reloaded at."""
        self._load_all()

    # ---- reading --------------------------------------------------------------------

    def export_cleared(self, org: str) -> bool:
        """Whether ``org`` is cleared for export-controlled assets."""
        return self._t.orgs.get(org, False)

    def orgs(self) -> list[str]:
        """Every organization's name."""
        return sorted(self._t.orgs)

    def member(self, org: str, user: str) -> MemberFacts | None:
        """The membership of ``user`` in ``org``, if any."""
        return self._t.members.get((org, user))

    def asset(self, kind: str, name: str) -> AssetFacts | None:
        """The governance attributes of an asset, if it has any."""
        return self._t.assets.get((kind, name))

    def agreement(self, name: str) -> AgreementFacts | None:
        """An agreement by name."""
        return self._t.agreements.get(name)

    def agreements_between(self, org: str, owner: str) -> list[AgreementFacts]:
        """The agreements that have both ``org`` and ``owner`` as parties (any state)."""
        names = self._t.agreements_of.get(org, set()) & self._t.agreements_of.get(owner, set())
        return [self._t.agreements[n] for n in sorted(names)]

    def project(self, name: str) -> tuple[str, frozenset[str]] | None:
        """A project's lead organization and the organizations of its members."""
        return self._t.projects.get(name)

    def all_members(self) -> list[MemberFacts]:
        """Every membership."""
        return list(self._t.members.values())

    def all_assets(self) -> list[AssetFacts]:
        """Every asset with governance attributes."""
        return list(self._t.assets.values())

    def all_agreements(self) -> list[AgreementFacts]:
        """Every agreement."""
        return list(self._t.agreements.values())

    # ---- following the catalog ------------------------------------------------------

    def refresh(self, *, now: bool = False) -> None:
        """Reload what changed since the last look (at most every ``poll_s``, or ``now``)."""
        clock = time.monotonic()
        if not now and clock - self._polled < self.poll_s:
            return
        with self._lock:
            self._polled = clock
            with self._db.session(write=False) as s:
                rows = s.execute(
                    select(GovernanceChange.id, GovernanceChange.kind, GovernanceChange.key)
                    .where(GovernanceChange.id > self._seen)
                    .order_by(GovernanceChange.id)
                ).all()
                if not rows:
                    return
                generation = self.generation + 1
                for _, kind, key in rows:
                    self._reload(s, kind, key)
                    self.changed_keys[f"{kind}/{key}"] = generation
                    self.change_count += 1
                self._seen = rows[-1][0]
                self.generation = generation  # only once everything it names is reloaded

    @property
    def lock(self) -> threading.RLock:
        """Held while the state changes; hold it to read a consistent whole."""
        return self._lock

    def _load_all(self) -> None:
        with self._lock, self._db.session(write=False) as s:
            last = s.scalar(select(GovernanceChange.id).order_by(GovernanceChange.id.desc()))
            self._seen = last or 0
            t = _Tables()
            t.orgs = {o.name: o.export_cleared for o in s.scalars(select(OrgRow))}
            projects: dict[tuple[str, str], set[str]] = defaultdict(set)
            orgs_of: dict[str, set[str]] = defaultdict(set)
            for pm in s.scalars(select(ProjectMemberRow)):
                projects[(pm.org, pm.user)].add(pm.project)
                orgs_of[pm.project].add(pm.org)
            for pr in s.scalars(select(ProjectRow)):
                t.projects[pr.name] = (pr.org, frozenset(orgs_of[pr.name]))
            for m in s.scalars(select(MemberRow)):
                t.members[(m.org, m.user)] = _member(m, projects[(m.org, m.user)])
            for a in s.scalars(select(AssetRow)):
                t.assets[(a.kind, a.name)] = _asset(a)
            parties: dict[int, list[AgreementPartyRow]] = defaultdict(list)
            for p in s.scalars(select(AgreementPartyRow)):
                parties[p.agreement_id].append(p)
            for g in s.scalars(select(AgreementRow)):
                _index_agreement(t, _agreement(g, parties[g.id]))
            self._t = t

    def _reload(self, s: Session, kind: str, key: str) -> None:
        t = self._t
        if kind == "org":
            row = s.scalar(select(OrgRow).where(OrgRow.name == key))
            if row is None:
                t.orgs.pop(key, None)
            else:
                t.orgs[key] = row.export_cleared
        elif kind == "member":
            org, _, user = key.partition("/")
            m = s.scalar(select(MemberRow).where(MemberRow.org == org, MemberRow.user == user))
            if m is None:
                t.members.pop((org, user), None)
            else:
                projects = s.scalars(
                    select(ProjectMemberRow.project).where(
                        ProjectMemberRow.org == org, ProjectMemberRow.user == user
                    )
                ).all()
                t.members[(org, user)] = _member(m, set(projects))
        elif kind == "asset":
            asset_kind, _, name = key.partition(":")
            a = s.scalar(select(AssetRow).where(AssetRow.kind == asset_kind, AssetRow.name == name))
            if a is None:
                t.assets.pop((asset_kind, name), None)
            else:
                t.assets[(asset_kind, name)] = _asset(a)
        elif kind == "project":
            pr = s.scalar(select(ProjectRow).where(ProjectRow.name == key))
            if pr is None:
                t.projects.pop(key, None)
            else:
                orgs = s.scalars(
                    select(ProjectMemberRow.org).where(ProjectMemberRow.project == key)
                ).all()
                t.projects[key] = (pr.org, frozenset(orgs))
        elif kind == "agreement":
            old = t.agreements.pop(key, None)
            for org in old.parties if old else ():
                t.agreements_of[org].discard(key)
            g = s.scalar(select(AgreementRow).where(AgreementRow.name == key))
            if g is not None:
                parties = s.scalars(
                    select(AgreementPartyRow).where(AgreementPartyRow.agreement_id == g.id)
                ).all()
                _index_agreement(t, _agreement(g, list(parties)))


def _member(m: MemberRow, projects: set[str]) -> MemberFacts:
    return MemberFacts(m.org, m.user, m.role, m.vetting, frozenset(projects))


def _asset(a: AssetRow) -> AssetFacts:
    return AssetFacts(
        kind=a.kind,
        name=a.name,
        owner=a.owner_org,
        project=a.project,
        access=a.access,
        classification=a.classification,
        export_controlled=a.export_controlled,
        review=a.review,
        submitter=a.submitted_by,
        reviewer=a.reviewer,
    )


def _agreement(g: AgreementRow, parties: list[AgreementPartyRow]) -> AgreementFacts:
    terms: dict[str, Any] = g.terms or {}
    covers = [str(c) for c in g.covers or []]
    return AgreementFacts(
        name=g.name,
        kind=g.kind,
        state=g.state,
        owner=g.created_by.rpartition("@")[2],
        parties=frozenset(p.org for p in parties),
        signed_by=frozenset(p.org for p in parties if p.signed_at is not None),
        uses=frozenset(str(u) for u in terms.get("permitted_uses", [])),
        covers=frozenset(c for c in covers if not c.startswith("owner:")),
        covers_owners=frozenset(c.removeprefix("owner:") for c in covers if c.startswith("owner:")),
        redistribution=bool(terms.get("redistribution", False)),
        export_control=bool(terms.get("export_control", False)),
        starts_at=int(g.starts_at.timestamp()),
        expires_at=int(g.expires_at.timestamp()),
    )


def _index_agreement(t: _Tables, facts: AgreementFacts) -> None:
    t.agreements[facts.name] = facts
    for org in facts.parties:
        t.agreements_of[org].add(facts.name)
