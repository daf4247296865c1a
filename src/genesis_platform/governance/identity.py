"""Organizations, their members (roles, vetting), and projects across organizations.

Who may change what (decided by the policy, see ``policies/default.cedar``):

- creating an organization, vetting a member and clearing an organization for
  export-controlled assets are the operator's (``administer`` on ``org:*``): vetting is the
  facility's judgement, not the member's own organization's;
- adding members and setting their roles is the organization's owners' and admins'
  (``administer`` on ``org:NAME``);
- creating a project is an organization's admins'; adding members to it is the project's
  lead organization's admins' (``administer`` on ``project:NAME``).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from genesis_platform.catalog.database import Database
from genesis_platform.catalog.tables import (
    ApiTokenRow,
    AssetRow,
    MemberRow,
    OrgRow,
    ProjectMemberRow,
    ProjectRow,
    utcnow,
)
from genesis_platform.errors import InvalidInput, NotFound
from genesis_platform.governance._validate import one_of
from genesis_platform.governance.authorize import Resource
from genesis_platform.governance.context import ServiceContext
from genesis_platform.governance.state import record_change

__all__ = [
    "ROLES",
    "VETTING",
    "MemberInfo",
    "OrgInfo",
    "OrgService",
    "ProjectInfo",
    "ProjectService",
    "check_name",
    "ensure_operator",
]

ROLES = ("owner", "admin", "member", "viewer")
"""Member roles, most powerful first."""
VETTING = ("pending", "vetted", "revoked")
"""Vetting statuses of a member."""
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


def check_name(field: str, name: str) -> str:
    """``name`` if it is a valid org, user or project name, else InvalidInput on ``field``."""
    if not _NAME.match(name):
        raise InvalidInput(
            field,
            f"{name!r} is not a valid name",
            "use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit",
        )
    return name


@dataclass(frozen=True)
class MemberInfo:
    """A member of an organization."""

    org: str
    user: str
    role: str
    vetting: str
    projects: tuple[str, ...]
    created_at: dt.datetime

    @property
    def principal(self) -> str:
        """``user@org``."""
        return f"{self.user}@{self.org}"


@dataclass(frozen=True)
class OrgInfo:
    """An organization and its members."""

    name: str
    display_name: str
    export_cleared: bool
    members: tuple[MemberInfo, ...]
    created_at: dt.datetime


@dataclass(frozen=True)
class ProjectInfo:
    """A project, its lead organization and its members (``user@org``)."""

    name: str
    org: str
    description: str
    members: tuple[str, ...]
    created_at: dt.datetime


def ensure_operator(db: Database, org: str, user: str) -> None:
    """Make ``org`` exist and ``user`` a vetted owner of it (the embedded platform's user).

    Assets from before governance (owner '') become ``org``'s. Reads first and writes only
    what is missing, so opening a platform stays cheap.
    """
    with db.session(write=False) as s:
        have_org = s.scalar(select(OrgRow.id).where(OrgRow.name == org)) is not None
        member = s.scalar(select(MemberRow).where(MemberRow.org == org, MemberRow.user == user))
        unowned = s.scalar(select(AssetRow.id).where(AssetRow.owner_org == "").limit(1))
        if have_org and member is not None and member.role == "owner" and unowned is None:
            return
    with db.session() as s:
        for kind, name in s.execute(
            select(AssetRow.kind, AssetRow.name).where(AssetRow.owner_org == "")
        ).all():
            record_change(s, "asset", f"{kind}:{name}")
        s.execute(update(AssetRow).where(AssetRow.owner_org == "").values(owner_org=org))
        if s.scalar(select(OrgRow.id).where(OrgRow.name == org)) is None:
            s.add(OrgRow(name=org, display_name=org, created_by=f"{user}@{org}"))
            record_change(s, "org", org)
        row = s.scalar(select(MemberRow).where(MemberRow.org == org, MemberRow.user == user))
        if row is None:
            s.add(MemberRow(org=org, user=user, role="owner", vetting="vetted"))
        else:
            row.role, row.vetting = "owner", "vetted"
        record_change(s, "member", f"{org}/{user}")


class OrgService:
    """Organizations and their members (``p.orgs``)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def create(self, name: str, *, display_name: str = "", export_cleared: bool = False) -> OrgInfo:
        """Register organization ``name`` (the operator's admins only).

        Raises:
            InvalidInput: a bad or taken name.
        """
        check_name("name", name)
        with self._ctx.mutation("administer", Resource("org", "*"), {"create": name}) as s:
            if _org(s, name) is not None:
                raise InvalidInput("name", f"organization {name!r} exists", "choose another name")
            s.add(
                OrgRow(
                    name=name,
                    display_name=display_name or name,
                    export_cleared=export_cleared,
                    created_by=str(self._ctx.principal),
                )
            )
            self._ctx.changed(s, "org", name)
        return self.get(name)

    def list(self) -> list[OrgInfo]:
        """Every organization (names are public; members are listed to those who may read)."""
        with self._ctx.reading(Resource("org", "*")) as s:
            names = s.scalars(select(OrgRow.name).order_by(OrgRow.name)).all()
        return [self.get(n) for n in names]

    def get(self, name: str) -> OrgInfo:
        """One organization with its members.

        Raises:
            NotFound: no such organization.
        """
        with self._ctx.reading(Resource("org", name)) as s:
            row = _org(s, name)
            if row is None:
                raise NotFound("organization", name, "`genesis org list` shows them")
            members = s.scalars(
                select(MemberRow).where(MemberRow.org == name).order_by(MemberRow.user)
            ).all()
            projects = _projects_by_member(s, name)
            return OrgInfo(
                row.name,
                row.display_name,
                row.export_cleared,
                tuple(_member_info(m, projects.get(m.user, ())) for m in members),
                row.created_at,
            )

    def add_member(
        self, org: str, user: str, *, role: str = "member", vetting: str = "pending"
    ) -> MemberInfo:
        """Add ``user`` to ``org`` with ``role`` (its owners and admins; vetting: operator).

        Raises:
            InvalidInput: a bad name, role or vetting status, or already a member.
            NotFound: no such organization.
        """
        check_name("user", user)
        one_of("role", role, ROLES)
        one_of("vetting", vetting, VETTING)
        if vetting != "pending":
            self._ctx.authorize("administer", Resource("org", "*"))
        with self._ctx.mutation(
            "administer", Resource("org", org), {"add": user, "role": role}
        ) as s:
            self._require_org(s, org)
            if _member(s, org, user) is not None:
                raise InvalidInput(
                    "user", f"{user} is already a member of {org}", "change the role with set-role"
                )
            s.add(MemberRow(org=org, user=user, role=role, vetting=vetting))
            self._ctx.changed(s, "member", f"{org}/{user}")
        return self.member(org, user)

    def set_role(self, org: str, user: str, role: str) -> MemberInfo:
        """Change a member's role (the organization's owners and admins)."""
        one_of("role", role, ROLES)
        with self._ctx.mutation(
            "administer", Resource("org", org), {"user": user, "role": role}
        ) as s:
            self._require_member(s, org, user).role = role
            self._ctx.changed(s, "member", f"{org}/{user}")
        return self.member(org, user)

    def vet(self, org: str, user: str, status: str) -> MemberInfo:
        """Set a member's vetting status: ``pending``, ``vetted`` or ``revoked`` (operator)."""
        one_of("status", status, VETTING)
        self._ctx.authorize("administer", Resource("org", "*"))
        detail = {"user": user, "vetting": status}
        with self._ctx.mutation("administer", Resource("org", org), detail) as s:
            self._require_member(s, org, user).vetting = status
            self._ctx.changed(s, "member", f"{org}/{user}")
        return self.member(org, user)

    def clear_for_export(self, org: str, cleared: bool = True) -> OrgInfo:
        """Clear (or unclear) ``org`` for export-controlled assets (operator)."""
        self._ctx.authorize("administer", Resource("org", "*"))
        with self._ctx.mutation("administer", Resource("org", org), {"export": cleared}) as s:
            self._require_org(s, org).export_cleared = cleared
            self._ctx.changed(s, "org", org)
        return self.get(org)

    def remove_member(self, org: str, user: str) -> None:
        """Remove ``user`` from ``org`` and its projects, and revoke their API tokens.

        A revoked member is removed only by the operator: an organization that removed and
        re-added them would otherwise undo the facility's revocation.
        """
        facts = self._ctx.governance.member(org, user) if self._ctx.governance else None
        if facts is not None and facts.vetting == "revoked":
            self._ctx.authorize("administer", Resource("org", "*"))
        with self._ctx.mutation("administer", Resource("org", org), {"remove": user}) as s:
            if self._require_member(s, org, user).vetting == "revoked":
                self._ctx.recheck("administer", Resource("org", "*"))
            s.execute(delete(MemberRow).where(MemberRow.org == org, MemberRow.user == user))
            s.execute(
                update(ApiTokenRow)
                .where(
                    ApiTokenRow.org == org,
                    ApiTokenRow.user == user,
                    ApiTokenRow.revoked_at.is_(None),
                )
                .values(revoked_at=utcnow())
            )
            s.execute(
                delete(ProjectMemberRow).where(
                    ProjectMemberRow.org == org, ProjectMemberRow.user == user
                )
            )
            self._ctx.changed(s, "member", f"{org}/{user}")

    def member(self, org: str, user: str) -> MemberInfo:
        """One membership.

        Raises:
            NotFound: ``user`` is not a member of ``org``.
        """
        with self._ctx.reading(Resource("org", org)) as s:
            row = self._require_member(s, org, user)
            return _member_info(row, _projects_by_member(s, org).get(user, ()))

    def _require_org(self, s: Session, org: str) -> OrgRow:
        row = _org(s, org)
        if row is None:
            raise NotFound("organization", org, "`genesis org list` shows them")
        return row

    def _require_member(self, s: Session, org: str, user: str) -> MemberRow:
        self._require_org(s, org)
        row = _member(s, org, user)
        if row is None:
            raise NotFound("member", f"{user}@{org}", f"`genesis org show {org}` lists its members")
        return row


class ProjectService:
    """Projects, whose members may come from several organizations (``p.projects``)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def create(self, name: str, *, org: str | None = None, description: str = "") -> ProjectInfo:
        """Create project ``name`` led by ``org`` (default: the principal's; its admins).

        The creator becomes its first member.
        """
        check_name("name", name)
        lead = org or self._ctx.principal.org
        with self._ctx.mutation("administer", Resource("org", lead), {"project": name}) as s:
            if _org(s, lead) is None:
                raise NotFound("organization", lead, "`genesis org list` shows them")
            if s.scalar(select(ProjectRow.id).where(ProjectRow.name == name)) is not None:
                raise InvalidInput("name", f"project {name!r} exists", "choose another name")
            s.add(
                ProjectRow(
                    name=name,
                    org=lead,
                    description=description,
                    created_by=str(self._ctx.principal),
                )
            )
            me = self._ctx.principal
            if _member(s, me.org, me.name) is not None:
                s.add(ProjectMemberRow(project=name, org=me.org, user=me.name))
                self._ctx.changed(s, "member", f"{me.org}/{me.name}")
            self._ctx.changed(s, "project", name)
        return self.get(name)

    def add_member(self, project: str, member: str) -> ProjectInfo:
        """Add ``member`` (``user@org``, a member of that organization) to ``project``."""
        user, _, org = member.partition("@")
        if not org:
            raise InvalidInput("member", f"{member!r} is not user@org", "e.g. ada@argonne")
        with self._ctx.mutation("administer", Resource("project", project), {"add": member}) as s:
            self._require(s, project)
            if _member(s, org, user) is None:
                raise NotFound(
                    "member", member, f"add them first: genesis org add-member {org} {user}"
                )
            exists = s.scalar(
                select(ProjectMemberRow.id).where(
                    ProjectMemberRow.project == project,
                    ProjectMemberRow.org == org,
                    ProjectMemberRow.user == user,
                )
            )
            if exists is not None:
                raise InvalidInput("member", f"{member} is already in project {project}")
            s.add(ProjectMemberRow(project=project, org=org, user=user))
            self._ctx.changed(s, "member", f"{org}/{user}")
            self._ctx.changed(s, "project", project)
        return self.get(project)

    def remove_member(self, project: str, member: str) -> ProjectInfo:
        """Take ``member`` (``user@org``) out of ``project``."""
        user, _, org = member.partition("@")
        with self._ctx.mutation(
            "administer", Resource("project", project), {"remove": member}
        ) as s:
            self._require(s, project)
            s.execute(
                delete(ProjectMemberRow).where(
                    ProjectMemberRow.project == project,
                    ProjectMemberRow.org == org,
                    ProjectMemberRow.user == user,
                )
            )
            self._ctx.changed(s, "member", f"{org}/{user}")
            self._ctx.changed(s, "project", project)
        return self.get(project)

    def get(self, name: str) -> ProjectInfo:
        """One project with its members."""
        with self._ctx.reading(Resource("project", name)) as s:
            row = self._require(s, name)
            members = s.execute(
                select(ProjectMemberRow.user, ProjectMemberRow.org)
                .where(ProjectMemberRow.project == name)
                .order_by(ProjectMemberRow.org, ProjectMemberRow.user)
            ).all()
            return ProjectInfo(
                row.name,
                row.org,
                row.description,
                tuple(f"{u}@{o}" for u, o in members),
                row.created_at,
            )

    def list(self) -> list[ProjectInfo]:
        """The projects the principal may read."""
        with self._ctx.reading(Resource("project", "*")) as s:
            names = s.scalars(select(ProjectRow.name).order_by(ProjectRow.name)).all()
        seen = self._ctx.visible("project", names)
        return [self.get(n) for n, ok in zip(names, seen, strict=True) if ok]

    def _require(self, s: Session, name: str) -> ProjectRow:
        row = s.scalar(select(ProjectRow).where(ProjectRow.name == name))
        if row is None:
            raise NotFound("project", name, "`genesis project list` shows them")
        return row


def _org(s: Session, name: str) -> OrgRow | None:
    return s.scalar(select(OrgRow).where(OrgRow.name == name))


def _member(s: Session, org: str, user: str) -> MemberRow | None:
    return s.scalar(select(MemberRow).where(MemberRow.org == org, MemberRow.user == user))


def _projects_by_member(s: Session, org: str) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    rows = s.execute(
        select(ProjectMemberRow.user, ProjectMemberRow.project)
        .where(ProjectMemberRow.org == org)
        .order_by(ProjectMemberRow.project)
    )
    for user, project in rows:
        out.setdefault(user, []).append(project)
    return {u: tuple(p) for u, p in out.items()}


def _member_info(m: MemberRow, projects: tuple[str, ...]) -> MemberInfo:
    return MemberInfo(m.org, m.user, m.role, m.vetting, projects, m.created_at)
